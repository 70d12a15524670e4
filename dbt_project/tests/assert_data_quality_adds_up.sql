{#
    Every row of a batch is either usable or excluded for exactly one reason, and every batch has all
    five reason rows: returns the batches where that does not hold.
#}
with

data_quality as (

    select * from {{ ref('data_quality') }}

),

per_batch as (

    select
        batch_date,
        count(*) as n_reasons,
        min(n_batch_rows) as n_batch_rows,
        max(n_batch_rows) as n_batch_rows_max,
        min(n_usable_rows) as n_usable_rows,
        sum(n_excluded) as n_excluded

    from data_quality
    group by batch_date

)

select * from per_batch
where n_reasons <> 5
    or n_batch_rows <> n_batch_rows_max
    or n_usable_rows + n_excluded <> n_batch_rows
