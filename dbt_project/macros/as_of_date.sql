{#
    The as-of date of a run as a SQL date literal. `--vars '{as_of: YYYY-MM-DD}'` pins it; without it
    the marts describe the day of the newest event in raw.events, so a plain `dbt build` still gives
    full marts. A literal (not a subquery) so DuckDB can push date filters below the staging window
    functions and the incremental models read only the days they rebuild.
#}
{% macro as_of_date() -%}
    {%- set as_of = var('as_of', none) -%}
    {%- if as_of -%}
        {{- return("date '" ~ as_of ~ "'") -}}
    {%- elif not execute -%}
        {{- return("cast(null as date)") -}}
    {%- endif -%}
    {%- set newest = run_query(
        "select max(cast(event_ts as date)) from " ~ source('raw', 'events')
    ).columns[0].values()[0] -%}
    {{- return("date '" ~ newest ~ "'" if newest else "cast(null as date)") -}}
{%- endmacro %}
