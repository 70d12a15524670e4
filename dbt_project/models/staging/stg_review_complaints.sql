-- depends_on: {{ ref('stg_reviews') }}
{#- What each review seen as of the as-of date complains about, with its customer and product. -#}
{% if reviews_present() %}

select
    r.review_id,
    r.source,
    r.user_id,
    r.item_id,
    c.kind,
    c.keyword

from {{ source('reviews', 'review_complaints') }} as c
inner join {{ ref('stg_reviews') }} as r
    on r.source = c.source and r.review_id = c.review_id

{% else %}

select
    cast(null as {{ string_type() }}) as review_id,
    cast(null as {{ string_type() }}) as source,
    cast(null as {{ string_type() }}) as user_id,
    cast(null as {{ string_type() }}) as item_id,
    cast(null as {{ string_type() }}) as kind,
    cast(null as {{ string_type() }}) as keyword
where 1 = 0

{% endif %}
