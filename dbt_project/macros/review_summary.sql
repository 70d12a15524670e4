{#
    Review count, mean rating, mean sentiment, share negative, the last review's label and the top
    complaint aspects and keywords (most frequent first, ties by name), per `key` (user_id or item_id).
    One pass over the reviews and one over their complaints: linear in reviews.
#}
{% macro review_summary(key, top_n=3) -%}

with

reviews as (

    select * from {{ ref('stg_reviews') }}
    where {{ key }} is not null

),

ordered as (

    -- the newest review first (a source without times: the highest id stands in)
    select
        *,
        row_number() over (
            partition by {{ key }} order by review_ts desc nulls last, review_id desc
        ) as newest_first
    from reviews

),

summary as (

    select
        {{ key }},
        count(*) as n_reviews,
        {{ round_to('avg(rating)', 3) }} as mean_rating,
        {{ round_to('avg(sentiment)', 4) }} as mean_sentiment,
        {{ round_to("avg(case when sentiment_label = 'negative' then 1.0 else 0.0 end)", 4) }}
            as share_negative,
        max(review_ts) as last_review_ts,
        max(case when newest_first = 1 then sentiment_label end) as last_review_sentiment_label,
        max(case when newest_first = 1 then sentiment end) as last_review_sentiment

    from ordered
    group by {{ key }}

),

complaint_counts as (

    select {{ key }}, kind, keyword, count(*) as n
    from {{ ref('stg_review_complaints') }}
    where {{ key }} is not null
    group by {{ key }}, kind, keyword

),

ranked as (

    select
        *,
        row_number() over (partition by {{ key }}, kind order by n desc, keyword) as rank_in_kind
    from complaint_counts

),

top_complaints as (

    select
        {{ key }},
        {{ ordered_string_agg('keyword', ', ', 'rank_in_kind', "kind = 'aspect'") }}
            as top_complaint_aspects,
        {{ ordered_string_agg('keyword', ', ', 'rank_in_kind', "kind = 'keyword'") }}
            as top_complaint_keywords
    from ranked
    where rank_in_kind <= {{ top_n }}
    group by {{ key }}

)

select
    s.*,
    t.top_complaint_aspects,
    t.top_complaint_keywords,
    {{ as_of_date() }} as as_of_date

from summary as s
left join top_complaints as t on t.{{ key }} = s.{{ key }}

{%- endmacro %}
