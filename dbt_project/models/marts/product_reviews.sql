{#- One row per product with a review seen as of the as-of date (macros/review_summary.sql). -#}
{{ review_summary('item_id') }}
