"""A training run's picture: the metric table and the loss / validation curves, as one PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_png(
    path: Path, title: str, table: dict[str, dict[str, float]], history: list[dict[str, Any]]
) -> Path:
    """`table`: model -> {metric: value}; `history`: per-epoch rows with "loss" (and maybe val ndcg)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    history = [row for row in history if "loss" in row]
    # A model fitted without epochs (a baseline, TIFU-KNN, item-kNN) has no curve: no empty panel.
    fig, axes = plt.subplots(1, 2 if history else 1, figsize=(11 if history else 6, 3.8), squeeze=False)
    left = axes[0][0]
    metrics = sorted({m for row in table.values() for m in row})
    cells = [[f"{table[name].get(m, float('nan')):.4f}" for m in metrics] for name in table]
    left.axis("off")
    left.table(cellText=cells, rowLabels=list(table), colLabels=metrics, loc="center").scale(1, 1.5)
    left.set_title(title, fontsize=9)
    if not history:
        return _save(fig, plt, path)
    right = axes[0][1]
    epochs = [row["epoch"] for row in history]
    right.plot(epochs, [row["loss"] for row in history], marker="o", label="train loss")
    right.set_xlabel("epoch")
    right.set_ylabel("loss")
    if history and "val_ndcg_at_10" in history[0]:
        twin = right.twinx()
        twin.plot(epochs, [row["val_ndcg_at_10"] for row in history], color="tab:orange", label="val ndcg@10")
        twin.set_ylabel("validation ndcg@10")
    right.legend(loc="upper right")
    return _save(fig, plt, path)


def _save(fig, plt, path: Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
