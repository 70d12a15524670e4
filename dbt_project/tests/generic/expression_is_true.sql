{#
    Fails with every row of the model where `expression` is not true (null counts as a failure).
    Written here because the project takes no packages (no `dbt deps`, no network at run time).
#}
{% test expression_is_true(model, expression) %}

select *
from {{ model }}
where not coalesce(({{ expression }}), false)

{% endtest %}
