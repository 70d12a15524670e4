with

events as (

    select * from {{ ref('int_events_as_of') }}

),

baskets as (

    -- one row per (order, item): an order is the invoice where the source has one, else the session
    select distinct
        order_key,
        item_id

    from events
    where event_type = 'purchase' and is_product

),

order_count as (

    select count(distinct order_key) as n_orders from baskets

),

item_orders as (

    select
        item_id,
        count(*) as n_orders

    from baskets
    group by item_id

),

pairs as (

    -- each unordered pair once (item_a < item_b); pairs seen in fewer than co_purchase_min_orders
    -- orders are dropped before the rules are computed
    select
        basket_a.item_id as item_a,
        basket_b.item_id as item_b,
        count(*) as n_orders_both

    from baskets as basket_a
    inner join baskets as basket_b
        on basket_a.order_key = basket_b.order_key
        and basket_a.item_id < basket_b.item_id
    group by basket_a.item_id, basket_b.item_id
    having count(*) >= {{ var('co_purchase_min_orders') }}

),

directed as (

    select item_a as item_id, item_b as other_item_id, n_orders_both from pairs
    union all
    select item_b as item_id, item_a as other_item_id, n_orders_both from pairs

),

rules as (

    -- association rule item_id -> other_item_id
    select
        directed.item_id,
        directed.other_item_id,
        directed.n_orders_both,
        antecedent.n_orders as n_orders_item,
        consequent.n_orders as n_orders_other,
        order_count.n_orders,
        -- share of all orders that hold both
        cast(directed.n_orders_both as {{ double_type() }}) / order_count.n_orders as support,
        -- P(other in the order | item in the order)
        cast(directed.n_orders_both as {{ double_type() }}) / antecedent.n_orders as confidence,
        -- confidence / P(other): > 1 means bought together more often than by chance
        cast(directed.n_orders_both * order_count.n_orders as {{ double_type() }})
            / (antecedent.n_orders * consequent.n_orders) as lift,
        -- what /similar_items ranks by (best first, lift > 1 only): confidence over pairs with at least
        -- co_purchase_min_orders common orders. Chosen by "bought together later"
        -- (benchmarks/similar_items.py: NDCG@10 0.251 on the test window vs lift's 0.127, where 3-order
        -- pairs of rare items reach lifts in the thousands; shrunk lift and cosine in between)
        cast(directed.n_orders_both as {{ double_type() }}) / antecedent.n_orders as score

    from directed
    cross join order_count
    inner join item_orders as antecedent on directed.item_id = antecedent.item_id
    inner join item_orders as consequent on directed.other_item_id = consequent.item_id

)

select * from rules
