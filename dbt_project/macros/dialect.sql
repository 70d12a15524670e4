{#
    The SQL DuckDB (the embedded default), PostgreSQL (PERSONAFLOW_WAREHOUSE_URL) and Spark
    (PERSONAFLOW_WAREHOUSE_URL=spark, dbt-spark) spell differently, one dispatch macro each: `<name>`
    picks `duckdb__<name>`, `postgres__<name>` or `spark__<name>` by the target's adapter,
    `default__<name>` is DuckDB's (and PostgreSQL's where they agree). Everything else in the models is
    SQL all three read as written: `cast(x as {{ string_type() }})` for ISO dates and text,
    `{{ double_type() }}` for doubles, `date - n` for a day n days earlier, `least`/`greatest`,
    `count(*) filter (where ...)`, `interval 'n minutes'`, a window in a subquery instead of `qualify`,
    and a double numerator where a ratio of integers must not be integer division (PostgreSQL
    truncates it, DuckDB and Spark do not). What only some engines have goes through the macros below:
    days and seconds between two dates or timestamps, a series of integers, a row per array element,
    an ordered string aggregate.
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

{#- DuckDB's own arithmetic (round(x * 10^d) / 10^d on doubles): Spark's round(x, d) rounds the
    double's decimal text instead, so 319.715 (binary 319.71499...) became 319.72 where DuckDB gives
    319.71. A decimal input (an average of 1.0 / 0.0 literals) is made a double first. -#}
{% macro spark__round_to(expression, digits) -%}
    (round(cast({{ expression }} as double) * {{ 10 ** digits }}) / {{ 10 ** digits }})
{%- endmacro %}

{% macro spark__percentile(expression, fraction) -%}
    percentile({{ expression }}, {{ fraction }})
{%- endmacro %}

{#- Java regexes know \b; a Spark string literal needs the backslash doubled. -#}
{% macro spark__matches_words(expression, words) -%}
    ({{ expression }} rlike '\\b({{ words | join("|") }})\\b')
{%- endmacro %}

{% macro spark__compact_timestamp(expression) -%}
    date_format({{ expression }}, "yyyyMMdd'T'HHmmss")
{%- endmacro %}

{#- The text type: Spark's varchar needs a length, its string does not. -#}
{% macro string_type() -%}
    {{ return(adapter.dispatch('string_type', 'personaflow')()) }}
{%- endmacro %}

{% macro default__string_type() -%}varchar{%- endmacro %}

{% macro spark__string_type() -%}string{%- endmacro %}

{#- The 8-byte float (PostgreSQL and DuckDB's `double precision`; Spark does not parse that). -#}
{% macro double_type() -%}
    {{ return(adapter.dispatch('double_type', 'personaflow')()) }}
{%- endmacro %}

{% macro default__double_type() -%}double precision{%- endmacro %}

{% macro spark__double_type() -%}double{%- endmacro %}

{#- Whole days from `earlier` to `later` (two dates): DuckDB and PostgreSQL subtract to an integer,
    Spark to an interval. -#}
{% macro days_between(later, earlier) -%}
    {{ return(adapter.dispatch('days_between', 'personaflow')(later, earlier)) }}
{%- endmacro %}

{% macro default__days_between(later, earlier) -%}
    ({{ later }} - {{ earlier }})
{%- endmacro %}

{% macro spark__days_between(later, earlier) -%}
    datediff({{ later }}, {{ earlier }})
{%- endmacro %}

{#- Seconds from `start` to `end` (two timestamps), fractions kept. -#}
{% macro seconds_between(end, start) -%}
    {{ return(adapter.dispatch('seconds_between', 'personaflow')(end, start)) }}
{%- endmacro %}

{% macro default__seconds_between(end, start) -%}
    extract(epoch from {{ end }} - {{ start }})
{%- endmacro %}

{% macro spark__seconds_between(end, start) -%}
    (cast({{ end }} as double) - cast({{ start }} as double))
{%- endmacro %}

{#- A relation `alias` with one integer column `column`: first, first + 1, ..., last. -#}
{% macro integer_series(alias, column, first, last) -%}
    {{ return(adapter.dispatch('integer_series', 'personaflow')(alias, column, first, last)) }}
{%- endmacro %}

{% macro default__integer_series(alias, column, first, last) -%}
    generate_series({{ first }}, {{ last }}) as {{ alias }} ({{ column }})
{%- endmacro %}

{% macro spark__integer_series(alias, column, first, last) -%}
    (select explode(sequence({{ first }}, {{ last }})) as {{ column }}) as {{ alias }}
{%- endmacro %}

{#- One row per expression in `expressions` (a select-list item: the row's other columns repeat). -#}
{% macro unnest_values(expressions) -%}
    {{ return(adapter.dispatch('unnest_values', 'personaflow')(expressions)) }}
{%- endmacro %}

{% macro default__unnest_values(expressions) -%}
    unnest(array[{{ expressions | join(", ") }}])
{%- endmacro %}

{% macro spark__unnest_values(expressions) -%}
    explode(array({{ expressions | join(", ") }}))
{%- endmacro %}

{#- `expression`'s values joined by `separator` in `order_by` order (ties: by value), over the rows
    where `where` holds (none: all); null when no row has a value. -#}
{% macro ordered_string_agg(expression, separator, order_by, where=none) -%}
    {{ return(adapter.dispatch('ordered_string_agg', 'personaflow')(expression, separator, order_by, where)) }}
{%- endmacro %}

{% macro default__ordered_string_agg(expression, separator, order_by, where) -%}
    string_agg({{ expression }}, '{{ separator }}' order by {{ order_by }})
    {%- if where is not none %} filter (where {{ where }}){% endif %}
{%- endmacro %}

{#- Spark has no ordered aggregate: collect (key, value) pairs, sort them, keep the values. -#}
{% macro spark__ordered_string_agg(expression, separator, order_by, where) -%}
    {%- set keep = expression ~ " is not null" ~ ((" and (" ~ where ~ ")") if where is not none else "") -%}
    {%- set pairs = "array_sort(collect_list(case when " ~ keep ~ " then struct(" ~ order_by
        ~ " as k, " ~ expression ~ " as v) end))" -%}
    case when size({{ pairs }}) = 0 then null
        else array_join(transform({{ pairs }}, p -> p.v), '{{ separator }}') end
{%- endmacro %}
