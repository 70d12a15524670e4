"""Item names as a feature: TF-IDF over descriptions, for items that behaviour cannot place.

A product nobody bought together with anything, or that the model never saw (a new item), still has a
name. Its nearest names (cosine of TF-IDF over words and word pairs, scikit-learn, nothing downloaded)
are what `/similar_items` answers with when co-purchase and embeddings have nothing, marked
`source: "text"`. The features stage writes the neighbours beside the other serving files.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = ["item_id", "other_item_id", "cosine"]


def text_neighbours(items: pd.DataFrame, k: int = 20, min_cosine: float = 0.2) -> pd.DataFrame:
    """For each product with a name, its k most similar product names (cosine >= min_cosine)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    if "description" not in items:  # a catalogue without names (a mart from before they were kept)
        items = items.assign(description=None)
    products = items["is_product"].fillna(True).astype(bool) if "is_product" in items else True
    named = items[items["description"].notna() & products].drop_duplicates("item_id")
    if len(named) < 2:
        return pd.DataFrame({c: pd.Series(dtype="float64" if c == "cosine" else "string") for c in COLUMNS})
    vectors = TfidfVectorizer(
        ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"(?u)\b[A-Za-z]{2,}\b"
    ).fit_transform(named["description"].str.lower())
    ids = named["item_id"].to_numpy()
    rows = []
    for start in range(0, len(ids), 1024):  # one block of the cosine matrix at a time: memory stays small
        sims = (vectors[start : start + 1024] @ vectors.T).toarray()
        np.fill_diagonal(sims[:, start : start + 1024], 0.0)
        top = np.argsort(-sims, axis=1)[:, :k]
        for i, cols in enumerate(top):
            for j in cols:
                if sims[i, j] >= min_cosine:
                    rows.append((ids[start + i], ids[j], round(float(sims[i, j]), 4)))
    return pd.DataFrame(rows, columns=COLUMNS)
