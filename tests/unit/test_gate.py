"""The promotion gate against the best baseline and production on one fair split (issue 11).

Score functions are built from a split's own truth (an oracle), the repeat-buy baseline and noise, so
each case is decided by behaviour (who is clearly better, on how many users), not by numbers from a run.
"""

import json

import duckdb
import numpy as np
import pandas as pd
import pytest

from personaflow.training import export, gate
from personaflow.training.data.interactions import split_fingerprint, time_split
from personaflow.training.data.synthetic import make_interactions
from personaflow.training.evaluation.baselines import own_history, popularity, popularity_ranking
from personaflow.training.evaluation.metrics import evaluate
from personaflow.training.pipeline import promote_candidate, train_candidate
from personaflow.training.registry.fair import saw_window, scored_fairly
from personaflow.training.registry.loading import load_model
from personaflow.training.registry.pointer import promote, read_pointer, write_pointer
from personaflow.training.registry.store import model_info, save_candidate


def shop(n_low: int, seed: int = 5):
    """A synthetic shop whose first `n_low` test users keep a single training row (low activity)."""
    frame = make_interactions(n_users=300, n_items=60, n_rows=9000, seed=seed)
    first = time_split(frame, 7)
    dates = pd.to_datetime(frame["event_date"]).dt.date
    low = sorted(first.test_truth)[:n_low]
    rows = frame[(dates < first.cutoff) & frame["user_id"].isin(low)]
    drop = rows.index.difference(rows.groupby("user_id").head(1).index)
    return time_split(frame.drop(drop).reset_index(drop=True), 7)


def truth_matrix(split) -> np.ndarray:
    out = np.zeros((split.maps.n_users, split.maps.n_items))
    for user, items in split.test_truth.items():
        out[split.maps.user_index[user], [split.maps.item_index[i] for i in items]] = 1.0
    return out


def oracle(split, flip_low: bool = False):
    """Ranks each user's hold-out items first; `flip_low`: last, for the low-activity users."""
    truth = truth_matrix(split)
    if flip_low:
        low = [
            split.maps.user_index[u]
            for u, m in zip(sorted(split.test_truth), gate.low_activity_users(split), strict=True)
            if m
        ]
        truth[low] = -truth[low]
    noise = np.random.default_rng(0).random(truth.shape) * 1e-3
    return lambda users: truth[np.asarray(users)] + noise[np.asarray(users)]


def noise(split, seed: int = 1):
    rng = np.random.default_rng(seed)
    return lambda users: rng.random((len(users), split.maps.n_items))


def save(split, fn, evidence: dict, kind: str = "bpr-mf") -> str:
    """A saved model whose recorded metrics are `fn`'s on `split` plus the gate's evidence."""
    rng = np.random.default_rng(0)
    emb = export.Embeddings(
        kind, rng.normal(size=(split.maps.n_users, 4)).astype(np.float32),
        rng.normal(size=(split.maps.n_items, 4)).astype(np.float32), np.zeros(split.maps.n_items, np.float32),
    )  # fmt: skip
    metrics = {**evaluate(fn, split), "baseline_ndcg_at_10": evaluate(popularity(split), split)["ndcg_at_10"]}
    return save_candidate(
        emb, split.maps, popularity_ranking(split), {**metrics, **evidence}, {"model": "bpr"}
    )


def production(store, split, fn=None) -> str:
    tag = save(split, fn or own_history(split), {})
    write_pointer(store, {"tag": tag, "history": []})
    return tag


def test_interval_words_match_the_numbers():
    assert gate.interval_words(-0.094, -0.057) == "lies entirely below 0"
    assert gate.interval_words(-0.01, 0.02) == "includes 0"
    assert gate.interval_words(0.017, 0.051) == "lies entirely above 0"


def test_a_deliberately_worse_model_is_refused_and_the_message_states_its_interval(store):
    split = shop(0)
    prod = production(store, split)
    worse = noise(split)
    ev = gate.gate_evidence(
        worse, split, {"repeat_buy": own_history(split)}, own_history(split), production_tag=prod
    )
    decision = promote(save(split, worse, ev), store)
    assert decision["promoted"] is False and read_pointer(store)["tag"] == prod
    hi = ev["gate_vs_production_gain_ci_high"]
    assert hi < 0 and "lies entirely below 0" in decision["reason"] and "includes 0" not in decision["reason"]


