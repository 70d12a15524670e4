with

source as (

    select * from {{ source('raw', 'users') }}

),

cleaned as (

    select
        trim(cast(user_id as varchar)) as user_id,
        cast(signup_date as date) as signup_date,
        nullif(trim(cast(country as varchar)), '') as country,
        nullif(trim(cast(age_band as varchar)), '') as age_band

    from source

)

select * from cleaned
