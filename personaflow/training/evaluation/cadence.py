"""Repurchase cadence (issue 21, item 4): each (user, item) the user bought on two or more distinct days
re-orders on its own rhythm, and how due it is at the cut is a ranking signal.

The field: TAIW (Romanov et al., RecSys 2023) weights a user's items by the time since their last purchase
against the item's intervals; ReCANet (Ariannezhad et al., SIGIR 2022) feeds each repeat item's
inter-purchase intervals to its model; CASE (Cao et al., Walmart, 2026) learns item-level cadence over a
calendar-time signal and reports up to +8.6 % precision@5 at production scale. Here the cadence is two
numbers per bought pair, read from the training rows alone:

- `interval`: the median gap in days between the pair's distinct purchase days (its typical rhythm);
- `since`: days from the pair's last purchase to the split's cut;

and from them the `ratio` since / interval (1 = exactly due, above 1 overdue) and `due`, the chance the
next purchase falls inside the window being predicted given it has not come yet: the gap between
purchase days taken as log-normal around the pair's interval, with one spread for the whole shop
(`sigma`, the pooled deviation of the logs of every pair's gaps from that pair's median, measured here),

    due = P(gap <= since + horizon | gap > since),   horizon = the split's window in days.

A pair bought on one day has no rhythm: interval and ratio are NaN, due is 0 ("no evidence"), and an item
never bought has nothing stored. Users, items and the cut come from `split` only, so a validation view's
cadence never reads its own window.

Two uses, both linear in the (user, item) pairs actually bought:
- `cadence_parts` / `repeat_cadence`: a cheap retrieval, repeat-buy's own score (count + recency / 2)
  times (1 + weight x due), the weight chosen on the validation view (`tune_cadence`; weight 0 is
  repeat-buy itself, so where rhythm does not pay the choice sees a tie and keeps the cheaper repeat-buy);
- the re-ranker's cross features (training/rerank/candidates.py, `CandidateBuilder(cadence=True)`).

Memory: the distinct (user, item, day) rows of the training purchases (one int64 triple each, sorted once)
and a few float arrays per bought pair; never users x items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import ndtr

from personaflow.training.data.interactions import Split, cut_time, event_times
from personaflow.training.evaluation.baselines import SparseScores, history_parts
from personaflow.training.evaluation.metrics import ScoresFn, evaluate, tuning_sample

# weights of the due term tried on the validation view (0 = repeat-buy); the same grid for every shop
WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
SIGMA_FLOOR = 0.2  # a shop of perfectly regular pairs would give a spread of 0: a step function for `due`
SIGMA_NO_EVIDENCE = 1.0  # no pair bought on 3+ days (no gap deviates from its median): a wide spread
DAY = 86_400.0


@dataclass(frozen=True)
class Cadence:
    """Per bought (user, item) pair, in one order (users, then items): `key` (users x items, data =
    1 + the pair's position) finds a pair's position; the arrays are aligned with it."""

    key: sp.csr_matrix
    n_days: np.ndarray  # distinct purchase days
    interval: np.ndarray  # median gap between them in days; NaN with fewer than 2 days
    since: np.ndarray  # days from the last purchase to the cut
    sigma: float  # the shop's log-normal spread of gaps around each pair's median
    horizon: float  # days of the window being predicted

    @property
    def ratio(self) -> np.ndarray:
        """since / interval: 1 = due now, > 1 overdue; NaN without a rhythm."""
        return self.since / self.interval

    @property
    def due(self) -> np.ndarray:
        """P(next purchase within the horizon | not yet), 0 without a rhythm (window_due)."""
        return np.where(np.isnan(self.interval), 0.0, window_due(self.interval, self.since, self.horizon,
                                                                 self.sigma))  # fmt: skip


def window_days(split: Split) -> float:
    """The split's window in days: what a model at its cut is asked to predict. A time cut's test window
    (cut to the last event); a per-user last-basket split's next basket: one day."""
    from personaflow.training.data.purchases import LastBasketSplit

    if isinstance(split, LastBasketSplit):
        return 1.0
    last = getattr(split, "last_ts", None)
    if last is not None and getattr(split, "cut_ts", None) is not None:
        return max(1.0, (pd.Timestamp(last) - pd.Timestamp(split.cut_ts)).total_seconds() / DAY)
    return float(max(1, (split.last_date - split.cutoff).days + 1))


def window_due(interval: np.ndarray, since: np.ndarray, horizon: float, sigma: float) -> np.ndarray:
    """P(gap <= since + horizon | gap > since) for a log-normal gap with median `interval` and spread
    `sigma`; survival functions (ndtr of the negated z) keep it exact for long-overdue pairs."""
    mu = np.log(np.maximum(interval, 1e-9))
    z_lo = (np.log(np.maximum(since, 0.5)) - mu) / sigma  # a purchase on the cut's day: half a day ago
    z_hi = (np.log(np.maximum(since, 0.5) + horizon) - mu) / sigma
    alive = ndtr(-z_lo)
    with np.errstate(invalid="ignore", divide="ignore"):
        due = (alive - ndtr(-z_hi)) / alive
    return np.clip(np.nan_to_num(due, nan=1.0), 0.0, 1.0)  # alive == 0: so overdue the window is certain


def _days(split: Split) -> pd.DataFrame:
    """Distinct (u, i, day) rows of the training purchases, sorted; `t` the day's last purchase time."""
    train = split.train
    if "n_purchases" in train:
        train = train.loc[train["n_purchases"] > 0]
    times = event_times(train)
    frame = pd.DataFrame(
        {
            "u": train["user_id"].map(split.maps.user_index).to_numpy(np.int64),
            "i": train["item_id"].map(split.maps.item_index).to_numpy(np.int64),
            "day": times.dt.floor("D").to_numpy(),
            "t": times.to_numpy(),
        }
    )
    frame = frame.groupby(["u", "i", "day"], sort=True, as_index=False)["t"].max()
    return frame


def cadence_table(split: Split, horizon: float | None = None) -> Cadence:
    """The cadence of every (user, item) pair bought before the split's cut (module docstring)."""
    frame = _days(split)
    u, i = frame["u"].to_numpy(), frame["i"].to_numpy()
    day = frame["day"].to_numpy().astype("datetime64[D]").astype(np.int64)
    new_pair = np.ones(len(frame), dtype=bool)
    new_pair[1:] = (u[1:] != u[:-1]) | (i[1:] != i[:-1])
    pair = np.cumsum(new_pair) - 1  # each row's pair number
    n_pairs = int(pair[-1]) + 1 if len(frame) else 0
    first = np.flatnonzero(new_pair)
    last = np.append(first[1:], len(frame)) - 1
    gaps = pd.DataFrame({"pair": pair[1:], "gap": np.diff(day).astype(np.float64)})[~new_pair[1:]]
    interval = np.full(n_pairs, np.nan)
    median = gaps.groupby("pair")["gap"].median()
    interval[median.index.to_numpy()] = median.to_numpy()
    n_days = np.diff(np.append(first, len(frame)))
    # the shop's spread: every gap's log deviation from its pair's median, over pairs with 2+ gaps
    deviation = np.log(gaps["gap"].to_numpy()) - np.log(interval[gaps["pair"].to_numpy()])
    several = n_days[gaps["pair"].to_numpy()] >= 3
    sigma = float(np.sqrt(np.mean(deviation[several] ** 2))) if several.any() else SIGMA_NO_EVIDENCE
    cut = cut_time(split)
    since = (cut - pd.DatetimeIndex(frame["t"].to_numpy()[last])).total_seconds().to_numpy() / DAY
    key = sp.csr_matrix(
        (np.arange(1, n_pairs + 1, dtype=np.float64), (u[first], i[first])),
        shape=(split.maps.n_users, split.maps.n_items),
    )
    return Cadence(
        key, n_days.astype(np.int64), interval, np.maximum(since, 0.0), max(sigma, SIGMA_FLOOR),
        window_days(split) if horizon is None else float(horizon),
    )  # fmt: skip


def pair_positions(cadence: Cadence, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Positions (n, k) into the cadence's arrays of the pairs (users[r], items[r, j]); -1 where the user
    never bought the item. A sorted-key lookup over the users' rows: O(their pairs + n x k) memory."""
    rows = cadence.key[np.asarray(users, dtype=np.int64)].tocsr()
    rows.sort_indices()
    width = rows.shape[1]
    keys = np.repeat(np.arange(rows.shape[0], dtype=np.int64), np.diff(rows.indptr)) * width + rows.indices
    want = (np.arange(items.shape[0], dtype=np.int64)[:, None] * width + items).ravel()
    if keys.size == 0:
        return np.full(items.shape, -1, dtype=np.int64)
    pos = np.minimum(np.searchsorted(keys, want), keys.size - 1)
    found = np.where(keys[pos] == want, rows.data[pos], 0.0).astype(np.int64) - 1
    return found.reshape(items.shape)


def cadence_features(cadence: Cadence, users: np.ndarray, items: np.ndarray) -> dict[str, np.ndarray]:
    """The re-ranker's cadence cross features of (users[r], items[r, j]): `cad_interval` and `cad_ratio`
    (NaN for an item bought on fewer than 2 days or never), `cad_due` (0 there: no evidence of a rhythm)."""
    pos = pair_positions(cadence, users, items)
    known = pos >= 0
    at = np.where(known, pos, 0)
    interval = np.where(known, cadence.interval[at] if cadence.interval.size else np.nan, np.nan)
    since = np.where(known, cadence.since[at] if cadence.since.size else np.nan, np.nan)
    rhythm = ~np.isnan(interval)
    due = np.zeros(items.shape)
    if rhythm.any():
        due[rhythm] = window_due(interval[rhythm], since[rhythm], cadence.horizon, cadence.sigma)
    return {"cad_interval": interval, "cad_ratio": since / interval, "cad_due": due}


def due_matrix(cadence: Cadence) -> sp.csr_matrix:
    """users x items `due` of every pair with a rhythm (the others not stored): the key's structure."""
    key = cadence.key.tocsr()
    values = cadence.due[key.data.astype(np.int64) - 1]
    out = sp.csr_matrix((values, key.indices.copy(), key.indptr.copy()), shape=key.shape)
    out.eliminate_zeros()
    return out


def cadence_parts(
    split: Split, weight: float, cadence: Cadence | None = None
) -> tuple[sp.csr_matrix, np.ndarray]:
    """repeat_cadence's sparse scores and fill: repeat-buy's (count + recency / 2, popularity fill below
    every stored score) times 1 + weight x due. Every stored score stays >= repeat-buy's >= 1 > the fill,
    so the sparse top-k and the re-ranker's sparse pools read it as they read repeat-buy."""
    history, fill = history_parts(split)
    if weight == 0.0:
        return history, fill
    due = due_matrix(cadence if cadence is not None else cadence_table(split))
    return (history + history.multiply(due) * weight).tocsr(), fill


def repeat_cadence(split: Split, weight: float = 2.0) -> ScoresFn:
    """The cadence-aware repeat retrieval as a ScoresFn (benchmarks; the night fits it through recipe.py)."""
    return SparseScores(*cadence_parts(split, weight))


def tune_cadence(val_split: Split, weights: tuple[float, ...] = WEIGHTS) -> tuple[float, dict[str, float]]:
    """The weight with the best NDCG@10 on the validation view (its first on a tie: 0, repeat-buy, wins
    ties), and the curve. One cadence table, one sparse scoring per weight, on a seeded sample of at most
    metrics.TUNING_USERS validation users."""
    sample = tuning_sample(val_split)
    cadence = cadence_table(sample)
    curve: dict[str, float] = {}
    best, best_weight = -1.0, weights[0]
    for weight in weights:
        ndcg = evaluate(SparseScores(*cadence_parts(sample, weight, cadence)), sample)["ndcg_at_10"]
        curve[str(weight)] = ndcg
        if ndcg > best + 1e-12:
            best, best_weight = ndcg, weight
    return best_weight, curve