def test_a_model_worse_than_the_best_baseline_is_refused_even_with_no_production(store):
    split = shop(0)
    bases = {"repeat_buy": own_history(split), "popularity": popularity(split)}
    weak = popularity(split)  # beats nothing but itself: a learned model that learned popularity
    ev = gate.gate_evidence(weak, split, bases)
    assert ev["gate_best_baseline"] == "repeat_buy"
    decision = promote(save(split, weak, ev), store)
    assert decision["promoted"] is False and not store.exists()
    assert "best baseline (repeat_buy)" in decision["reason"]


def test_clearly_better_but_four_low_activity_users_worse_is_promoted(store):
    split = shop(4)
    assert gate.low_activity_users(split).sum() == 4
    prod = production(store, split)
    better = oracle(split, flip_low=True)  # perfect for everybody but the 4, who get the worst order
    ev = gate.gate_evidence(
        better, split, {"repeat_buy": own_history(split)}, own_history(split), production_tag=prod
    )
    assert ev["low_activity_ndcg_at_10"] < ev["production_low_activity_ndcg_at_10"]  # they did worse
    assert "gate_vs_production_low_activity_gain" not in ev  # 4 < MIN_SLICE_USERS: no interval, no veto
    decision = promote(save(split, better, ev), store)
    assert decision["promoted"] is True, decision["reason"]
    assert decision["gate_checks"] == []
    # the note states the gain and its interval, which here is clear
    assert "vs production" in decision["reason"] and "lies entirely above 0" in decision["reason"]


def test_a_promotion_that_wins_nothing_clearly_says_its_interval_includes_0(store):
    """Issue 27: a note said a model "beats production 0.3789" when its gain was +0.0022 [-0.0036,
    +0.0075]. The best baseline, equal to production, serves: its note gives the interval."""
    split = shop(0)
    prod = production(store, split)
    same = own_history(split)
    ev = gate.gate_evidence(same, split, {"repeat_buy": own_history(split)}, own_history(split),
                            production_tag=prod)  # fmt: skip
    ev["gate_candidate_baseline"] = ev["gate_best_baseline"]
    decision = promote(save(split, same, ev, kind="repeat_buy"), store)
    assert decision["promoted"] is True, decision["reason"]
    assert "includes 0" in decision["reason"] and "beats production" not in decision["reason"]
    assert "gain +0.0000 ndcg@10 (paired bootstrap 95% CI [" in decision["reason"]


def test_a_big_slice_that_clearly_regresses_vetoes(store):
    split = shop(gate.MIN_SLICE_USERS + 10)
    prod = production(store, split)
    better = oracle(split, flip_low=True)
    ev = gate.gate_evidence(
        better, split, {"repeat_buy": own_history(split)}, own_history(split), production_tag=prod
    )
    assert ev["gate_vs_production_gain_ci_low"] > 0  # better overall ...
    decision = promote(save(split, better, ev), store)
    assert decision["promoted"] is False  # ... but the slice's own interval lies below 0
    assert "low-activity users regress against production" in decision["reason"]
    assert f"{gate.MIN_SLICE_USERS + 10} users" in decision["reason"]


def test_the_best_baseline_serves_when_no_learned_model_beats_it(store, tmp_path):
    warehouse = tmp_path / "wh.duckdb"
    con = duckdb.connect(str(warehouse))
    con.register("synthetic", make_interactions(seed=8))
    con.execute("create schema marts; create table marts.interactions as select * from synthetic")
    con.close()
    # one epoch of BPR does not beat the best baseline clearly: the baseline is the candidate to serve
    result = train_candidate(warehouse, holdout_days=7, seed=4, epochs=1, dim=8, reports_dir=tmp_path / "r")
    json.dumps(result)
    assert "learned_tag" in result and "no learned model beat the best baseline" in result["served_instead"]
    best = result["metrics"]["gate_best_baseline"]
    served = load_model(result["tag"])
    assert served.kind == export.BASELINE_KINDS[best]
    split = time_split(make_interactions(seed=8), holdout_days=7)
    assert evaluate(served.scores, split)["ndcg_at_10"] == pytest.approx(result["metrics"]["ndcg_at_10"])
    learned = promote(result["learned_tag"], store)
    assert learned["promoted"] is False and "best baseline" in learned["reason"]
    decision = promote_candidate(result["tag"], store, report=result["report"])
    assert decision["promoted"] is True and "the best baseline" in decision["reason"]
    assert "no learned model beat it" in decision["reason"]
    report = json.loads((tmp_path / "r" / f"training_{result['tag'].replace(':', '_')}.json").read_text())
    assert "served_instead" in report and report["promotion"]["promoted"] is True


