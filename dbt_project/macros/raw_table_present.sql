{#
    True when the raw layer holds `identifier` (the customers / campaigns imports create their tables:
    personaflow/ingest/customers.py, campaigns.py). A shop without them still builds every model: the
    models over them are then empty, with their columns typed.
#}
{% macro raw_table_present(identifier) -%}
    {%- if not execute -%}{{ return(false) }}{%- endif -%}
    {%- set relation = adapter.get_relation(database=target.database, schema='raw', identifier=identifier) -%}
    {{ return(relation is not none) }}
{%- endmacro %}
