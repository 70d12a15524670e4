with

items as (

    select * from {{ ref('stg_items') }}

),

events as (

    select * from {{ ref('stg_events') }}

),

uncatalogued as (

    -- items that only appear in events (Online Retail has no catalogue), with their descriptions
    -- and positive prices up to the as-of date
    select
        events.item_id,
        events.description,
        events.price,
        count(*) as n_lines

    from events
    left join items on events.item_id = items.item_id
    where items.item_id is null
        and events.event_date <= {{ as_of_date() }}
    group by events.item_id, events.description, events.price

),

descriptions as (

    select
        item_id,
        description,
        row_number() over (
            partition by item_id order by description is null, sum(n_lines) desc, description
        ) as description_rank

    from uncatalogued
    group by item_id, description

),

prices as (

    -- the most common positive unit price (lower price on ties); null if the item never had one
    select
        item_id,
        price,
        row_number() over (
            partition by item_id order by price > 0 desc, sum(n_lines) desc, price
        ) as price_rank

    from uncatalogued
    group by item_id, price

),

all_items as (

    select
        item_id,
        category,
        brand,
        price,
        cast(null as varchar) as description,
        'catalogue' as item_source

    from items

    union all

    select
        descriptions.item_id,
        cast(null as varchar) as category,
        cast(null as varchar) as brand,
        case when prices.price > 0 then prices.price end as price,
        descriptions.description,
        'events' as item_source

    from descriptions
    inner join prices
        on descriptions.item_id = prices.item_id
        and prices.price_rank = 1
    where descriptions.description_rank = 1

)

select * from all_items
