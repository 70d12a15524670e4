{#- True for a sellable product, false for the shop's service lines (postage, fees, discounts, manual
    adjustments, vouchers): codes in var('non_product_codes') (case-insensitive) or starting with a
    prefix in var('non_product_prefixes'). Such lines stay in revenue; they are never recommended,
    paired or ranked as popular. -#}
{% macro is_product(item_id) -%}
    not (
        upper(trim({{ item_id }})) in (
            {%- for code in var('non_product_codes') %}'{{ code | upper | replace("'", "''") }}'{{ ", " if not loop.last }}{% endfor -%}
        )
        {%- for prefix in var('non_product_prefixes') %}
        or lower(trim({{ item_id }})) like '{{ prefix | lower | replace("'", "''") }}%'
        {%- endfor %}
    )
{%- endmacro %}
