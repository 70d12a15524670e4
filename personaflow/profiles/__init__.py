"""User analytics: customer segments and churn (not recommender training)."""
