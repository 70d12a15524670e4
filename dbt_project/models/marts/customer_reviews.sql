{#- One row per customer with a review seen as of the as-of date (macros/review_summary.sql). -#}
{{ review_summary('user_id') }}
