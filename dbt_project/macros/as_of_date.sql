{#
    The as-of date of a run as a SQL date expression. `--vars '{as_of: YYYY-MM-DD}'` pins it; without
    it the marts describe the day of the newest event, so a plain `dbt build` still gives full marts.
#}
{% macro as_of_date() -%}
    {%- set as_of = var('as_of', none) -%}
    {%- if as_of -%}
        cast('{{ as_of }}' as date)
    {%- else -%}
        (select max(event_date) from {{ ref('stg_events') }})
    {%- endif -%}
{%- endmacro %}
