with

items as (

    select * from {{ ref('stg_items') }}

),

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

item_events as (

    select
        item_id,
        count(*) filter (where event_type = 'view') as n_views,
        count(*) filter (where event_type = 'cart') as n_carts,
        count(*) filter (where event_type = 'purchase') as n_purchases,
        count(distinct user_id) filter (where event_type = 'purchase') as n_buyers,
        round(sum(revenue), 2) as revenue

    from events_as_of
    group by item_id

),

item_features as (

    -- every catalogue item, with zeros for items nobody touched yet (cold-start candidates)
    select
        items.item_id,
        items.category,
        items.brand,
        items.price,
        coalesce(item_events.n_views, 0) as n_views,
        coalesce(item_events.n_carts, 0) as n_carts,
        coalesce(item_events.n_purchases, 0) as n_purchases,
        coalesce(item_events.n_buyers, 0) as n_buyers,
        coalesce(item_events.revenue, 0.0) as revenue,
        -- a strict order (ties broken by buyers, revenue, then id) so the popularity baseline is stable
        cast(row_number() over (
            order by
                coalesce(item_events.n_purchases, 0) desc,
                coalesce(item_events.n_buyers, 0) desc,
                coalesce(item_events.revenue, 0.0) desc,
                items.item_id
        ) as integer) as popularity_rank

    from items
    left join item_events on items.item_id = item_events.item_id

)

select * from item_features
