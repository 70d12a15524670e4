{#-
    Reviews with their scores, as of the as-of date: a review with a time after it is not seen yet
    (point in time); a review without a time (a source without dates) is always seen.
-#}
{% if reviews_present() %}

select
    r.review_id,
    r.source,
    r.user_id,
    r.item_id,
    r.rating,
    r.review_ts,
    r.category,
    s.sentiment,
    s.sentiment_label,
    s.language,
    s.model_kind

from {{ source('reviews', 'reviews') }} as r
left join {{ source('reviews', 'review_scores') }} as s
    on s.source = r.source and s.review_id = r.review_id
where r.review_ts is null or cast(r.review_ts as date) <= {{ as_of_date() }}

{% else %}

select
    cast(null as {{ string_type() }}) as review_id,
    cast(null as {{ string_type() }}) as source,
    cast(null as {{ string_type() }}) as user_id,
    cast(null as {{ string_type() }}) as item_id,
    cast(null as {{ double_type() }}) as rating,
    cast(null as timestamp) as review_ts,
    cast(null as {{ string_type() }}) as category,
    cast(null as {{ double_type() }}) as sentiment,
    cast(null as {{ string_type() }}) as sentiment_label,
    cast(null as {{ string_type() }}) as language,
    cast(null as {{ string_type() }}) as model_kind
where 1 = 0

{% endif %}
