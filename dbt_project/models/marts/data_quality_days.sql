{#- raw.batch_validations is written by the batch validation (quality/records.py) and raw.batches by
    the loader; a warehouse built another way may lack them: then every day is 'not validated', and
    the days are those with rows. -#}
{%- set validations = adapter.get_relation(
    database=target.database, schema='raw', identifier='batch_validations') -%}
{%- set loaded = adapter.get_relation(database=target.database, schema='raw', identifier='batches') -%}

with

{% if loaded is not none %}
batches as (

    select batch_date, status, row_count from {{ loaded }}

),
{% else %}
batches as (

    select distinct batch_date, 'loaded' as status, cast(null as bigint) as row_count
    from {{ ref('data_quality') }}

),
{% endif %}

quality as (

    select * from {{ ref('data_quality') }}

),

{% if validations is not none %}
validations as (

    -- the latest outcome of the batch suite per day (a window in a subquery: PostgreSQL has no qualify)
    select
        batch_date, severity, n_expectations, failed, warnings, data_docs, validated_at
    from (
        select
            *,
            row_number() over (partition by batch_date order by validated_at desc) as outcome_rank
        from {{ validations }}
        where suite = 'raw_events'
    ) as ranked
    where outcome_rank = 1

),
{% else %}
validations as (

    select
        cast(null as date) as batch_date,
        cast(null as {{ string_type() }}) as severity,
        cast(null as integer) as n_expectations,
        cast(null as {{ string_type() }}) as failed,
        cast(null as {{ string_type() }}) as warnings,
        cast(null as {{ string_type() }}) as data_docs,
        cast(null as timestamp) as validated_at
    where false

),
{% endif %}

per_day as (

    select
        batch_date,
        max(n_batch_rows) as n_batch_rows,
        max(n_usable_rows) as n_usable_rows,
        cast(sum(n_excluded) as bigint) as n_excluded_rows

    from quality
    group by batch_date

),

final as (

    -- one row per batch day the loader knows of: what it held, what the marts could use, and what
    -- the batch suite said (a quarantined day shows its failure and no rows)
    select
        batches.batch_date,
        batches.status,
        batches.row_count,
        coalesce(per_day.n_batch_rows, 0) as n_batch_rows,
        coalesce(per_day.n_usable_rows, 0) as n_usable_rows,
        coalesce(per_day.n_excluded_rows, 0) as n_excluded_rows,
        coalesce(validations.severity, 'not validated') as validation,
        validations.n_expectations,
        validations.failed,
        validations.warnings,
        validations.data_docs,
        validations.validated_at

    from batches
    left join per_day on batches.batch_date = per_day.batch_date
    left join validations on batches.batch_date = validations.batch_date
    where batches.batch_date <= {{ as_of_date() }}

)

select * from final
