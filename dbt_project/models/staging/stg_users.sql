with

source as (

    select * from {{ source('raw', 'users') }}

),

cleaned as (

    select
        trim(cast(user_id as {{ string_type() }})) as user_id,
        cast(signup_date as date) as signup_date,
        nullif(trim(cast(country as {{ string_type() }})), '') as country,
        nullif(trim(cast(age_band as {{ string_type() }})), '') as age_band

    from source

)

select * from cleaned
