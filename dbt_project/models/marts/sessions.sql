with

events as (

    select * from {{ ref('int_events_as_of') }}

),

window_events as (

    -- sessions never cross midnight (below), so a day's sessions depend on that day's events only
    select * from events
    {% if is_incremental() %}
    where event_date >= {{ incremental_start('session_date') }}
    {% endif %}

),

gaps as (

    select
        *,
        lag(event_ts) over (
            partition by user_id, event_date order by event_ts, event_id
        ) as previous_event_ts

    from window_events

),

starts as (

    -- 30-minute inactivity rule: a user's event more than session_gap_minutes after their previous
    -- one opens a new session, whatever session id the source gave it. Sessions are also cut at
    -- midnight UTC (as Google Analytics did), which keeps each day's sessions independent of the
    -- next day's events and the incremental build exact.
    select
        *,
        case
            when previous_event_ts is null then 1
            when event_ts - previous_event_ts > interval '{{ var("session_gap_minutes") }} minutes' then 1
            else 0
        end as is_session_start

    from gaps

),

numbered as (

    select
        *,
        sum(is_session_start) over (
            partition by user_id, event_date order by event_ts, event_id
            rows between unbounded preceding and current row
        ) as session_number

    from starts

),

sessions as (

    select
        user_id,
        event_date as session_date,
        session_number,
        min(event_ts) as session_start,
        max(event_ts) as session_end,
        -- the source's session id of the first event (the one start row; cheaper than an ordered
        -- aggregate), and how many source ids the session spans
        max(session_id) filter (where is_session_start = 1) as source_session_id,
        count(distinct session_id) as n_source_sessions,
        count(*) as n_events,
        count(*) filter (where event_type = 'view') as n_views,
        count(*) filter (where event_type = 'cart') as n_carts,
        count(*) filter (where event_type = 'purchase') as n_purchases,
        count(*) filter (where event_type = 'return') as n_returns,
        {{ round_to('sum(revenue)', 2) }} as revenue

    from numbered
    group by user_id, event_date, session_number

),

final as (

    select
        -- a user's sessions start at distinct instants, so user + start is a key
        user_id || '-' || {{ compact_timestamp('session_start') }} as session_id,
        user_id,
        session_start,
        session_end,
        n_events,
        n_views,
        n_carts,
        n_purchases,
        revenue,
        n_returns,
        session_date,
        source_session_id,
        n_source_sessions,
        cast({{ seconds_between('session_end', 'session_start') }} as integer) as duration_seconds

    from sessions

)

select * from final
