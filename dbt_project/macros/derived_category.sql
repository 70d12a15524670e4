{#- A category read off the item's description where the shop has none (Online Retail): the first
    entry of var('description_categories') with a word in the description, else 'other'; null without a
    description. Words match whole (RING does not match EARRINGS; list both). -#}
{% macro derived_category(description) -%}
    case
        when {{ description }} is null then null
        {%- for entry in var('description_categories') %}
        when {{ matches_words("upper(" ~ description ~ ")", entry.words) }}
            then '{{ entry.category }}'
        {%- endfor %}
        else 'other'
    end
{%- endmacro %}
