"""Review sentiment on the two real English review sets (`make bench-reviews`).

For each set (../shared/data/reviews/): read through its shipped mapping (repeats dropped as the import
drops them), hold back a random 20 % (stratified by rating, seed 0), fit the ratings model
(personaflow/profiles/sentiment.py) on the other 80 % and judge every model on the held-back reviews
rated 1-2 (negative) or 4-5 (positive): ROC AUC. Peers on the same reviews: VADER 3.3.2 (compound
score; the `bench` extra), and our own lexicon fallback (what a shop without ratings gets).
Also: the top complaint aspects and keywords per department of the clothing set (on the held-back
negative reviews, scored by the model fitted on the rest), fit time, sizes, cores, idle flag.

Writes benchmarks/results/reviews.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import write_results  # noqa: E402
from personaflow.ingest.reviews import load_mapping, read_reviews  # noqa: E402
from personaflow.profiles.sentiment import (  # noqa: E402
    detect_language,
    fit_sentiment,
    lexicon_score,
    review_text,
    top_keywords,
    weak_labels,
)

DATA = ROOT.parent / "shared" / "data" / "reviews"
SETS = {
    "clothing": ("womens-clothing", DATA / "womens-clothing" / "womens_clothing_ecommerce_reviews.csv.gz"),
    "beauty": ("amazon-all-beauty", DATA / "amazon-all-beauty" / "All_Beauty_5.json.gz"),
}
HELD_OUT = 0.2


def vader_scores(texts: list[str]) -> np.ndarray:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return np.array([analyzer.polarity_scores(t)["compound"] for t in texts])


def auc_gap_interval(y: np.ndarray, ours: np.ndarray, peer: np.ndarray, draws: int = 1000) -> tuple:
    """95 % paired bootstrap interval of ROC AUC(ours) − ROC AUC(peer) over the judged reviews
    (resampled within each class, so every draw has both)."""
    rng = np.random.default_rng(0)
    neg, pos = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    gaps = []
    for _ in range(draws):
        idx = np.r_[rng.choice(neg, len(neg)), rng.choice(pos, len(pos))]
        gaps.append(roc_auc_score(y[idx], ours[idx]) - roc_auc_score(y[idx], peer[idx]))
    low, high = np.percentile(gaps, [2.5, 97.5])
    return round(float(low), 4), round(float(high), 4)


def judge(name: str, mapping: str, path: Path, out: dict) -> None:
    frame, report = read_reviews(path, load_mapping(mapping))
    texts = [review_text(t, x) for t, x in zip(frame["title"], frame["text"], strict=True)]
    ratings = frame["rating"].to_numpy()
    index = np.arange(len(frame))
    train, test = train_test_split(index, test_size=HELD_OUT, random_state=0, stratify=ratings.astype(int))
    model = fit_sentiment([texts[i] for i in train], ratings[train])
    labels = weak_labels(ratings[test])
    judged = test[~np.isnan(labels)]
    y = labels[~np.isnan(labels)].astype(int)
    test_texts = [texts[i] for i in judged]
    started = time.perf_counter()
    ours = model.score(test_texts)
    score_s = time.perf_counter() - started
    started = time.perf_counter()
    vader = vader_scores(test_texts)
    vader_s = time.perf_counter() - started
    out |= {
        f"{name}_reviews_read": report["records"],
        f"{name}_repeats_dropped": report["repeats_dropped"],
        f"{name}_reviews": report["rows"],
        f"{name}_train_reviews": len(train),
        f"{name}_train_labelled": model.n_train,
        f"{name}_train_negative": model.n_negative,
        f"{name}_test_reviews": len(test),
        f"{name}_test_judged_negative": int((y == 0).sum()),
        f"{name}_test_judged_positive": int((y == 1).sum()),
        f"{name}_model_kind": model.kind,
        f"{name}_model_roc_auc": round(float(roc_auc_score(y, ours)), 4),
        f"{name}_vader_roc_auc": round(float(roc_auc_score(y, vader)), 4),
        f"{name}_lexicon_fallback_roc_auc": round(float(roc_auc_score(y, lexicon_score(test_texts))), 4),
        f"{name}_model_fit_s": round(model.fit_seconds, 2),
        f"{name}_model_score_ms_per_1k_reviews": round(1000 * score_s / len(test_texts) * 1000, 1),
        f"{name}_vader_score_ms_per_1k_reviews": round(1000 * vader_s / len(test_texts) * 1000, 1),
        f"{name}_model_beats_vader": bool(roc_auc_score(y, ours) > roc_auc_score(y, vader)),
        **dict(
            zip(
                (f"{name}_model_minus_vader_roc_auc_ci95_low", f"{name}_model_minus_vader_roc_auc_ci95_high"),
                auc_gap_interval(y, ours, vader),
                strict=True,
            )
        ),
        f"{name}_model_top_negative_terms": ", ".join(model.top_terms(12)),
    }
    started = time.perf_counter()
    languages = detect_language([texts[i] for i in test])
    out[f"{name}_language_ms_per_1k_reviews"] = round(
        1000 * (time.perf_counter() - started) / len(test) * 1000, 1
    )
    counts = {lang: languages.count(lang) for lang in sorted(set(languages))}
    out[f"{name}_test_languages"] = ", ".join(
        f"{k}={v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])
    )
    if name == "clothing":
        negative = test[ratings[test] <= 2]
        neg_texts = [texts[i] for i in negative]
        scores = model.score(neg_texts)
        aspects = model.complaint_aspects(neg_texts)
        terms = model.complaint_terms(neg_texts, scores)
        departments = frame["category"].to_numpy()[negative]
        for dept in sorted({d for d in departments if d}):
            rows = [i for i, d in enumerate(departments) if d == dept]
            key = dept.lower().replace(" ", "_")
            out[f"clothing_{key}_negative_test_reviews"] = len(rows)
            out[f"clothing_{key}_top_complaint_aspects"] = ", ".join(
                top_keywords([aspects[i] for i in rows], 5)
            )
            out[f"clothing_{key}_top_complaint_keywords"] = ", ".join(
                top_keywords([terms[i] for i in rows], 8)
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "reviews.json")
    args = parser.parse_args()
    out: dict = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "machine_idle": os.getloadavg()[0] < 0.5 * (os.cpu_count() or 1),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "data": "../shared/data/reviews: womens-clothing (23,486 reviews) and amazon-all-beauty "
        "(5,269 lines, 4,216 reviews after its repeats)",
        "held_out_share": HELD_OUT,
        "split": "random, stratified by rating, seed 0; judged: held-back reviews rated 1-2 vs 4-5",
        "model": "TF-IDF word 1-2-grams (min_df 2, sublinear) + logistic regression (C 4, balanced)",
        "peer": "vadersentiment 3.3.2 compound score",
    }
    for name, (mapping, path) in SETS.items():
        judge(name, mapping, path, out)
    write_results(args.out, out)


if __name__ == "__main__":
    main()
