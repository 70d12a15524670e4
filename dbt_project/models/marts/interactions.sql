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

daily as (

    select
        user_id,
        item_id,
        event_date,
        max(event_ts) as last_event_ts,
        count(*) filter (where event_type = 'view') as n_views,
        count(*) filter (where event_type = 'cart') as n_carts,
        count(*) filter (where event_type = 'purchase') as n_purchases,
        coalesce(sum(quantity) filter (where event_type = 'purchase'), 0) as quantity,
        round(sum(revenue), 2) as revenue

    from events_as_of
    group by user_id, item_id, event_date

),

weighted as (

    select
        *,
        -- implicit-feedback strength: a purchase says more than a cart, a cart more than a view
        cast(1 * n_views + 3 * n_carts + 5 * n_purchases as double) as weight

    from daily

)

select * from weighted
