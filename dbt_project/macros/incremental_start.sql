{#
    The first day an incremental run of the current model rebuilds, as a SQL date literal: the earlier
    of (as_of - reprocess_days + 1) and the day after the newest day already in the table. So a nightly
    run rebuilds the as-of day only, a skipped night is filled in on the next run, and re-running an
    older day rewinds the table to that day (later days are deleted, as they are after the as-of date).

    `day_column` is the model's day column (its `unique_key`, see get_incremental_replace_days_sql).
    Both the model's filter and the strategy's delete call this; the table does not change between
    the two calls, so they agree.
#}
{% macro incremental_start(day_column) -%}
    {%- if not execute -%}
        {{- return("cast(null as date)") -}}
    {%- endif -%}
    {%- set reprocess_days = var('reprocess_days') | int -%}
    {%- if reprocess_days < 1 -%}
        {{- exceptions.raise_compiler_error("var reprocess_days must be >= 1, got " ~ reprocess_days) -}}
    {%- endif -%}
    {%- set existing = adapter.get_columns_in_relation(this) | map(attribute='name') | list -%}
    {%- if day_column not in existing -%}
        {{- exceptions.raise_compiler_error(
            this ~ " has no column " ~ day_column ~ ": it was built by an older version of the model;"
            ~ " rebuild it once with full_refresh=True (dbt --full-refresh)"
        ) -}}
    {%- endif -%}
    {%- set query -%}
        select least({{ as_of_date() }} - {{ reprocess_days - 1 }}, max({{ day_column }}) + 1)
        from {{ this }}
    {%- endset -%}
    {%- set start = run_query(query).columns[0].values()[0] -%}
    {{- return("date '" ~ start ~ "'" if start else "cast(null as date)") -}}
{%- endmacro %}
