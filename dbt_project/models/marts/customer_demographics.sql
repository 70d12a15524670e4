{#-
    Each customer's demographic record as it stood on the as-of date: the newest version with
    valid_from on or before it (point in time: a version dated later is not seen yet). Customers
    without a record are not rows here; the profile reads them as "unknown"
    (personaflow/profiles/demographics.py makes the readable bands from these values).
-#}
{% if raw_table_present('customers') %}

with versions as (

    select
        user_id,
        age,
        income,
        home_ownership,
        marital_status,
        household_size,
        household_comp,
        kids_count,
        valid_from,
        source,
        row_number() over (partition by user_id order by valid_from desc, source) as newest
    from {{ source('shop_tables', 'customers') }}
    where cast(valid_from as date) <= {{ as_of_date() }}

)

select
    user_id, age, income, home_ownership, marital_status, household_size, household_comp, kids_count,
    valid_from, source, {{ as_of_date() }} as as_of_date
from versions
where newest = 1

{% else %}

select
    cast(null as {{ string_type() }}) as user_id, cast(null as {{ string_type() }}) as age, cast(null as {{ string_type() }}) as income,
    cast(null as {{ string_type() }}) as home_ownership, cast(null as {{ string_type() }}) as marital_status,
    cast(null as {{ string_type() }}) as household_size, cast(null as {{ string_type() }}) as household_comp,
    cast(null as {{ string_type() }}) as kids_count, cast(null as timestamp) as valid_from, cast(null as {{ string_type() }}) as source,
    cast(null as date) as as_of_date
where 1 = 0

{% endif %}
