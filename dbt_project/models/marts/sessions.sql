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

sessions as (

    -- grouped by user too: a session id shared by two users shows up as a duplicate session_id,
    -- which the unique test reports instead of silently picking one user
    select
        session_id,
        user_id,
        min(event_ts) as session_start,
        max(event_ts) as session_end,
        count(*) as n_events,
        count(*) filter (where event_type = 'view') as n_views,
        count(*) filter (where event_type = 'cart') as n_carts,
        count(*) filter (where event_type = 'purchase') as n_purchases,
        round(sum(revenue), 2) as revenue

    from events_as_of
    group by session_id, user_id

)

select * from sessions
