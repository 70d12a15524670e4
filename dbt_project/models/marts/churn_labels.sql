{%- set horizon = var('churn_horizon_days') | int -%}
{%- set step = var('churn_cutoff_step_days') | int -%}

with

events as (

    select * from {{ ref('int_events_as_of') }}

),

as_of as (

    select {{ as_of_date() }} as as_of_date

),

cutoffs as (

    -- as_of - horizon, then every `step` days further back: each cut-off's horizon ends on or
    -- before the as-of date, so every label is fully observed
    select
        as_of.as_of_date - {{ horizon }} - {{ step }} * cast(cutoff_index as integer) as cutoff_date

    from as_of
    cross join {{ integer_series('indexes', 'cutoff_index', 0, var('churn_cutoffs') | int - 1) }}

),

purchases as (

    select
        user_id,
        order_key,
        event_date,
        revenue

    from events
    where event_type = 'purchase'

),

history as (

    -- the features a model may use at the cut-off: purchase lines on or before it, nothing later
    select
        cutoffs.cutoff_date,
        purchases.user_id,
        count(distinct purchases.order_key) as frequency,
        {{ round_to('sum(purchases.revenue)', 2) }} as monetary,
        min(purchases.event_date) as first_purchase_date,
        max(purchases.event_date) as last_purchase_date,
        count(distinct purchases.order_key) filter (
            where purchases.event_date > cutoffs.cutoff_date - 90
        ) as n_orders_90d

    from cutoffs
    inner join purchases on purchases.event_date <= cutoffs.cutoff_date
    group by cutoffs.cutoff_date, purchases.user_id

),

outcome as (

    -- the label: orders in the horizon after the cut-off (day after it up to cut-off + horizon)
    select
        cutoffs.cutoff_date,
        purchases.user_id,
        count(distinct purchases.order_key) as n_orders_in_horizon

    from cutoffs
    inner join purchases
        on purchases.event_date > cutoffs.cutoff_date
        and purchases.event_date <= cutoffs.cutoff_date + {{ horizon }}
    group by cutoffs.cutoff_date, purchases.user_id

),

labels as (

    select
        history.user_id,
        history.cutoff_date,
        {{ horizon }} as horizon_days,
        cast({{ days_between('history.cutoff_date', 'history.last_purchase_date') }} as integer) as recency_days,
        cast(history.frequency as integer) as frequency,
        history.monetary,
        cast({{ days_between('history.cutoff_date', 'history.first_purchase_date') }} as integer)
            as days_since_first_purchase,
        cast(history.n_orders_90d as integer) as n_orders_90d,
        cast(coalesce(outcome.n_orders_in_horizon, 0) as integer) as n_orders_in_horizon,
        coalesce(outcome.n_orders_in_horizon, 0) = 0 as churned

    from history
    left join outcome
        on history.cutoff_date = outcome.cutoff_date
        and history.user_id = outcome.user_id

)

select * from labels
