{#
    The r/f -> segment grid of macros/rfm_segment.sql, cell by cell (independent of any data):
    returns every (r, f) pair whose segment differs from the documented table.
#}
with

expected as (

    select * from (values
        (5, 1, 'New Customers'), (5, 2, 'Potential Loyalists'), (5, 3, 'Potential Loyalists'),
        (5, 4, 'Champions'), (5, 5, 'Champions'),
        (4, 1, 'Promising'), (4, 2, 'Potential Loyalists'), (4, 3, 'Potential Loyalists'),
        (4, 4, 'Loyal Customers'), (4, 5, 'Loyal Customers'),
        (3, 1, 'About To Sleep'), (3, 2, 'About To Sleep'), (3, 3, 'Need Attention'),
        (3, 4, 'Loyal Customers'), (3, 5, 'Loyal Customers'),
        (2, 1, 'Hibernating'), (2, 2, 'Hibernating'), (2, 3, 'At Risk'),
        (2, 4, 'At Risk'), (2, 5, 'Cannot Lose Them'),
        (1, 1, 'Lost'), (1, 2, 'Hibernating'), (1, 3, 'At Risk'),
        (1, 4, 'At Risk'), (1, 5, 'Cannot Lose Them')
    ) as grid (r_score, f_score, expected_segment)

),

actual as (

    select
        *,
        {{ rfm_segment('r_score', 'f_score') }} as actual_segment
    from expected

)

select * from actual
where actual_segment != expected_segment
