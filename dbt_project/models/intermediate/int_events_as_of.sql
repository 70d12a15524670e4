with

events as (

    select * from {{ ref('int_events_flagged') }}

),

usable as (

    -- the events the marts may use: no exclusion reason (int_events_flagged has cut at the as-of date)
    select
        event_id,
        user_id,
        item_id,
        event_type,
        event_ts,
        event_date,
        session_id,
        order_id,
        order_key,
        quantity,
        price,
        revenue,
        return_value,
        description,
        country,
        is_product,
        batch_date

    from events
    where exclusion_reason is null

)

select * from usable
