{%- set windows = var('feature_windows') -%}

with

events as (

    select * from {{ ref('int_events_as_of') }}

),

users as (

    select * from {{ ref('int_users') }}

),

items as (

    select * from {{ ref('int_items') }}

),

as_of as (

    select {{ as_of_date() }} as as_of_date

),

orders as (

    -- one row per order (basket: the invoice, else the session) with a purchase; an order is in a
    -- window if any of its lines is
    select
        user_id,
        order_key,
        max(event_date) as last_line_date

    from events
    where event_type = 'purchase'
    group by user_id, order_key

),

user_orders as (

    select
        orders.user_id,
        {% for days in windows %}
        count(*) filter (where orders.last_line_date > as_of.as_of_date - {{ days }}) as n_orders_{{ days }}d,
        {% endfor %}
        count(*) as frequency

    from orders
    cross join as_of
    group by orders.user_id

),

user_events as (

    select
        events.user_id,
        min(events.event_ts) as first_event_ts,
        max(events.event_ts) as last_event_ts,
        min(events.event_ts) filter (where events.event_type = 'purchase') as first_purchase_ts,
        max(events.event_ts) filter (where events.event_type = 'purchase') as last_purchase_ts,
        -- RFM monetary is net: a cancellation takes back what its order brought in
        {{ round_to('sum(events.revenue) - coalesce(sum(events.return_value), 0)', 2) }} as monetary,
        {{ round_to('sum(events.revenue)', 2) }} as gross_monetary,
        -- service lines (postage, fees) the customer paid: in monetary, and shown apart
        {{ round_to(
            'coalesce(sum(events.revenue - events.return_value) filter (where not events.is_product), 0)', 2
        ) }}
            as non_product_revenue,
        count(*) filter (where events.event_type = 'view') as n_views,
        count(*) filter (where events.event_type = 'cart') as n_carts,
        count(*) filter (where events.event_type = 'purchase') as n_purchases,
        count(*) filter (where events.event_type = 'return') as n_returns,
        count(distinct events.session_id) as n_sessions,
        coalesce(sum(events.quantity) filter (where events.event_type = 'purchase'), 0) as purchased_units,
        coalesce(sum(events.quantity) filter (where events.event_type = 'return'), 0) as returned_units,
        {{ round_to('sum(events.return_value)', 2) }} as returned_value,
        {% for days in windows %}
        -- trailing {{ days }} days: event_date in (as_of - {{ days }}, as_of]
        count(*) filter (where events.event_date > as_of.as_of_date - {{ days }}) as n_events_{{ days }}d,
        {{ round_to(
            'coalesce(sum(events.revenue) filter (where events.event_date > as_of.as_of_date - '
            ~ days ~ '), 0)', 2
        ) }} as revenue_{{ days }}d,
        {% endfor %}
        as_of.as_of_date

    from events
    cross join as_of
    group by events.user_id, as_of.as_of_date

),

category_scores as (

    -- taste per category with the interactions weights (view 1, cart 3, purchase 5)
    select
        events.user_id,
        items.category,
        sum(case events.event_type when 'view' then 1 when 'cart' then 3 when 'purchase' then 5 else 0 end)
            as score

    from events
    inner join items on events.item_id = items.item_id
    where items.category is not null and events.event_type <> 'return'
    group by events.user_id, items.category

),

favourite_categories as (

    select
        user_id,
        {{ ordered_string_agg('category', ',', 'category_rank') }} as favourite_categories

    from (
        select
            *,
            row_number() over (partition by user_id order by score desc, category) as category_rank
        from category_scores
    ) as ranked
    where category_rank <= 3
    group by user_id

),

rfm_values as (

    select
        user_events.*,
        coalesce(user_orders.frequency, 0) as frequency,
        {% for days in windows %}
        coalesce(user_orders.n_orders_{{ days }}d, 0) as n_orders_{{ days }}d,
        {% endfor %}
        -- users who never bought are as recent as their last event of any kind
        cast({{ days_between(
            'user_events.as_of_date',
            'cast(coalesce(user_events.last_purchase_ts, user_events.last_event_ts) as date)'
        ) }} as integer) as recency_days

    from user_events
    left join user_orders on user_events.user_id = user_orders.user_id

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
        rfm_scores.user_id,
        rfm_scores.as_of_date,
        rfm_scores.first_event_ts,
        rfm_scores.last_event_ts,
        rfm_scores.last_purchase_ts,
        rfm_scores.recency_days,
        cast(rfm_scores.frequency as integer) as frequency,
        rfm_scores.monetary,
        rfm_scores.r_score,
        rfm_scores.f_score,
        rfm_scores.m_score,
        {{ rfm_segment('rfm_scores.r_score', 'rfm_scores.f_score', 'rfm_scores.frequency') }} as rfm_segment,
        rfm_scores.n_views,
        rfm_scores.n_carts,
        rfm_scores.n_purchases,
        rfm_scores.n_sessions,
        users.country,
        rfm_scores.first_purchase_ts,
        cast({{ days_between('rfm_scores.as_of_date', 'cast(rfm_scores.first_purchase_ts as date)') }} as integer)
            as days_since_first_purchase,
        cast({{ days_between('rfm_scores.as_of_date', 'cast(rfm_scores.last_purchase_ts as date)') }} as integer)
            as days_since_last_purchase,
        -- known since sign-up, or since the first event when that is earlier or there is no sign-up
        cast({{ days_between(
            'rfm_scores.as_of_date', 'least(users.signup_date, cast(rfm_scores.first_event_ts as date))'
        ) }} as integer) as tenure_days,
        {% for days in windows %}
        cast(rfm_scores.n_events_{{ days }}d as integer) as n_events_{{ days }}d,
        cast(rfm_scores.n_orders_{{ days }}d as integer) as n_orders_{{ days }}d,
        rfm_scores.revenue_{{ days }}d,
        {% endfor %}
        -- what an order brings in when placed (returns are in monetary)
        {{ round_to('rfm_scores.gross_monetary / nullif(rfm_scores.frequency, 0)', 2) }} as avg_basket_value,
        {{ round_to(
            'cast(rfm_scores.purchased_units as ' ~ double_type() ~ ') / nullif(rfm_scores.frequency, 0)', 2
        ) }} as avg_basket_units,
        rfm_scores.n_returns,
        cast(rfm_scores.purchased_units as bigint) as purchased_units,
        cast(rfm_scores.returned_units as bigint) as returned_units,
        rfm_scores.returned_value,
        rfm_scores.gross_monetary,
        rfm_scores.non_product_revenue,
        -- returned units per purchased unit; can exceed 1 when goods bought before the log come back
        {{ round_to(
            'cast(rfm_scores.returned_units as ' ~ double_type() ~ ') / nullif(rfm_scores.purchased_units, 0)', 4
        ) }} as return_rate,
        favourite_categories.favourite_categories

    from rfm_scores
    left join users on rfm_scores.user_id = users.user_id
    left join favourite_categories on rfm_scores.user_id = favourite_categories.user_id

)

select * from final
