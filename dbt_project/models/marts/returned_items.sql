with

events as (

    select * from {{ ref('int_events_as_of') }}

),

units as (

    -- what each customer bought and sent back of each product up to the as-of date
    select
        user_id,
        item_id,
        cast(coalesce(sum(quantity) filter (where event_type = 'purchase'), 0) as bigint) as purchased_units,
        cast(coalesce(sum(quantity) filter (where event_type = 'return'), 0) as bigint) as returned_units,
        max(event_date) filter (where event_type = 'return') as last_return_date

    from events
    where event_type in ('purchase', 'return') and is_product
    group by user_id, item_id

),

fully_returned as (

    -- every unit bought came back (or more: goods bought before the log): the customer did not want
    -- it, so it is neither their taste for training nor something to recommend back
    select * from units
    where returned_units > 0 and returned_units >= purchased_units

)

select * from fully_returned
