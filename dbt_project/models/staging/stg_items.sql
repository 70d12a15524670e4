with

source as (

    select * from {{ source('raw', 'items') }}

),

cleaned as (

    select
        trim(cast(item_id as varchar)) as item_id,
        trim(cast(category as varchar)) as category,
        trim(cast(brand as varchar)) as brand,
        cast(price as double precision) as price,
        nullif(trim(cast(description as varchar)), '') as description

    from source

)

select * from cleaned