def test_tifu_is_a_servable_model_kind(store, tmp_path):
    warehouse = tmp_path / "wh.duckdb"
    con = duckdb.connect(str(warehouse))
    con.register("synthetic", make_interactions(seed=8))
    con.execute("create schema marts; create table marts.interactions as select * from synthetic")
    con.close()
    result = train_candidate(warehouse, holdout_days=7, seed=4, model="tifu")
    assert result["params"]["kind"] == "tifu-knn" and "learned_tag" not in result
    assert set(result["params"]["tifu_params"]) >= {"decay", "neighbours", "alpha"}
    # the validation size the tuning saw is in the training report's params
    assert result["params"]["val_users"] >= 50 and result["params"]["val_window_days"] >= 7
    loaded = load_model(result["tag"])
    split = time_split(make_interactions(seed=8), holdout_days=7)
    assert evaluate(loaded.scores, split)["ndcg_at_10"] == pytest.approx(result["metrics"]["ndcg_at_10"])
    assert evaluate(loaded.scores, split)["ndcg_at_10"] > evaluate(popularity(split), split)["ndcg_at_10"]
    items, fallback = loaded.recommend(split.maps.user_ids[0], 5)
    assert fallback is None and len({i for i, _ in items}) == 5


def test_manual_promotion_runs_the_gate_on_todays_split_and_force_is_shown(store, tmp_path):
    frame = make_interactions(seed=8)
    old, today = tmp_path / "old.duckdb", tmp_path / "today.duckdb"
    last = max(frame["event_date"])
    for path, rows in ((old, frame[frame["event_date"] <= last - pd.Timedelta(days=10)]), (today, frame)):
        con = duckdb.connect(str(path))
        con.register("synthetic", rows)
        con.execute("create schema marts; create table marts.interactions as select * from synthetic")
        con.close()
    # an old, barely trained candidate, which looked fine on its own old window against no production
    stale = train_candidate(old, holdout_days=7, seed=4, epochs=1, dim=4, serve_baseline=False)["tag"]
    good = train_candidate(today, holdout_days=7, seed=4, model="repeat_buy")["tag"]
    assert promote(good, store)["promoted"] is True
    split = time_split(frame, 7)
    assert not saw_window(model_info(stale)["params"], split)  # its cut is older: scored as it is
    decision = promote_candidate(stale, store, warehouse=today, holdout_days=7)
    assert decision["promoted"] is False and decision["evidence"] == "measured now"
    assert read_pointer(store)["tag"] == good
    forced = promote_candidate(stale, store, warehouse=today, holdout_days=7, force=True)
    assert forced["promoted"] is True and forced["forced"] is True
    assert forced["reason"].startswith("FORCED despite the gate:")
    pointer = read_pointer(store)
    assert pointer["tag"] == stale and pointer["forced"] is True and pointer["gate_overridden"]


def test_a_model_that_trained_on_the_test_window_is_refitted_not_rescored(store, tmp_path):
    frame = make_interactions(seed=8)
    warehouse = tmp_path / "wh.duckdb"
    con = duckdb.connect(str(warehouse))
    con.register("synthetic", frame)
    con.execute("create schema marts; create table marts.interactions as select * from synthetic")
    con.close()
    newest = train_candidate(warehouse, holdout_days=2, seed=4, model="repeat_buy")["tag"]  # saw more days
    older_split = time_split(frame, 7)
    assert saw_window(model_info(newest)["params"], older_split)
    fn, basis, recipe = scored_fairly(newest, older_split)
    assert recipe.model == "repeat_buy" and "re-fit on this cut" in basis
    refit = evaluate(fn, older_split)["ndcg_at_10"]
    assert refit == pytest.approx(evaluate(own_history(older_split), older_split)["ndcg_at_10"], abs=1e-9)


