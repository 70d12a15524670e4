with

users as (

    select * from {{ ref('stg_users') }}

),

events as (

    select * from {{ ref('stg_events') }}

),

unregistered as (

    -- users who only appear in events (Online Retail has no users file), with the countries on
    -- their lines up to the as-of date
    select
        events.user_id,
        events.country,
        count(*) as n_lines

    from events
    left join users on events.user_id = users.user_id
    where users.user_id is null
        and events.user_id is not null
        and events.event_date <= {{ as_of_date() }}
    group by events.user_id, events.country

),

unregistered_countries as (

    -- the most common country of the user's lines (a known one before null; ties by name)
    select
        user_id,
        country,
        row_number() over (
            partition by user_id order by country is null, n_lines desc, country
        ) as country_rank

    from unregistered

),

all_users as (

    select
        user_id,
        signup_date,
        country,
        age_band,
        'users_file' as user_source

    from users

    union all

    select
        user_id,
        cast(null as date) as signup_date,
        country,
        cast(null as {{ string_type() }}) as age_band,
        'events' as user_source

    from unregistered_countries
    where country_rank = 1

)

select * from all_users
