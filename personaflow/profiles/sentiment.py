"""Review understanding that runs here: sentiment, complaint aspects and keywords, language. Pure
functions: texts and ratings in, arrays out; nothing is downloaded.

- Sentiment is learned from the shop's own star ratings as weak labels: 1-2 stars negative, 4-5
  positive, 3 left out of training. TF-IDF over word 1-2-grams and a logistic regression
  (scikit-learn); the score is 2·P(positive) − 1, in [-1, 1], for every review, rated or not. A shop
  with too few ratings of either kind (fewer than MIN_PER_CLASS) gets a small declared lexicon
  instead (LEXICON below, with negation), so a shop without ratings still has scores.
- Complaint aspects: a declared aspect list (DEFAULT_ASPECTS, or the mapping's own `[aspects]`) matched
  on light lemmas (plural, -ing, -ed stripped) inside the sentences the model scores negative, so "love
  it but it runs small" complains about size even in a 4-star review.
- Complaint keywords: the review's terms with the most negative weight in the model (coefficient ×
  the term's TF-IDF in that review), for reviews it scores negative.
- Language: py3langid (its model ships inside the PyPI wheel); texts under MIN_LANG_WORDS words are
  `und` (undetermined): a two-word review is too short to tell.

Memory: sparse TF-IDF, O(reviews × distinct terms per review) plus the vocabulary (terms seen at least
twice); sentences are scored in one pass. No pairwise comparison of reviews.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
from sklearn.linear_model import LogisticRegression

NEGATIVE_MAX, POSITIVE_MIN = 2, 4  # stars: <= 2 negative, >= 4 positive, 3 left out
MIN_PER_CLASS = 30  # fewer negative or positive ratings than this: the lexicon instead
MIN_LANG_WORDS = 4
LANG_CHARS = 300  # the start of a text tells its language; the identifier's cost grows with length
KEYWORDS_PER_REVIEW = 3

# Complaint aspects a shop of clothes or cosmetics names; words are matched as light lemmas.
DEFAULT_ASPECTS: dict[str, list[str]] = {
    "size": ["size", "sizing", "small", "large", "big", "tight", "loose", "fit", "snug", "baggy", "huge",
             "tiny", "petite", "xs", "xl"],
    "fabric": ["fabric", "material", "thin", "itchy", "scratchy", "sheer", "polyester", "lining", "wrinkle",
               "synthetic", "stiff"],
    "quality": ["quality", "cheap", "rip", "tear", "hole", "seam", "stitching", "pilling", "flimsy", "broke",
                "broken", "defect", "flaw", "unravel"],
    "price": ["price", "expensive", "overpriced", "cost", "money", "worth", "refund"],
    "colour": ["color", "colour", "faded", "shade", "dye"],
    "length": ["length", "short", "long"],
    "shape": ["unflattering", "boxy", "shape", "frumpy", "shapeless", "cut"],
    "smell": ["smell", "scent", "fragrance", "odor", "odour", "perfume", "stink"],
    "skin": ["rash", "irritation", "breakout", "burn", "greasy", "sticky", "dry", "allergic", "itch"],
    "delivery": ["shipping", "delivery", "arrived", "package", "leak", "damaged", "box"],
}  # fmt: skip

# The fallback for a shop without ratings: a small declared lexicon, with "not/no/never" flipping the
# next two words. Deliberately short: it is a floor, judged against the ratings model in the benchmark.
LEXICON = {
    **dict.fromkeys(
        "love loved lovely great perfect beautiful gorgeous comfortable soft flattering excellent amazing "
        "awesome nice cute happy recommend favorite favourite best wonderful pretty fantastic glad good "
        "works fresh smooth gentle worth".split(),
        1.0,
    ),
    **dict.fromkeys(
        "bad poor terrible awful horrible disappointed disappointing disappointment return returned "
        "returning cheap itchy unflattering worst waste hate hated ugly broke broken smell smells "
        "scratchy wrong refund sadly unfortunately rash irritation burn greasy sticky useless".split(),
        -1.0,
    ),
}
NEGATIONS = {"not", "no", "never", "don't", "didn't", "doesn't", "isn't", "wasn't", "won't", "can't"}
# Words that say how the reviewer feels, not what about: left out of complaint keywords (they stay in
# the model), so the keywords name things ("huge", "fabric", "cheap") rather than "disappointed".
OPINION_WORDS = frozenset(
    "disappointed disappointing disappointment love loved like liked wanted want looked look looks return "
    "returned returning going went sent way really just bad worst poor awful terrible horrible sadly "
    "unfortunately star stars completely nothing did didn don doesn doesnt isn wasn won ll ve dont didnt "
    "good great nice buy bought ordered order product item thing time maybe thought".split()
)
_STARS_TITLE = re.compile(r"^\s*(one|two|three|four|five|[1-5])\s+stars?\s*$", re.IGNORECASE)
_TOKEN = re.compile(r"[a-z][a-z']+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+|\bbut\b", re.IGNORECASE)


def review_text(title: object, text: object) -> str:
    """What is scored: the title and the text, either may be missing. A title that only names a star
    count ("Five Stars", written by the shop's site from the rating) is the rating, not the customer's
    words: left out, so the model learns from text and is not judged on the label it was given."""
    if title is not None and title == title and _STARS_TITLE.match(str(title)):
        title = None
    parts = [str(p).strip() for p in (title, text) if p is not None and p == p and str(p).strip()]
    return ". ".join(parts)


def weak_labels(ratings: Sequence[float] | np.ndarray) -> np.ndarray:
    """1 positive (4-5 stars), 0 negative (1-2), NaN left out (3 stars, no rating)."""
    r = np.asarray(ratings, dtype=float)
    return np.where(r >= POSITIVE_MIN, 1.0, np.where(r <= NEGATIVE_MAX, 0.0, np.nan))


def lemma(token: str) -> str:
    """A light lemma: enough to match "sizes", "sizing" and "size", or "ripped" and "rip"."""
    t = token.lower().strip("'")
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if t.endswith(suffix) and len(t) - len(suffix) >= 3:
            t = t[: len(t) - len(suffix)] + keep
            break
    # "ripp" (ripped) and "sizing" -> "siz": fold a doubled last letter and a dropped final e alike
    if len(t) >= 4 and t[-1] == t[-2]:
        t = t[:-1]
    return t.rstrip("e") if len(t) > 3 else t


@dataclass
class SentimentModel:
    """A fitted sentiment scorer: `kind` is "ratings" (learned from the shop's stars) or "lexicon"."""

    kind: str
    vectorizer: TfidfVectorizer | None = None
    classifier: LogisticRegression | None = None
    n_train: int = 0
    n_negative: int = 0
    fit_seconds: float = 0.0
    aspects: dict[str, list[str]] = field(default_factory=lambda: dict(DEFAULT_ASPECTS))

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Sentiment in [-1, 1] per text (negative below 0)."""
        if self.kind == "lexicon" or self.vectorizer is None or self.classifier is None:
            return lexicon_score(texts)
        p = self.classifier.predict_proba(self.vectorizer.transform(texts))[:, 1]
        return 2.0 * p - 1.0

    def complaint_terms(self, texts: Sequence[str], scores: np.ndarray, k: int = KEYWORDS_PER_REVIEW):
        """Per text, the terms pulling it most towards negative (content words only), for texts scored
        negative; [] for the others and for the lexicon."""
        out: list[list[str]] = [[] for _ in texts]
        if self.kind != "ratings" or self.vectorizer is None or self.classifier is None:
            return out
        negative = np.flatnonzero(np.asarray(scores) < 0)
        if not len(negative):
            return out
        x = self.vectorizer.transform([texts[i] for i in negative]).tocsr()
        coef = self.classifier.coef_[0]
        names = self.vectorizer.get_feature_names_out()
        content = _content(names)
        for row, i in enumerate(negative):
            cols = x.indices[x.indptr[row] : x.indptr[row + 1]]
            weight = x.data[x.indptr[row] : x.indptr[row + 1]] * coef[cols]
            keep = (weight < 0) & content[cols]
            order = np.argsort(weight[keep])[:k]
            out[i] = [str(names[c]) for c in cols[keep][order]]
        return out

    def complaint_aspects(self, texts: Sequence[str]) -> list[list[str]]:
        """Per text, the declared aspects named in its sentences that score negative."""
        index = {lemma(w): a for a, words in self.aspects.items() for w in words}
        sentences, owner = [], []
        for i, text in enumerate(texts):
            for sentence in _SENTENCE.split(text or ""):
                if sentence and sentence.strip():
                    sentences.append(sentence)
                    owner.append(i)
        out: list[list[str]] = [[] for _ in texts]
        if not sentences:
            return out
        negative = self.score(sentences) < 0
        for sentence, i, neg in zip(sentences, owner, negative, strict=True):
            if not neg:
                continue
            for token in _TOKEN.findall(sentence.lower()):
                aspect = index.get(lemma(token))
                if aspect and aspect not in out[i]:
                    out[i].append(aspect)
        return out

    def top_terms(self, n: int = 15) -> list[str]:
        """The content terms with the most negative weight (what the model learned complaints look like)."""
        if self.kind != "ratings" or self.vectorizer is None or self.classifier is None:
            return []
        names = self.vectorizer.get_feature_names_out()
        order = np.argsort(self.classifier.coef_[0])
        content = _content(names)
        return [str(names[i]) for i in order if content[i]][:n]


def _content(names: np.ndarray) -> np.ndarray:
    """Terms that name something: not made only of stop words and opinion words."""
    generic = ENGLISH_STOP_WORDS | OPINION_WORDS
    return np.array([not all(w in generic for w in n.split()) for n in names])


def fit_sentiment(
    texts: Sequence[str],
    ratings: Sequence[float] | np.ndarray,
    aspects: dict[str, list[str]] | None = None,
    min_per_class: int = MIN_PER_CLASS,
) -> SentimentModel:
    """Learn sentiment from the shop's stars (weak labels); too few of either kind: the lexicon. The
    vocabulary comes from the rated texts only (what the benchmark fits on its training part)."""
    return _fit(texts, ratings, aspects, min_per_class, vocabulary_from_all=False)[0]


def fit_and_score(
    texts: Sequence[str],
    ratings: Sequence[float] | np.ndarray,
    aspects: dict[str, list[str]] | None = None,
    min_per_class: int = MIN_PER_CLASS,
) -> tuple[SentimentModel, np.ndarray]:
    """The stage's one pass: the vocabulary from every text (rated or not: no label is used for it),
    the classifier from the rated ones, and every text's score from the same matrix (the texts are
    tokenised once, not twice)."""
    return _fit(texts, ratings, aspects, min_per_class, vocabulary_from_all=True)


def _fit(
    texts, ratings, aspects, min_per_class, vocabulary_from_all: bool
) -> tuple[SentimentModel, np.ndarray]:
    aspects = aspects or dict(DEFAULT_ASPECTS)
    labels = weak_labels(ratings)
    known = ~np.isnan(labels)
    y = labels[known].astype(int)
    n_neg, n_pos = int((y == 0).sum()), int((y == 1).sum())
    if n_neg < min_per_class or n_pos < min_per_class:
        model = SentimentModel("lexicon", aspects=aspects, n_negative=n_neg)
        return model, (model.score(texts) if vocabulary_from_all else np.array([]))
    started = time.perf_counter()
    # stop words stay: "not", "no" and "but" carry sentiment; bigrams catch "not worth", "runs small"
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=200_000)
    if vocabulary_from_all:
        x_all = vectorizer.fit_transform(texts)
        x = x_all[np.flatnonzero(known)]
    else:
        x_all = None
        x = vectorizer.fit_transform([t for t, k in zip(texts, known, strict=True) if k])
    classifier = LogisticRegression(C=4.0, class_weight="balanced", max_iter=2000, solver="liblinear")
    classifier.fit(x, y)
    model = SentimentModel(
        "ratings", vectorizer, classifier, int(known.sum()), n_neg, time.perf_counter() - started, aspects
    )
    scores = 2.0 * classifier.predict_proba(x_all)[:, 1] - 1.0 if x_all is not None else np.array([])
    return model, scores


def lexicon_score(texts: Sequence[str]) -> np.ndarray:
    """The fallback score in [-1, 1]: (positive − negative hits) / hits, a negation flipping the next
    two words; 0 for a text without a lexicon word."""
    out = np.zeros(len(texts))
    for i, text in enumerate(texts):
        total = hits = 0.0
        flip = 0
        for token in _TOKEN.findall((text or "").lower()):
            if token in NEGATIONS:
                flip = 2
                continue
            value = LEXICON.get(token)
            if value is not None:
                total += -value if flip else value
                hits += 1
            flip = max(flip - 1, 0)
        out[i] = total / hits if hits else 0.0
    return out


_IDENTIFIER = None


def detect_language(texts: Sequence[str]) -> list[str]:
    """ISO 639-1 code per text (py3langid, its model read from the installed wheel), `und` when the
    text is shorter than MIN_LANG_WORDS words or the identifier is unsure (confidence < 0.5)."""
    global _IDENTIFIER
    if _IDENTIFIER is None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        _IDENTIFIER = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    out = []
    for text in texts:
        if len((text or "").split()) < MIN_LANG_WORDS:
            out.append("und")
            continue
        lang, confidence = _IDENTIFIER.classify(text[:LANG_CHARS])
        out.append(lang if confidence >= 0.5 else "und")
    return out


def top_keywords(lists: Sequence[Sequence[str]], n: int = 5) -> list[str]:
    """The most frequent entries over many reviews' keyword or aspect lists (ties by name)."""
    counts = Counter(k for keys in lists for k in keys)
    return [k for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]
