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
