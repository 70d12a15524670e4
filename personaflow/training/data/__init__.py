"""Data and splits: the interactions mart and its time split, the benchmark purchases split, feature
tables for the feature-aware models, and the synthetic shop."""
