with

events as (

    select * from {{ ref('int_events_as_of') }}

),

feedback_events as (

    -- views, carts and purchases of products are implicit feedback; returns are counted in the
    -- feature marts, and service lines (postage, fees) are no one's taste
    select * from events
    where event_type in ('view', 'cart', 'purchase')
        and is_product
        {% if is_incremental() %}
        and event_date >= {{ incremental_start('event_date') }}
        {% endif %}

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
        cast(coalesce(sum(quantity) filter (where event_type = 'purchase'), 0) as bigint) as quantity,
        {{ round_to('sum(revenue)', 2) }} as revenue

    from feedback_events
    group by user_id, item_id, event_date

),

weighted as (

    select
        *,
        -- implicit-feedback strength: a purchase says more than a cart, a cart more than a view
        cast(1 * n_views + 3 * n_carts + 5 * n_purchases as {{ double_type() }}) as weight

    from daily

)

select * from weighted
