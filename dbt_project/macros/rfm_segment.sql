{#
    RFM segment from the recency and frequency scores (1..5, 5 = best). The usual r/f grid:

              f=1              f=2              f=3                 f=4               f=5
      r=5  New Customers    Potential Loyalists Potential Loyalists Champions        Champions
      r=4  Promising        Potential Loyalists Potential Loyalists Loyal Customers  Loyal Customers
      r=3  About To Sleep   About To Sleep      Need Attention      Loyal Customers  Loyal Customers
      r=2  Hibernating      Hibernating         At Risk             At Risk          Cannot Lose Them
      r=1  Lost             Hibernating         At Risk             At Risk          Cannot Lose Them

    Every one of the 25 cells has exactly one name; the `else` only catches scores outside 1..5,
    which the accepted_values tests on the scores report.

    With `frequency` (orders), a customer without an order is "No Purchase Yet" whatever the grid
    says: recency then counts their last view or review, and "New Customers" or "Lost" would claim
    purchases that never happened (a reviews-only or browse-only shop is all such customers).
#}
{% macro rfm_segment(r, f, frequency=none) -%}
    case
        {% if frequency is not none -%}
        when {{ frequency }} = 0 then 'No Purchase Yet'
        {% endif -%}
        when {{ r }} = 5 and {{ f }} >= 4 then 'Champions'
        when {{ r }} between 3 and 4 and {{ f }} >= 4 then 'Loyal Customers'
        when {{ r }} >= 4 and {{ f }} between 2 and 3 then 'Potential Loyalists'
        when {{ r }} = 5 and {{ f }} = 1 then 'New Customers'
        when {{ r }} = 4 and {{ f }} = 1 then 'Promising'
        when {{ r }} = 3 and {{ f }} = 3 then 'Need Attention'
        when {{ r }} = 3 and {{ f }} <= 2 then 'About To Sleep'
        when {{ r }} <= 2 and {{ f }} = 5 then 'Cannot Lose Them'
        when {{ r }} <= 2 and {{ f }} between 3 and 4 then 'At Risk'
        when {{ r }} = 1 and {{ f }} = 1 then 'Lost'
        when {{ r }} <= 2 and {{ f }} <= 2 then 'Hibernating'
        else 'Unscored'
    end
{%- endmacro %}