def test_the_promote_command_offers_force(edge_env_restored):
    from typer.testing import CliRunner

    from personaflow.cli import app

    result = CliRunner().invoke(app, ["promote", "--help"])
    assert result.exit_code == 0 and "--force" in result.output


def test_serving_answers_from_a_baseline_model(store, tmp_path):
    import pandas as pd

    from personaflow.serving.ranking import Ranker

    warehouse = tmp_path / "wh.duckdb"
    con = duckdb.connect(str(warehouse))
    con.register("synthetic", make_interactions(seed=8))
    con.execute("create schema marts; create table marts.interactions as select * from synthetic")
    con.close()
    loaded = load_model(train_candidate(warehouse, holdout_days=7, seed=4, model="repeat_buy")["tag"])
    catalogue = pd.DataFrame({"category": "c"}, index=pd.Index(loaded.maps.item_ids, name="item_id"))
    ranker = Ranker(loaded, catalogue)
    user = loaded.maps.user_ids[0]
    items, fallback, _ = ranker.recommend(user, 5)
    bought = loaded.history[0].indices
    assert fallback is None and len(items) == 5
    assert items[0][0] in {loaded.maps.item_ids[j] for j in bought}  # repeat-buy: own purchases first
    similar = ranker.similar(loaded.maps.item_ids[0], 3)
    assert len(similar) == 3 and all(source == "embedding" for *_, source in similar)


def _warehouse(path, rows) -> None:
    con = duckdb.connect(str(path))
    con.register("synthetic", rows)
    con.execute("create or replace table marts.interactions as select * from synthetic")
    con.close()


def test_a_retrain_on_productions_own_data_does_not_replace_it_but_one_on_fresher_data_may(store, tmp_path):
    """Issue 26: clearing a night's training task retrains on the same data. Production's recipe on
    fresher data passes the gate without a clear win; on exactly production's data it must beat it."""
    frame = make_interactions(seed=8)
    warehouse = tmp_path / "wh.duckdb"
    duckdb.connect(str(warehouse)).execute("create schema marts").close()
    last = max(frame["event_date"])
    _warehouse(warehouse, frame[frame["event_date"] < last])
    first = train_candidate(warehouse, holdout_days=7, seed=4, model="repeat_buy", pointer_path=store)
    assert promote_candidate(first["tag"], store, report=None)["promoted"] is True
    again = train_candidate(warehouse, holdout_days=7, seed=4, model="repeat_buy", pointer_path=store)
    assert again["metrics"]["gate_same_data"] is True and again["metrics"]["gate_same_recipe"] is True
    assert again["params"]["data_sha256"] == first["params"]["data_sha256"]
    refused = promote_candidate(again["tag"], store, warehouse=warehouse, holdout_days=7)
    assert refused["promoted"] is False and "not a clear win" in refused["reason"], refused["reason"]
    assert read_pointer(store)["tag"] == first["tag"]

    _warehouse(warehouse, frame)  # one more day landed: the same recipe on fresher data
    fresher = train_candidate(warehouse, holdout_days=7, seed=4, model="repeat_buy", pointer_path=store)
    assert fresher["metrics"]["gate_same_data"] is False
    decision = promote_candidate(fresher["tag"], store, warehouse=warehouse, holdout_days=7)
    assert decision["promoted"] is True, decision["reason"]
    assert read_pointer(store)["tag"] == fresher["tag"]


def test_the_data_fingerprint_ignores_row_order_and_sees_one_changed_row():
    frame = make_interactions(seed=3)
    split = time_split(frame, 7)
    shuffled = time_split(frame.sample(frac=1.0, random_state=0).reset_index(drop=True), 7)
    assert split_fingerprint(shuffled) == split_fingerprint(split)
    changed = frame.copy()
    changed.loc[changed.index[0], "weight"] += 1
    assert split_fingerprint(time_split(changed, 7)) != split_fingerprint(split)
