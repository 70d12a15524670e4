with

source as (

    select * from {{ source('raw', 'events') }}

),

cleaned as (

    select
        cast(event_id as varchar) as event_id,
        trim(cast(user_id as varchar)) as user_id,
        trim(cast(item_id as varchar)) as item_id,
        lower(trim(cast(event_type as varchar))) as event_type,
        cast(event_ts as timestamp) as event_ts,
        cast(event_ts as date) as event_date,
        trim(cast(session_id as varchar)) as session_id,
        cast(quantity as integer) as quantity,
        cast(price as double) as price,
        -- money is rounded to cents once, here, so sums downstream do not depend on float summation order
        case
            when lower(trim(cast(event_type as varchar))) = 'purchase'
                then round(cast(quantity as integer) * cast(price as double), 2)
            else 0.0
        end as revenue,
        cast(batch_date as date) as batch_date,
        cast(loaded_at as timestamp) as loaded_at

    from source

)

select * from cleaned
