"""BentoML serving for the production recommender."""
