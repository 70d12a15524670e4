"""A re-ranker over pooled candidates, trained on the validation view, scored on the test view.

The ranker is an ensemble whose per-list standardised logits are averaged: by default five LightGBM
LambdaRanks over the numerics (and the demographic bands as categorical columns, where the features
carry them: `_Fields.ranked`); optionally `ensemble` DeepFMs (seeds and losses alternating) and one
gradient-boosted tree model over the same numerics (RerankConfig).

Training lists: candidates (training.rerank.candidates) for the users of `fitted.val_split` (the inner
training period and its validation window, both before the test cut), from `fitted.val_scores_fn` and
features as of the validation cut; label = the candidate is in the validation truth. Test: the same
construction for the full split (`fitted.scores_fn`, features as of the test cut). The test window is
never used for training, early stopping or tuning; only the reported candidate recall reads its truth.

Fields of one (user, candidate) row: the user's and the item's categorical features, the item id, and
every numeric (the cross features of the pool plus the user's and the item's numerics from `encode`)
both as a quantile-bucket field (edges fitted on the training lists) and as a dense input.
Categorical codes are built here with a vocabulary fitted on the training tables rather than taken
from `encode`: `encode` numbers each table's own values, so the same brand can get another code at
another cut, and the model is trained at one cut and applied at the next.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from personaflow.training.data.features import (
    DEMOGRAPHIC_USER_CATEGORICAL,
    FeatureSource,
    FeatureTables,
    encode,
)
from personaflow.training.data.interactions import IdMaps, Split, cut_time
from personaflow.training.evaluation.metrics import TUNING_USERS, ScoresFn, tuning_sample
from personaflow.training.models.deepfm import DeepFMConfig, Lists, fit_deepfm, predict
from personaflow.training.models.fit import FitResult, validation_view
from personaflow.training.models.lambdarank import LambdaRankConfig, fit_lambdarank, lambdarank_logits
from personaflow.training.models.trees import TreesConfig, fit_trees, tree_logits
from personaflow.training.rerank.candidates import CandidateBuilder, Candidates, Quotas, candidate_recall

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RerankConfig:
    # a pool of 150 (75 per source): candidate recall on retail-30d's validation view 0.39 (0.32 at 100)
    quotas: Quotas = field(default_factory=lambda: Quotas(size=150, retrieval=75, history=75, copurchase=75))
    # 128 lists a step, lr 4e-3, patience 2: on retail-30d over TIFU-KNN 0.3912 in 37 s vs 0.3939 in 64 s
    # with DeepFMConfig's own defaults (64 lists, 2e-3, patience 3)
    model: DeepFMConfig = field(default_factory=lambda: DeepFMConfig(batch_users=128, lr=4e-3, patience=2))
    n_buckets: int = 16
    batch_users: int = 512
    # training lists from this many validation windows, each the width of the first one and before it
    # (only where the retrieval can be re-fitted cheaply at an earlier cut: FitResult.scorer_at)
    # Measured on retail-30d (test NDCG@10, seed 42), TIFU-KNN candidates: one DeepFM 0.391 (seeds
    # 42..46: 0.386-0.395); 5 averaged 0.397; 5 over a pool of 150 0.399; the same over 2 windows
    # 0.400 (3 windows 0.400); 10 averaged 0.398. Single models: 3 windows 0.3927 vs 1 window 0.3939.
    # The LambdaRank members over repeat-buy, on the choice's validation cut: 2 windows 0.3284, 3 0.3303, 4
    # 0.3300 (paired intervals of both gains include 0; their fits 1.5x and 2x): 2 stays.
    windows: int = 2
    # The ranker's members, their standardised logits averaged (_vote). Default: five LightGBM
    # LambdaRanks (training.models.lambdarank; seeds lambdarank.seed + j, each early-stopped on its own
    # held-out slice of the lists, so together they learn from every list), no DeepFM, no tree vote.
    # Measured over repeat-buy on Online Retail as choice.py validates it (1,738 lists from 2 windows,
    # 1,108 validation users; repeat-buy alone 0.3198 on the validation cut), validation / test NDCG@10
    # and the members' fit: five DeepFMs + the tree vote (the former default) 0.3304 / 0.3984, 873 CPU-s
    # for the choice's two fits (benchmarks/results/recipe_choice.json before this change); five
    # LambdaRanks 0.3274 / 0.3882 in 34 CPU-s (gain over repeat-buy [0.0019, 0.0134]); one LambdaRank
    # 0.3258 / 0.3824 in 7 CPU-s (its interval over repeat-buy includes 0: not kept). One DeepFM alone is
    # ~40 s (the model comment above) and more than the 60 s a fit may take (issue 21) once the lists,
    # the validation scoring and a loaded machine are counted: one DeepFM beside five LambdaRanks and
    # the trees had not finished its validation fit in 15 min of a machine loaded 6x over its 2 cores.
    # So the default gives up 0.003 on the validation cut (inside the choice's tie rule) and 0.010 on
    # the test for a 25x cheaper fit and a scoring pass without the DeepFMs' codes (cheaper export).
    # DeepFMs averaged (`ensemble`), each with its own seed and held-out slice; 0 = none
    ensemble: int = 0
    # member j's loss: losses[j % len(losses)]. Alike members make alike errors; on retail-30d five
    # DeepFMs alternating pointwise and listwise loss beat five pointwise ones on the validation cut
    # (0.3359 vs 0.3351) and on the test (0.3991 vs 0.3970)
    losses: tuple[str, ...] = ("bce", "listwise")
    # one more vote: gradient-boosted trees on the same numerics (training.models.trees); None = off.
    # Beside five DeepFMs it raised them (validation 0.3350 -> 0.3375, over TIFU-KNN); not measured
    # beside the LambdaRanks, which already are trees over the same numerics
    trees: TreesConfig | None = None
    # LightGBM LambdaRank members; None or 0 members = off
    lambdarank: LambdaRankConfig | None = field(default_factory=LambdaRankConfig)
    lambdarank_members: int = 5
    # a fixed budget of training lists over all windows (each window gets max_lists / windows), drawn
    # with `sample_seed` from the window's users with a purchase in it; retail-30d's windows hold ~1.4k
    # such users each, so all of them are kept there. 0 = no budget (every user, memory grows).
    max_lists: int = 4096
    sample_seed: int = 0
    # the test view's candidate recall (a diagnostic in `info`) over a seeded sample of this many truth
    # users (metrics.tuning_sample): pools for every truth user cost as much as the export (issue 21)
    recall_users: int = TUNING_USERS


class _Fields:
    """(user, candidate) rows -> (cat codes, dense) arrays; vocabularies, buckets and scaling fitted once."""

    def __init__(self, tables: FeatureTables, n_buckets: int) -> None:
        self.n_buckets = n_buckets
        self.user_vocab = {c: _vocab(tables.users[c]) for c in tables.user_categorical}
        self.item_vocab = {c: _vocab(tables.items[c]) for c in tables.item_categorical}
        self._cache: list[tuple[FeatureTables, IdMaps, dict[str, Any]]] = []
        # The user categoricals the LambdaRanks read, as LightGBM categorical columns after the numerics
        # (`ranked`): the demographic bands, where the choice tries them (training/choice.py). Before,
        # only the DeepFMs read categoricals, so with the LambdaRank members the demographics try
        # re-fitted the same ranker and could never pay (The Complete Journey, 2,469 households: gain
        # 0.0000 [0.0000, 0.0000]). A shop's favourite category already enters as the group-share cross
        # features.
        self.ranked_columns = [
            j for j, c in enumerate(tables.user_categorical) if c in DEMOGRAPHIC_USER_CATEGORICAL
        ]

    def _of(self, tables: FeatureTables, maps: IdMaps, what: str) -> Any:
        """encode() and the user and item codes of these tables in these maps' order, computed once per
        (tables, maps): a pass over every user asks for them once per candidate chunk, and computing
        them per chunk (every user's row each time) made that pass quadratic in users (issue 21). Two
        entries (a training window's and the split's); memory linear in users + items."""
        values = next((v for t, m, v in self._cache if t is tables and m is maps), None)
        if values is None:
            values = {}
            self._cache = [*self._cache[-1:], (tables, maps, values)]
        if what not in values:
            if what == "encoded":
                values[what] = encode(tables, maps)
            elif what == "users":
                values[what] = _codes(tables.users, self.user_vocab, maps.user_ids)
            else:
                values[what] = _codes(tables.items, self.item_vocab, maps.item_ids)
        return values[what]

    def item_codes(self, tables: FeatureTables, maps: IdMaps) -> np.ndarray:
        return self._of(tables, maps, "items")

    def numeric(self, cands: Candidates, tables: FeatureTables, maps: IdMaps, names: tuple[str, ...]):
        enc = self._of(tables, maps, "encoded")
        cross = np.stack([cands.features[n] for n in names], axis=-1).astype(np.float64)
        cross = np.sign(cross) * np.log1p(np.abs(cross))  # counts, days and ranks are heavy-tailed
        n = cands.items.shape[1]
        user = np.repeat(enc.user_num[cands.users][:, None, :], n, axis=1)
        return np.concatenate([cross, user, enc.item_num[cands.items]], axis=-1)

    def ranked(self, cands: Candidates, numeric: np.ndarray, tables: FeatureTables, maps: IdMaps):
        """The LambdaRanks' inputs: `numeric`, then the user codes of `ranked_columns` (0 = missing), the
        last `len(ranked_columns)` columns (fit_lambdarank's `categorical`)."""
        if not self.ranked_columns:
            return numeric
        codes = self._of(tables, maps, "users")[cands.users][:, self.ranked_columns].astype(np.float64)
        n = cands.items.shape[1]
        return np.concatenate([numeric, np.repeat(codes[:, None, :], n, axis=1)], axis=-1)

    def fit(self, numeric: np.ndarray) -> _Fields:
        flat = numeric.reshape(-1, numeric.shape[-1])
        qs = np.linspace(0, 1, self.n_buckets + 1)[1:-1]
        self.edges = [np.unique(np.nanquantile(col, qs)) if np.isfinite(col).any() else np.zeros(0)
                      for col in flat.T]  # fmt: skip
        self.fill = np.nan_to_num(np.nanmax(flat, axis=0))  # NaN = never bought: "longest ago"
        filled = np.where(np.isnan(flat), self.fill, flat)
        self.mean, std = filled.mean(axis=0), filled.std(axis=0)
        self.std = np.where(std > 0, std, 1.0)
        return self

    def cardinalities(self, n_items: int) -> tuple[int, ...]:
        cat = [len(v) + 1 for v in self.user_vocab.values()] + [len(v) + 1 for v in self.item_vocab.values()]
        return tuple(cat + [n_items + 1] + [e.size + 2 for e in self.edges])

    def arrays(self, cands: Candidates, numeric: np.ndarray, tables: FeatureTables, maps: IdMaps):
        n = cands.items.shape[1]
        user_cat = self._of(tables, maps, "users")[cands.users]
        buckets = [
            np.where(np.isnan(numeric[..., j]), 0, np.searchsorted(e, numeric[..., j], side="right") + 1)
            for j, e in enumerate(self.edges)
        ]
        cat = np.concatenate(
            [np.repeat(user_cat[:, None, :], n, axis=1), self.item_codes(tables, maps)[cands.items],
             (cands.items + 1)[..., None], np.stack(buckets, axis=-1)],
            axis=-1,
        )  # fmt: skip
        dense = (np.where(np.isnan(numeric), self.fill, numeric) - self.mean) / self.std
        return cat.astype(np.int64), dense.astype(np.float32)


def _vocab(values: pd.Series) -> dict[str, int]:
    return {v: n + 1 for n, v in enumerate(sorted(values.dropna().astype(str).unique()))}


def _codes(frame: pd.DataFrame, vocabs: dict[str, dict[str, int]], ids: list[str]) -> np.ndarray:
    out = np.zeros((len(ids), len(vocabs)), dtype=np.int64)
    for j, (column, vocab) in enumerate(vocabs.items()):
        values = frame[column].reindex(ids)
        out[:, j] = [vocab.get(str(v), 0) if pd.notna(v) else 0 for v in values]
    return out


def _build(builder: CandidateBuilder, users: np.ndarray, batch: int) -> Candidates:
    parts = list(builder.chunks(users, batch))
    feats = {k: np.concatenate([p.features[k] for p in parts]) for k in parts[0].features}
    return Candidates(users, np.concatenate([p.items for p in parts]), feats)


def _prior(cands: Candidates) -> np.ndarray:
    """The pool's order without a model: own purchases by count (recency breaks ties), then retrieval."""
    f = cands.features
    recency = np.where(np.isnan(f["days_since"]), 0.0, 1.0 / (1.0 + np.nan_to_num(f["days_since"])))
    return f["n_bought"] + 0.5 * recency + 1e-3 * f["ret_score"]


def sample_users(users: np.ndarray, budget: int, seed: int) -> np.ndarray:
    """At most `budget` of `users` (all of them when they fit, or budget <= 0), drawn without
    replacement with `seed`, in index order."""
    if budget <= 0 or users.size <= budget:
        return users
    return np.sort(np.random.default_rng(seed).choice(users, size=budget, replace=False))


def _window(
    view: Split,
    tables: FeatureTables,
    retrieval: ScoresFn,
    fields: _Fields,
    cfg: RerankConfig,
    number: int = 0,
):
    """One validation window's candidate lists, labels (in its truth) and numeric features, for at most
    max_lists / windows of its users (sample_users)."""
    builder = CandidateBuilder(view, retrieval, cfg.quotas, fields.item_codes(tables, view.maps))
    budget = -(-cfg.max_lists // max(1, cfg.windows)) if cfg.max_lists > 0 else 0
    users = sample_users(_truth_users(view), budget, cfg.sample_seed + number)
    cands = _build(builder, users, cfg.batch_users)
    item_ids = np.asarray(view.maps.item_ids)
    truth = [view.test_truth[view.maps.user_ids[u]] for u in users]
    labels = np.array([np.isin(item_ids[row], list(t)) for row, t in zip(cands.items, truth, strict=True)])
    numeric = fields.numeric(cands, tables, view.maps, builder.feature_names)
    sizes = np.array([len(t) for t in truth], dtype=np.int64)
    return {
        "view": view,
        "tables": tables,
        "cands": cands,
        "labels": labels,
        "numeric": numeric,
        "sizes": sizes,
    }


def _vote(logits: list[np.ndarray]) -> np.ndarray:
    """The members' mean after standardising each one's logits per list: a listwise loss fixes no scale
    and no offset, trees' log-odds have their own, so raw logits would weigh members unequally."""
    out = np.zeros_like(logits[0], dtype=np.float64)
    for x in logits:
        std = x.std(axis=1, keepdims=True)
        out += (x - x.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)
    return out / len(logits)


@dataclass
class Members:
    """The fitted ranker: DeepFMs (need the fields' codes), trees and LambdaRanks (numerics alone)."""

    deepfms: list = field(default_factory=list)
    trees: Any = None
    lambdaranks: list = field(default_factory=list)
    fallback: bool = False

    def logits(self, fields: _Fields, chunk: Candidates, tables: FeatureTables, maps: IdMaps, names):
        num = fields.numeric(chunk, tables, maps, names)
        votes = []
        if self.deepfms:  # the codes and scaled inputs only DeepFM reads
            arrays = fields.arrays(chunk, num, tables, maps)
            votes += [predict(model, *arrays) for model in self.deepfms]
        if self.lambdaranks:
            ranked = fields.ranked(chunk, num, tables, maps)
            votes += [lambdarank_logits(model, ranked) for model in self.lambdaranks]
        if self.trees is not None:
            votes.append(tree_logits(self.trees, num))
        return _vote(votes)


class RerankedScores:
    """The re-ranker as a ScoresFn: each user's pool in the ensemble's order in (1, 2], above a popularity
    fill in [0, 0.5] over the rest of the catalogue. Users are scored chunk by chunk
    (CandidateBuilder.chunks); `pools` gives the pools alone (len(users) x pool), for a streamed export."""

    def __init__(self, builder, fields, tables, members: Members, batch_users: int) -> None:
        self.builder, self.fields, self.tables = builder, fields, tables
        self.members, self.batch_users = members, batch_users
        self.n_items = builder.split.maps.n_items
        pop = builder.pop
        self.fill = (pop - pop.min()) / max(pop.max() - pop.min(), 1e-12) * 0.5  # below every candidate

    def _ranked(self, chunk: Candidates) -> np.ndarray:
        """(chunk users, pool) scores in (1, 2]: 2 - rank / pool size in the ensemble's order."""
        if self.members.fallback:
            logits = _prior(chunk)
        else:
            split = self.builder.split
            logits = self.members.logits(
                self.fields, chunk, self.tables, split.maps, self.builder.feature_names
            )
        order = np.argsort(-logits, axis=1, kind="stable")
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(order.shape[1])[None, :], axis=1)
        return 2.0 - rank / order.shape[1]

    def pools(self, users: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(users, pool items, scores in (1, 2]) chunk by chunk."""
        for chunk in self.builder.chunks(np.asarray(users, dtype=np.int64), self.batch_users):
            yield chunk.users, chunk.items, self._ranked(chunk)

    def __call__(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        out = np.tile(self.fill, (users.size, 1))
        start = 0
        for chunk_users, items, scores in self.pools(users):
            rows = np.arange(start, start + chunk_users.size)[:, None]
            out[rows, items] = scores
            start += chunk_users.size
        return out


def _truth_users(split: Split) -> np.ndarray:
    return np.array([split.maps.user_index[u] for u in sorted(split.test_truth)], dtype=np.int64)


def training_lists(split: Split, fitted: FitResult, features: FeatureSource, cfg: RerankConfig) -> dict:
    """The re-ranker's training lists: candidates, labels, numerics and prior order of at most
    cfg.max_lists users over cfg.windows validation windows (memory: max_lists x pool x features)."""
    val = fitted.val_split
    val_tables = features(val)
    fields = _Fields(val_tables, cfg.n_buckets)
    if _truth_users(val).size == 0:
        raise ValueError("the validation view has no users with purchases in its window: nothing to learn")
    parts = [_window(val, val_tables, fitted.val_scores_fn, fields, cfg)]
    days = (cut_time(split) - cut_time(val)).total_seconds() / 86_400
    view = val
    while fitted.scorer_at is not None and len(parts) < cfg.windows:
        try:
            view = validation_view(view, max(1, round(days)))
        except ValueError:  # no rows left before an earlier cut
            break
        if _truth_users(view).size == 0:
            break
        parts.append(_window(view, features(view), fitted.scorer_at(view), fields, cfg, len(parts)))
    numeric = np.concatenate([p["numeric"] for p in parts])
    fields.fit(numeric)
    return {
        "parts": parts,
        "fields": fields,
        "numeric": numeric,
        "labels": np.concatenate([p["labels"] for p in parts]),
        "sizes": np.concatenate([p["sizes"] for p in parts]),
        "prior": np.concatenate([_prior(p["cands"]) for p in parts]),
        "users": np.concatenate([p["cands"].users for p in parts]),
        "n_items": val.maps.n_items,
    }


def fit_members(lists: dict, cfg: RerankConfig) -> tuple[Members, dict]:
    """Fit the ranker's members on the training lists; (members, info with each kind's fit seconds).

    Too little data or too few steps can leave a learned ranker worse than the pool's own repeat-buy
    order (measured: DeepFM below random on a 300-user shop): when the held-out members (DeepFMs and
    LambdaRanks, each on its own held-out lists) average below that order on the same lists, the order
    is served instead (`fallback`) and the trees are not fitted."""
    fields, numeric, labels, sizes, prior = (
        lists[k] for k in ("fields", "numeric", "labels", "sizes", "prior")
    )
    members, seconds = Members(), {"deepfm_fit_s": 0.0, "lambdarank_fit_s": 0.0, "trees_fit_s": 0.0}
    held: list[dict] = []  # each held-out member's best: holdout and prior NDCG@10
    epochs = 0
    if cfg.ensemble > 0:
        started = time.perf_counter()
        parts = lists["parts"]
        arrays = [fields.arrays(p["cands"], p["numeric"], p["tables"], p["view"].maps) for p in parts]
        cat, dense = np.concatenate([a[0] for a in arrays]), np.concatenate([a[1] for a in arrays])
        data = Lists(cat, dense, labels.astype(np.float32), sizes)
        losses = cfg.losses or (cfg.model.loss,)
        for j in range(cfg.ensemble):
            model, history = fit_deepfm(
                data, fields.cardinalities(lists["n_items"]),
                replace(cfg.model, seed=cfg.model.seed + j, loss=losses[j % len(losses)]), prior,
            )  # fmt: skip
            members.deepfms.append(model)
            held.append(max(history, key=lambda e: e["holdout_ndcg_at_10"]))
            epochs = epochs or len(history)
        seconds["deepfm_fit_s"] = time.perf_counter() - started
    if cfg.lambdarank is not None:
        started = time.perf_counter()
        # the training numerics as they are (no copy, ~150 MB at 4,096 lists) unless codes are appended
        ranked = numeric if not fields.ranked_columns else np.concatenate(
            [fields.ranked(p["cands"], p["numeric"], p["tables"], p["view"].maps) for p in lists["parts"]]
        )  # fmt: skip
        for j in range(cfg.lambdarank_members):
            lr_cfg = replace(cfg.lambdarank, seed=cfg.lambdarank.seed + j)
            model, best = fit_lambdarank(
                ranked, labels, sizes, lr_cfg, prior, categorical=len(fields.ranked_columns)
            )
            if model is not None:
                members.lambdaranks.append(model)
                held.append(best)
        seconds["lambdarank_fit_s"] = time.perf_counter() - started
    if not members.deepfms and not members.lambdaranks and cfg.trees is None:
        raise ValueError("the re-ranker has no member: set ensemble, lambdarank or trees")
    hold = float(np.mean([b["holdout_ndcg_at_10"] for b in held])) if held else 0.0
    hold_prior = float(np.mean([b["holdout_prior_ndcg_at_10"] for b in held])) if held else 0.0
    members.fallback = bool(held) and hold < hold_prior
    if cfg.trees is not None and not members.fallback:
        started = time.perf_counter()
        members.trees = fit_trees(numeric, labels, cfg.trees)
        seconds["trees_fit_s"] = time.perf_counter() - started
    if not members.deepfms and not members.lambdaranks and members.trees is None:
        members.fallback = True  # trees alone and every label alike: nothing learnt, the pool's order
    info = {
        "holdout_ndcg_at_10": hold,
        "holdout_prior_ndcg_at_10": hold_prior,
        "fallback": members.fallback,
        "epochs_run": epochs,
        "best_epoch": int(held[0]["epoch"]) if members.deepfms else 0,
        "ensemble": len(members.deepfms),
        "lambdarank_members": len(members.lambdaranks),
        "lambdarank_rounds": [int(m.best_iteration_ or 0) for m in members.lambdaranks],
        "tree_rounds": int(members.trees.n_iter_) if members.trees is not None else 0,
        **{k: round(v, 3) for k, v in seconds.items()},
    }
    return members, info


def fit_reranker(
    split: Split, fitted: FitResult, features: FeatureSource, cfg: RerankConfig | None = None
) -> tuple[ScoresFn, dict]:
    """Train the ranker on the validation view's candidate lists; return the test view's full-catalogue
    scorer. Memory: the training lists (max_lists x pool x features) plus one scoring chunk."""
    cfg = cfg or RerankConfig()
    started = time.perf_counter()
    lists = training_lists(split, fitted, features, cfg)
    lists_s = time.perf_counter() - started
    members, fit_info = fit_members(lists, cfg)
    fields, labels = lists["fields"], lists["labels"]
    tables = features(split)
    builder = CandidateBuilder(split, fitted.scores_fn, cfg.quotas, fields.item_codes(tables, split.maps))
    scores_fn = RerankedScores(builder, fields, tables, members, cfg.batch_users)
    fit_s = time.perf_counter() - started
    # a seeded sample of the test view's truth users: their pools cost O(sample), not O(truth users)
    recall_split = tuning_sample(split, cfg.recall_users, cfg.sample_seed)
    recall_users = _truth_users(recall_split)
    recall_test = candidate_recall(builder.chunks(recall_users, cfg.batch_users), recall_split)
    cands = lists["parts"][0]["cands"]
    info = {
        "train_rows": int(labels.size),
        "train_lists": int(lists["users"].size),
        "train_lists_budget": int(cfg.max_lists),
        "train_windows": len(lists["parts"]),
        "positive_rate": float(labels.mean()),
        "candidate_recall_val": candidate_recall(cands, fitted.val_split),
        "candidate_recall_test": recall_test,
        "candidate_recall_test_users": int(recall_users.size),
        "pool_size": int(cands.items.shape[1]),
        **fit_info,
        "lists_s": round(lists_s, 3),
        "fit_s": fit_s,
    }
    log.info("reranker: %s", {k: round(v, 4) if isinstance(v, float) else v for k, v in info.items()})
    return scores_fn, info
