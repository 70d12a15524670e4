{#
    Incremental strategy `replace_days`: delete every row of the target whose day (the model's
    `unique_key`, a DATE column) is on or after incremental_start(), then insert the rows the model
    selected (the model filters itself to the same days). Unlike `delete+insert`, days that are no
    longer in the new rows (a batch quarantined since, or days after a smaller as-of date) are
    removed too, so re-running a day always gives the table a full refresh would give.
    Runs inside the model's transaction: a failure leaves the table as it was.
#}
{% macro get_incremental_replace_days_sql(arg_dict) -%}
    {%- set day_column = arg_dict['unique_key'] -%}
    {%- if day_column is none or day_column is not string -%}
        {{- exceptions.raise_compiler_error(
            "incremental_strategy 'replace_days' needs unique_key set to one DATE column of " ~ this
        ) -}}
    {%- endif -%}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}

    delete from {{ target }} where {{ day_column }} >= {{ incremental_start(day_column) }};

    insert into {{ target }} ({{ columns }})
    select {{ columns }} from {{ arg_dict['temp_relation'] }}
{%- endmacro %}

{#
    `replace_days` on Spark (dbt-spark's incremental materialization asks these two macros; every other
    strategy goes on to dbt-spark's own). A Parquet table has no `delete`, so the model is partitioned
    by its day column (config `partition_by`, the same column as `unique_key`) and the days are
    replaced whole: the partitions on or after incremental_start() are dropped, then the new rows are
    written with a dynamic `insert overwrite`, which touches only the partitions they hold. The cost
    is the days rebuilt, not the table; a failure between the two steps leaves those days missing
    until the next run, which rebuilds them (there are no multi-statement transactions on Spark).
#}
{% macro dbt_spark_validate_get_incremental_strategy(raw_strategy, file_format) -%}
    {%- if raw_strategy == 'replace_days' -%}
        {{- return(raw_strategy) -}}
    {%- endif -%}
    {{- return(dbt_spark.dbt_spark_validate_get_incremental_strategy(raw_strategy, file_format)) -}}
{%- endmacro %}

{% macro dbt_spark_get_incremental_sql(strategy, source, target, existing, unique_key, incremental_predicates) -%}
    {%- if strategy != 'replace_days' -%}
        {{- return(dbt_spark.dbt_spark_get_incremental_sql(
            strategy, source, target, existing, unique_key, incremental_predicates
        )) -}}
    {%- endif -%}
    {%- set partition_by = config.get('partition_by') -%}
    {%- set partition_by = partition_by[0] if partition_by is not string and partition_by else partition_by -%}
    {%- if partition_by != unique_key -%}
        {{- exceptions.raise_compiler_error(
            "incremental_strategy 'replace_days' on Spark needs partition_by set to its unique_key ("
            ~ unique_key ~ ") in " ~ target ~ ", got " ~ partition_by
        ) -}}
    {%- endif -%}
    {%- set start = incremental_start(unique_key) -%}
    {%- set days = run_query(
        "select distinct cast(" ~ unique_key ~ " as string) from " ~ target ~ " where " ~ unique_key ~ " >= " ~ start
    ).columns[0].values() -%}
    {%- for day in days -%}
        {%- do run_query("alter table " ~ target ~ " drop if exists partition (" ~ unique_key ~ " = '" ~ day ~ "')") -%}
    {%- endfor -%}
    {%- set columns = adapter.get_columns_in_relation(target) | map(attribute='quoted') | join(', ') -%}
    insert overwrite table {{ target }} partition ({{ unique_key }})
    select {{ columns }} from {{ source }}
{%- endmacro %}
