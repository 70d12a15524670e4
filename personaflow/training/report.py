"""A training run's picture: the metric table, the loss / validation curves and, when the recipe was
chosen on validation (training/choice.py), every option's validation score, fit seconds and the reason."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any


def _choice_panel(ax, choice: dict[str, Any]) -> None:
    """One row per option: status, validation NDCG@10, fit CPU and wall seconds; the reason as title."""
    rows = choice["options"]
    cols = ("status", "val ndcg@10", "fit cpu s", "fit wall s")
    cells = [
        [
            str(row["status"]),
            "-" if row.get("val_ndcg_at_10") is None else f"{row['val_ndcg_at_10']:.4f}",
            f"{row.get('fit_cpu_s', 0.0):.1f}",
            f"{row.get('fit_wall_s', 0.0):.1f}",
        ]
        for row in rows.values()
    ]
    ax.axis("off")
    labels = [f"> {name}" if choice["chosen"].split("+")[0] == name else name for name in rows]
    ax.table(cellText=cells, rowLabels=labels, colLabels=cols, loc="center").scale(1, 1.4)
    ax.set_title(textwrap.fill(f"chosen: {choice['chosen']}. {choice['reason']}", 70), fontsize=8)


def write_png(
    path: Path,
    title: str,
    table: dict[str, dict[str, float]],
    history: list[dict[str, Any]],
    choice: dict[str, Any] | None = None,
) -> Path:
    """`table`: model -> {metric: value}; `history`: per-epoch rows with "loss" (and maybe val ndcg);
    `choice`: training/choice.py's report (options, chosen, reason), drawn as one more panel."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    history = [row for row in history if "loss" in row]
    # A model fitted without epochs (a baseline, TIFU-KNN, item-kNN) has no curve: no empty panel.
    panels = 1 + bool(history) + bool(choice)
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels + 0.5, 3.8 + bool(choice)), squeeze=False)
    left = axes[0][0]
    if choice:
        _choice_panel(axes[0][-1], choice)
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
