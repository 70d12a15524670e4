{#
    The SQL DuckDB (the embedded default) and PostgreSQL (PERSONAFLOW_WAREHOUSE_URL) spell differently,
    one dispatch macro each: `<name>` picks `duckdb__<name>` or `postgres__<name>` by the target's
    adapter, `default__<name>` is DuckDB's. Everything else in the models is SQL both engines read
    as written: `double precision` (not `double`), `cast(x as varchar)` for ISO dates, `date - date`
    for days, `extract(epoch from ts - ts)` for seconds, `generate_series`, `unnest(array[...])`, a
    window in a subquery instead of `qualify`, and a `double precision` numerator where a ratio of
    integers must not be integer division (PostgreSQL truncates it, DuckDB does not).
#}

{#- round(x, digits) as double precision: PostgreSQL only rounds numeric to a number of digits. -#}
{% macro round_to(expression, digits) -%}
    {{ return(adapter.dispatch('round_to', 'personaflow')(expression, digits)) }}
{%- endmacro %}

{% macro default__round_to(expression, digits) -%}
    round({{ expression }}, {{ digits }})
{%- endmacro %}

{% macro postgres__round_to(expression, digits) -%}
    cast(round(cast({{ expression }} as numeric), {{ digits }}) as double precision)
{%- endmacro %}

{#- The continuous quantile (interpolated) of `expression` at `fraction` within the group. -#}
{% macro percentile(expression, fraction) -%}
    {{ return(adapter.dispatch('percentile', 'personaflow')(expression, fraction)) }}
{%- endmacro %}

{% macro default__percentile(expression, fraction) -%}
    quantile_cont({{ expression }}, {{ fraction }})
{%- endmacro %}

{% macro postgres__percentile(expression, fraction) -%}
    percentile_cont({{ fraction }}) within group (order by {{ expression }})
{%- endmacro %}

{#- True where the text holds one of `words` as a whole word (RE2's \b is PostgreSQL's \y). -#}
{% macro matches_words(expression, words) -%}
    {{ return(adapter.dispatch('matches_words', 'personaflow')(expression, words)) }}
{%- endmacro %}

{% macro default__matches_words(expression, words) -%}
    regexp_matches({{ expression }}, '\b({{ words | join("|") }})\b')
{%- endmacro %}

{% macro postgres__matches_words(expression, words) -%}
    ({{ expression }} ~ '\y({{ words | join("|") }})\y')
{%- endmacro %}

{#- A timestamp as YYYYMMDDTHHMMSS (the sessions mart's key). -#}
{% macro compact_timestamp(expression) -%}
    {{ return(adapter.dispatch('compact_timestamp', 'personaflow')(expression)) }}
{%- endmacro %}

{% macro default__compact_timestamp(expression) -%}
    strftime({{ expression }}, '%Y%m%dT%H%M%S')
{%- endmacro %}

{% macro postgres__compact_timestamp(expression) -%}
    to_char({{ expression }}, 'YYYYMMDD"T"HH24MISS')
{%- endmacro %}
