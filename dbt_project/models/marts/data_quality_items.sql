with

items as (

    select * from {{ ref('int_items') }}

),

faults as (

    -- an item counts under every fault it has; the first (item_issue) is what the item shows
    select
        item_id,
        description,
        {{ unnest_values([
            "case when not is_product then 'non_product' end",
            "case when price is null or price <= 0 then 'no_valid_price' end",
            "case when description is null then 'missing_description' end",
            "case when category_source is distinct from 'catalogue' and is_product then 'missing_category' end",
            "case when category_source = 'description' then 'derived_category' end"
        ]) }} as reason

    from items

),

per_reason as (

    select
        reason,
        count(*) as n_items,
        -- a few ids to look at, smallest first
        {{ ordered_string_agg('item_id', ',', 'item_id', 'item_rank <= 10') }} as example_item_ids

    from (
        select *, row_number() over (partition by reason order by item_id) as item_rank
        from faults
        where reason is not null
    ) as ranked
    group by reason

),

final as (

    select
        per_reason.reason,
        per_reason.n_items,
        (select count(*) from items) as n_catalogue_items,
        per_reason.example_item_ids,
        {{ as_of_date() }} as as_of_date

    from per_reason

)

select * from final
