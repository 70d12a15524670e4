{#- The shop's imported catalogue (raw.products: personaflow/ingest/products.py) as of the night: each
    product's newest version dated on or before it (point in time: a category changed later is not seen
    yet). It takes precedence over the landed items file and over a category read off the description. -#}
{% set has_catalogue = raw_table_present('products') %}

with

items as (

    select * from {{ ref('stg_items') }}

),

catalogue as (

{%- if has_catalogue %}

    select item_id, name, department, category, brand, price
    from (
        select
            trim(cast(item_id as {{ string_type() }})) as item_id,
            nullif(trim(name), '') as name,
            nullif(trim(department), '') as department,
            nullif(trim(category), '') as category,
            nullif(trim(brand), '') as brand,
            cast(price as {{ double_type() }}) as price,
            row_number() over (
                partition by trim(cast(item_id as {{ string_type() }})) order by valid_from desc, source
            ) as newest
        from {{ source('shop_tables', 'products') }}
        where cast(valid_from as date) <= {{ as_of_date() }}
    ) as versions
    where newest = 1

{%- else %}

    select
        cast(null as {{ string_type() }}) as item_id, cast(null as {{ string_type() }}) as name, cast(null as {{ string_type() }}) as department,
        cast(null as {{ string_type() }}) as category, cast(null as {{ string_type() }}) as brand,
        cast(null as {{ double_type() }}) as price
    where 1 = 0

{%- endif %}

),

events as (

    select * from {{ ref('stg_events') }}

),

lines as (

    -- every item's lines up to the as-of date, usable or not: a name or a price written on a
    -- cancelled line still names the item
    select
        item_id,
        description,
        price,
        count(*) as n_lines

    from events
    where event_date <= {{ as_of_date() }}
    group by item_id, description, price

),

descriptions as (

    select
        item_id,
        description,
        row_number() over (
            partition by item_id order by description is null, sum(n_lines) desc, description
        ) as description_rank

    from lines
    group by item_id, description

),

prices as (

    -- the most common positive unit price (lower price on ties); null if the item never had one
    select
        item_id,
        price,
        row_number() over (
            partition by item_id order by price > 0 desc, sum(n_lines) desc, price
        ) as price_rank

    from lines
    group by item_id, price

),

from_events as (

    select
        descriptions.item_id,
        descriptions.description,
        case when prices.price > 0 then prices.price end as price

    from descriptions
    inner join prices
        on descriptions.item_id = prices.item_id
        and prices.price_rank = 1
    where descriptions.description_rank = 1

),

all_items as (

    -- the catalogue as loaded, named from its lines where it has no description of its own
    select
        items.item_id,
        items.category,
        items.brand,
        items.price,
        coalesce(items.description, from_events.description) as description,
        'catalogue' as item_source

    from items
    left join from_events on items.item_id = from_events.item_id

    union all

    -- items that only appear in events (a shop without a catalogue file)
    select
        from_events.item_id,
        cast(null as {{ string_type() }}) as category,
        cast(null as {{ string_type() }}) as brand,
        from_events.price,
        from_events.description,
        'events' as item_source

    from from_events
    left join items on from_events.item_id = items.item_id
    where items.item_id is null

),

flagged as (

    -- the imported catalogue first (as of the night), then the landed items file, then the lines
    select
        all_items.item_id,
        {{ is_product('all_items.item_id') }} as is_product,
        coalesce(catalogue.brand, all_items.brand) as brand,
        coalesce(catalogue.price, all_items.price) as price,
        coalesce(catalogue.name, all_items.description) as description,
        catalogue.department,
        all_items.item_source,
        coalesce(catalogue.category, all_items.category) as source_category

    from all_items
    left join catalogue on all_items.item_id = catalogue.item_id

),

final as (

    select
        item_id,
        -- the shop's own category, else one read off the description (none for non-products)
        case
            when source_category is not null then source_category
            when is_product then {{ derived_category('description') }}
        end as category,
        case
            when source_category is not null then 'catalogue'
            when is_product and description is not null then 'description'
        end as category_source,
        department,
        brand,
        price,
        description,
        item_source,
        is_product,
        -- the first fault of the item's own data, null for a clean product (marts.data_quality_items)
        case
            when not is_product then 'non_product'
            when price is null or price <= 0 then 'no_valid_price'
            when description is null then 'missing_description'
            when source_category is null then 'missing_category'
        end as item_issue

    from flagged

)

select * from final
