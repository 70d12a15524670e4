"""Evaluation over a ScoresFn only (user indices -> scores over all items): metrics, baselines, the
bootstrap and the benchmark protocol's scoring. Nothing here imports a model, the gate or the registry."""
