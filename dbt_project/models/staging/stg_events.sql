with

source as (

    select * from {{ source('raw', 'events') }}

),

numbered as (

    -- the n-th copy of a row that is identical, as it came, on every business column (nulls equal);
    -- the first copy by batch, file and line stays usable. The day in the partition changes nothing
    -- (event_ts is there too) but lets a filter on event_date run before the window: DuckDB pushes
    -- it down only when event_date is computed here, beside the window, and merely passed on after.
    select
        *,
        cast(event_ts as date) as event_date,
        row_number() over (
            partition by
                cast(event_ts as date), order_id, session_id, item_id, event_ts, quantity, price,
                user_id, event_type, description, country
            order by batch_date, source_file, source_row, event_id, loaded_at
        ) as copy_number

    from source

),

cleaned as (

    select
        cast(event_id as {{ string_type() }}) as event_id,
        nullif(trim(user_id), '') as user_id,
        trim(item_id) as item_id,
        lower(trim(event_type)) as event_type,
        event_ts,
        event_date,
        nullif(trim(session_id), '') as session_id,
        nullif(trim(order_id), '') as order_id,
        -- the basket a line belongs to: its order (invoice) where the source has orders, else its
        -- session, else (a format without either) the user's day
        coalesce(
            nullif(trim(order_id), ''),
            nullif(trim(session_id), ''),
            nullif(trim(user_id), '') || '-' || cast(event_date as {{ string_type() }})
        ) as order_key,
        quantity as source_quantity,
        -- a return (cancellation) keeps its units as a positive count; raw keeps the sign it came with
        case when lower(trim(event_type)) = 'return' then abs(quantity) else quantity end as quantity,
        price,
        nullif(trim(description), '') as description,
        nullif(trim(country), '') as country,
        source_format,
        source_file,
        source_row,
        batch_date,
        loaded_at,
        copy_number

    from numbered

),

flagged as (

    select
        *,
        user_id is null as is_missing_customer,
        -- a view or cart may come without a price (generic formats); money events may not
        case
            when price is null then event_type in ('purchase', 'return')
            else price <= 0
        end as is_non_positive_price,
        event_type is distinct from 'return' and coalesce(quantity <= 0, true) as is_non_positive_quantity,
        copy_number > 1 as is_duplicate,
        {{ is_product('item_id') }} as is_product

    from cleaned

),

final as (

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
        source_quantity,
        price,
        -- money is rounded to cents once, here, so sums downstream do not depend on summation order
        case when event_type = 'purchase' then {{ round_to('quantity * price', 2) }} else 0.0 end as revenue,
        case when event_type = 'return' then {{ round_to('quantity * price', 2) }} else 0.0 end as return_value,
        description,
        country,
        is_missing_customer,
        is_non_positive_price,
        is_non_positive_quantity,
        is_duplicate,
        is_product,
        -- one reason per excluded row, the first that applies; null = a usable event
        case
            when is_missing_customer then 'missing_customer'
            when is_non_positive_price then 'non_positive_price'
            when is_non_positive_quantity then 'non_positive_quantity'
            when is_duplicate then 'duplicate'
        end as exclusion_reason,
        batch_date,
        source_format,
        source_file,
        source_row,
        loaded_at

    from flagged

)

select * from final
