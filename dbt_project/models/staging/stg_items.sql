with

source as (

    select * from {{ source('raw', 'items') }}

),

cleaned as (

    select
        trim(cast(item_id as varchar)) as item_id,
        trim(cast(category as varchar)) as category,
        trim(cast(brand as varchar)) as brand,
        cast(price as double) as price

    from source

)

select * from cleaned
