with

source as (

    select * from {{ source('raw', 'items') }}

),

cleaned as (

    select
        trim(cast(item_id as {{ string_type() }})) as item_id,
        trim(cast(category as {{ string_type() }})) as category,
        trim(cast(brand as {{ string_type() }})) as brand,
        cast(price as {{ double_type() }}) as price,
        nullif(trim(cast(description as {{ string_type() }})), '') as description

    from source

)

select * from cleaned
