with

events as (

    select * from {{ ref('stg_events') }}

),

as_of_events as (

    -- the as-of cut (event_ts < as_of + 1 day) and, on an incremental run, only the days it
    -- rebuilds; both are literal dates on event_date, so DuckDB filters raw.events before staging's
    -- duplicate window (partitioned by day) instead of numbering all of history every night
    select * from events
    where event_date <= {{ as_of_date() }}
        {% if is_incremental() %}
        and event_date >= {{ incremental_start('event_date') }}
        {% endif %}

)

select * from as_of_events
