{%- set windows = var('feature_windows') -%}
{%- if 30 not in windows -%}
    {{ exceptions.raise_compiler_error(
        'item_features: var feature_windows must include 30 (for popularity_rank_30d)'
    ) }}
{%- endif -%}

with

items as (

    select * from {{ ref('int_items') }}

),

events as (

    select * from {{ ref('int_events_as_of') }}

),

as_of as (

    select {{ as_of_date() }} as as_of_date

),

item_events as (

    select
        events.item_id,
        count(*) filter (where events.event_type = 'view') as n_views,
        count(*) filter (where events.event_type = 'cart') as n_carts,
        count(*) filter (where events.event_type = 'purchase') as n_purchases,
        count(*) filter (where events.event_type = 'return') as n_returns,
        {{ round_to('sum(events.revenue)', 2) }} as revenue,
        coalesce(sum(events.quantity) filter (where events.event_type = 'purchase'), 0) as purchased_units,
        coalesce(sum(events.quantity) filter (where events.event_type = 'return'), 0) as returned_units,
        {% for days in windows %}
        count(*) filter (
            where events.event_type = 'purchase' and events.event_date > as_of.as_of_date - {{ days }}
        ) as n_purchases_{{ days }}d,
        {{ round_to(
            'coalesce(sum(events.revenue) filter (where events.event_date > as_of.as_of_date - '
            ~ days ~ '), 0)', 2
        ) }} as revenue_{{ days }}d,
        {% endfor %}
        count(*) as n_events

    from events
    cross join as_of
    group by events.item_id

),

item_buyers as (

    -- one row per (item, buyer): counting these is cheaper than count(distinct) per window
    select
        item_id,
        user_id,
        max(event_date) as last_purchase_date

    from events
    where event_type = 'purchase'
    group by item_id, user_id

),

buyer_counts as (

    select
        item_buyers.item_id,
        count(*) as n_buyers,
        count(*) filter (where item_buyers.last_purchase_date > as_of.as_of_date - 30) as n_buyers_30d

    from item_buyers
    cross join as_of
    group by item_buyers.item_id

),

category_prices as (

    -- terciles of the list price within the category (items without one: a category of their own)
    select
        coalesce(category, '') as category_key,
        -- the fractions as doubles (Jinja's 1 / 3): a SQL `1.0 / 3` is a 6-digit decimal on Spark
        {{ percentile('price', 1 / 3) }} as price_low_max,
        {{ percentile('price', 2 / 3) }} as price_mid_max

    from items
    where price > 0 and is_product
    group by coalesce(category, '')

),

item_features as (

    -- every known item, with zeros for items nobody touched yet (cold-start candidates)
    select
        items.item_id,
        items.category,
        items.brand,
        items.price,
        coalesce(item_events.n_views, 0) as n_views,
        coalesce(item_events.n_carts, 0) as n_carts,
        coalesce(item_events.n_purchases, 0) as n_purchases,
        coalesce(buyer_counts.n_buyers, 0) as n_buyers,
        coalesce(item_events.revenue, 0.0) as revenue,
        -- a strict order (ties broken by buyers, revenue, then id) so the popularity baseline is stable
        -- non-products (postage, fees) rank after every product: never the popular choice
        cast(row_number() over (
            order by
                items.is_product desc,
                coalesce(item_events.n_purchases, 0) desc,
                coalesce(buyer_counts.n_buyers, 0) desc,
                coalesce(item_events.revenue, 0.0) desc,
                items.item_id
        ) as integer) as popularity_rank,
        items.description,
        {% for days in windows %}
        coalesce(item_events.n_purchases_{{ days }}d, 0) as n_purchases_{{ days }}d,
        coalesce(item_events.revenue_{{ days }}d, 0.0) as revenue_{{ days }}d,
        {% endfor %}
        coalesce(buyer_counts.n_buyers_30d, 0) as n_buyers_30d,
        -- the 30-day popularity, ranked like popularity_rank
        cast(row_number() over (
            order by
                items.is_product desc,
                coalesce(item_events.n_purchases_30d, 0) desc,
                coalesce(buyer_counts.n_buyers_30d, 0) desc,
                coalesce(item_events.revenue_30d, 0.0) desc,
                items.item_id
        ) as integer) as popularity_rank_30d,
        coalesce(item_events.n_returns, 0) as n_returns,
        cast(coalesce(item_events.purchased_units, 0) as bigint) as purchased_units,
        cast(coalesce(item_events.returned_units, 0) as bigint) as returned_units,
        -- returned units per purchased unit; null if never bought
        {{ round_to(
            'cast(item_events.returned_units as ' ~ double_type() ~ ') / nullif(item_events.purchased_units, 0)', 4
        ) }} as return_rate,
        case
            when items.price is null or items.price <= 0 then null
            when items.price <= category_prices.price_low_max then 'low'
            when items.price <= category_prices.price_mid_max then 'mid'
            else 'high'
        end as price_band,
        items.is_product,
        items.category_source,
        items.item_issue

    from items
    left join item_events on items.item_id = item_events.item_id
    left join buyer_counts on items.item_id = buyer_counts.item_id
    left join category_prices on coalesce(items.category, '') = category_prices.category_key

)

select * from item_features
