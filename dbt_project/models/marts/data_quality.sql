{%- set reasons = ['missing_customer', 'non_positive_price', 'non_positive_quantity', 'duplicate'] -%}

with

events as (

    select * from {{ ref('int_events_flagged') }}

),

batch_events as (

    -- int_events_flagged holds every row up to the as-of date, usable or not
    select * from events
    {% if is_incremental() %}
    where batch_date >= {{ incremental_start('batch_date') }}
    {% endif %}

),

per_batch as (

    -- a row counts under every fault it has (n_rows) and under its first one only (n_excluded)
    select
        batch_date,
        count(*) as n_batch_rows,
        count(*) filter (where exclusion_reason is null) as n_usable_rows,
        {% for reason in reasons %}
        count(*) filter (where is_{{ reason }}) as {{ reason }}_rows,
        count(*) filter (where exclusion_reason = '{{ reason }}') as {{ reason }}_excluded,
        {% endfor %}
        count(*) filter (where event_type = 'return') as return_rows

    from batch_events
    group by batch_date

),

reasons as (

    {% for reason in reasons %}
    select
        batch_date,
        '{{ reason }}' as reason,
        {{ reason }}_rows as n_rows,
        {{ reason }}_excluded as n_excluded,
        n_batch_rows,
        n_usable_rows
    from per_batch

    union all

    {% endfor %}
    -- returns are kept (as event_type 'return', not purchases), so none is excluded for being one
    select
        batch_date,
        'return' as reason,
        return_rows as n_rows,
        0 as n_excluded,
        n_batch_rows,
        n_usable_rows
    from per_batch

)

select * from reasons
