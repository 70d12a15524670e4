with

events as (

    select * from {{ ref('stg_events') }}

),

as_of as (

    select {{ as_of_date() }} as as_of_date

),

events_as_of as (

    select events.*
    from events
    cross join as_of
    where events.event_ts < as_of.as_of_date + interval 1 day

),

user_events as (

    select
        user_id,
        min(event_ts) as first_event_ts,
        max(event_ts) as last_event_ts,
        max(event_ts) filter (where event_type = 'purchase') as last_purchase_ts,
        count(distinct session_id) filter (where event_type = 'purchase') as frequency,
        round(sum(revenue), 2) as monetary,
        count(*) filter (where event_type = 'view') as n_views,
        count(*) filter (where event_type = 'cart') as n_carts,
        count(*) filter (where event_type = 'purchase') as n_purchases,
        count(distinct session_id) as n_sessions

    from events_as_of
    group by user_id

),

rfm_values as (

    select
        user_events.*,
        as_of.as_of_date,
        -- users who never bought are as recent as their last event of any kind
        cast(date_diff(
            'day',
            cast(coalesce(user_events.last_purchase_ts, user_events.last_event_ts) as date),
            as_of.as_of_date
        ) as integer) as recency_days

    from user_events
    cross join as_of

),

rfm_tiles as (

    -- quintiles, 5 = best; user_id breaks ties so the tiles are the same on every run
    select
        *,
        ntile(5) over (order by recency_days desc, user_id) as r_tile,
        ntile(5) over (order by frequency, user_id) as f_tile,
        ntile(5) over (order by monetary, user_id) as m_tile

    from rfm_values

),

rfm_scores as (

    -- equal values get equal scores (the lowest tile their group reached), so e.g. every user with
    -- no purchase gets f_score 1 however many of them there are
    select
        *,
        cast(min(r_tile) over (partition by recency_days) as integer) as r_score,
        cast(min(f_tile) over (partition by frequency) as integer) as f_score,
        cast(min(m_tile) over (partition by monetary) as integer) as m_score

    from rfm_tiles

),

final as (

    select
        user_id,
        as_of_date,
        first_event_ts,
        last_event_ts,
        last_purchase_ts,
        recency_days,
        cast(frequency as integer) as frequency,
        monetary,
        r_score,
        f_score,
        m_score,
        {{ rfm_segment('r_score', 'f_score') }} as rfm_segment,
        n_views,
        n_carts,
        n_purchases,
        n_sessions

    from rfm_scores

)

select * from final
