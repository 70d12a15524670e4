{#
    True when the raw layer holds reviews (personaflow/ingest/reviews.py creates raw.reviews,
    raw.review_scores and raw.review_complaints together). A shop without reviews still builds every
    model: the review models are then empty, with their columns typed.
#}
{% macro reviews_present() -%}
    {%- if not execute -%}{{ return(false) }}{%- endif -%}
    {%- set relation = adapter.get_relation(database=target.database, schema='raw', identifier='reviews') -%}
    {{ return(relation is not none) }}
{%- endmacro %}
