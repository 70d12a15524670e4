"""Request and answer bodies of the API. Every field is described: the OpenAPI docs (`/docs.json`, and
the page at `/`) are generated from these models.

Requests forbid unknown fields, so a typo (`"user": ...`) is a 422 naming the field, not a silent default.
Request fields are strict: `true` is not the integer 1 and `"3"` is not 3 (422 naming the field). An
event is held to the batch contract (personaflow/quality/contract.py) here, so the API never accepts a row
that the nightly batch check would quarantine the day for.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, StringConstraints, field_validator

from personaflow.core.ids import normal_user_id
from personaflow.quality import contract

MAX_K = 100
LIVE_EVENT_TYPES = contract.EVENT_TYPES
# A live event may be stamped a little ahead of the server's clock (client skew), never more.
CLOCK_SKEW = timedelta(seconds=60)

Id = Annotated[
    str, Strict(), StringConstraints(strip_whitespace=True, min_length=1, max_length=contract.ID_MAX_LENGTH)
]
# A customer id in its normal form (personaflow/core/ids.py): `14911.0` and `014911` are `14911`, here as
# in the imports and in `personaflow forget`.
UserId = Annotated[Id, AfterValidator(normal_user_id)]
TopK = Annotated[int, Strict(), Field(ge=1, le=MAX_K, description=f"number of items wanted, 1..{MAX_K}")]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecommendRequest(_Request):
    user_id: UserId = Field(description="the shop's user id, e.g. u000042")
    k: TopK = 10
    exclude_purchased: Annotated[bool, Strict()] = Field(
        False,
        description="leave out items the user already bought (nightly history plus live purchases)",
    )
    category: Id | None = Field(None, description="only items of this catalogue category, e.g. toys")


class SimilarItemsRequest(_Request):
    item_id: Id = Field(description="a catalogue item id, e.g. i00042")
    k: TopK = 10


class ProfileRequest(_Request):
    user_id: UserId = Field(description="the shop's user id")


class EventRequest(_Request):
    user_id: UserId = Field(description="who did it")
    item_id: Id = Field(description="on which item")
    event_type: Literal["view", "cart", "purchase", "return"] = Field(description="what happened")
    quantity: Annotated[int, Strict()] = Field(
        1,
        ge=1,
        le=contract.MAX_QUANTITY,
        description=f"units (purchases and returns), 1..{contract.MAX_QUANTITY}",
    )
    price: Annotated[float, Strict()] | None = Field(
        None,
        ge=contract.MIN_PRICE,
        le=contract.MAX_PRICE,
        allow_inf_nan=False,
        description=f"unit price, {contract.MIN_PRICE}..{contract.MAX_PRICE:.0f} (the batch contract); "
        "default: the catalogue price of the item",
    )
    event_ts: Annotated[datetime, Strict()] | None = Field(
        None,
        description="when it happened (UTC; naive values are read as UTC); default: now. Live events "
        "only: it must fall on the server's current UTC day, so the next nightly run loads it",
    )
    session_id: Id | None = Field(None, description="the front end's session id; default: live-<user_id>")

    @field_validator("event_ts")
    @classmethod
    def _today_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        now = datetime.now(UTC)
        if value > now + CLOCK_SKEW:
            raise ValueError(f"is in the future (server time {now:%Y-%m-%d %H:%M:%S} UTC)")
        if value.date() != now.date():
            raise ValueError(f"must be on the current UTC day {now.date()} (live events only)")
        return value


class ScoredItem(BaseModel):
    item_id: str = Field(description="catalogue item id")
    score: float = Field(description="model score (higher is better) or popularity for a fallback")
    category: str | None = Field(None, description="the item's category, when the catalogue knows it")
    name: str | None = Field(None, description="the item's name (its description), when the shop has one")


ReasonSource = Literal["history", "co_purchase", "text", "neighbours", "segment", "popularity", "model"]


class RecommendedItem(ScoredItem):
    reason: str = Field(
        description="why, in words: 'bought 5 times, last 12 days ago', 'often bought with X, which you "
        "bought', 'similar name to X you bought', 'popular with Champions', ..."
    )
    reason_source: ReasonSource = Field(
        description="where the reason comes from: history = the user bought it (days with a purchase, "
        "last one counted to the nightly as-of day); co_purchase = a co-purchase rule with an item the "
        "user bought; text = a near name of an item the user bought; neighbours = customers with "
        "purchases like the user's bought it (TIFU-KNN); segment = a best seller of the user's RFM "
        "segment; popularity = a best seller of the shop; model = none of these, the model's own rank"
    )
    reason_item: str | None = Field(
        None, description="the item the user bought that a co_purchase or text reason names"
    )


class Recommendations(BaseModel):
    user_id: str = Field(description="the user asked about")
    items: list[RecommendedItem] = Field(description="best first; fewer than k when filters leave fewer")
    model_version: str = Field(description="the model (BentoML tag) that produced this answer")
    fallback: Literal["segment", "popularity"] | None = Field(
        None,
        description="set when the user is unknown to the model: 'segment' = the items most bought by "
        "users of the user's RFM segment (topped up with overall popularity; score = buyers), "
        "'popularity' = the overall popularity list (the user has no segment either)",
    )
    excluded: int = Field(0, description="items left out because the user already bought them")
    arm: Literal["control", "challenger"] | None = Field(
        None, description="the A/B arm that answered, while a test runs (personaflow abtest); else null"
    )


class SimilarItem(ScoredItem):
    source: Literal["co_purchase", "embedding", "text"] = Field(
        description="co_purchase: bought together (lift > 1; score = confidence, the share of the item's "
        "orders that hold this one); embedding: score = cosine of the "
        "model's item embeddings; text: an item the model does not know, score = cosine of the names"
    )


class SimilarItems(BaseModel):
    item_id: str = Field(description="the item asked about")
    items: list[SimilarItem] = Field(
        description="co-purchase rules first (lift > 1, at least 3 common orders, best confidence first: "
        "chosen over lift by benchmarks/similar_items.py), then embedding neighbours (best cosine first) "
        "up to k"
    )
    model_version: str = Field(description="the model whose embeddings were used")
    method: Literal["co_purchase_confidence_then_embedding_cosine"] = Field(
        "co_purchase_confidence_then_embedding_cosine", description="how the list is put together"
    )


class ReviewSummary(BaseModel):
    n_reviews: int = Field(description="reviews the customer wrote, as of the nightly run")
    mean_rating: float | None = Field(description="mean stars (None: the shop has no ratings)")
    mean_sentiment: float | None = Field(description="mean sentiment in [-1, 1] (model trained on the stars)")
    share_negative: float | None = Field(description="share of their reviews scored negative")
    last_review_sentiment: Literal["negative", "positive"] | None = Field(description="of the newest review")
    last_review_ts: str | None = Field(description="when the newest review was written (UTC)")
    top_complaint_aspects: list[str] = Field(description="up to 3 aspects complained about most, e.g. size")
    top_complaint_keywords: list[str] = Field(description="up to 3 learned complaint terms")
class Demographics(BaseModel):
    age_band: str = Field(description="young (< 35), middle-aged (35-54), older (55+) or unknown")
    income_band: str = Field(description="low (< 35K), mid (35-99K), high (100K+) income or unknown")
    household: str = Field(description="singles, couples, families or unknown")
    label: str = Field(description="readable, e.g. 'young families, mid income'; 'unknown' without a record")


class CampaignSummary(BaseModel):
    campaigns_reached: int = Field(
        description="campaigns that reached the customer, started by the as-of day"
    )
    campaigns_redeemed: int = Field(description="campaigns with at least one coupon redeemed")
    coupons_redeemed: int = Field(description="coupon redemptions")
    last_campaign_id: str | None = Field(description="the latest campaign that reached the customer")
    reached_by_running_campaign: bool = Field(description="a campaign running on the as-of day reached them")
    redeem_score: float | None = Field(description="P(redeem) if reached by the next campaign of its type")
    redeem_score_campaign_type: str | None = Field(description="the campaign type the score is for")
    coupon_departments: list[str] = Field(
        [], description="up to 3 departments the customer redeemed coupons on, most redemptions first "
        "(of the coupon's products bought on the redemption day; of all its products when none was found)"
    )
    coupon_products: list[str] = Field(
        [], description="up to 3 products bought with a coupon on its redemption day, most often first"
    )


class Profile(BaseModel):
    user_id: str = Field(description="the user")
    segment: str | None = Field(description="RFM segment name from the nightly run (None: live-only user)")
    segment_id: int | None = Field(
        None, description="K-means segment id from the nightly segments stage (None: not segmented yet)"
    )
    segment_label: str | None = Field(
        None, description="readable name of the K-means segment, e.g. 'recent regulars'"
    )
    persona_id: int | None = Field(
        None, description="behaviour persona id from the nightly segments stage (-1: no product bought yet)"
    )
    persona: str | None = Field(
        None,
        description="how the customer shops, e.g. 'bulk narrow-range buyers' (the segments report describes "
        "each persona and suggests an action; None: not profiled yet)",
    )
    persona_description: str | None = Field(
        None, description="what the persona's members do, with tonight's figures (None: no persona)"
    )
    persona_action: str | None = Field(
        None, description="one thing a marketer could do for this persona (None: no persona)"
    )
    churn_score: float | None = Field(
        None,
        description="churn model's probability that the user places no order within the churn horizon "
        "(nightly; None: not scored, e.g. never bought, or the log is shorter than the horizon)",
    )
    churn_risk: Literal["low", "medium", "high"] | None = Field(
        description="from churn_score when there is one (high >= 0.6, medium >= 0.3, else low); else the "
        "recency-score rule (1-2 high, 3 medium, 4-5 low); low after a live event since the nightly run"
    )
    churn_basis: Literal["model", "rule", "live"] | None = Field(
        None, description="what churn_risk rests on: the churn model, the recency rule, or live activity"
    )
    r_score: int | None = Field(description="recency score 1..5 (5 = most recent), nightly")
    f_score: int | None = Field(description="frequency score 1..5, nightly")
    m_score: int | None = Field(description="monetary score 1..5, nightly")
    recency_days: int | None = Field(description="days since last purchase as of the nightly run")
    frequency: int | None = Field(description="distinct purchase sessions, nightly")
    monetary: float | None = Field(description="revenue from the user, nightly plus live purchases")
    n_views: int = Field(description="views, nightly plus live")
    n_carts: int = Field(description="add-to-carts, nightly plus live")
    n_purchases: int = Field(description="purchase events, nightly plus live")
    n_returns: int = Field(description="returns received live since the nightly run")
    n_sessions: int | None = Field(description="sessions, nightly")
    favourite_categories: list[str] = Field(description="up to 3 categories the user bought most from")
    last_event_ts: str | None = Field(description="latest activity (UTC, YYYY-MM-DD HH:MM:SS)")
    live_events: int = Field(description="events received through POST /events since the nightly run")
    features_as_of: str | None = Field(description="the nightly run's as-of day the profile builds on")
    reviews: ReviewSummary | None = Field(
        None, description="their reviews: count, rating, sentiment, complaints (None: no reviews)"
    )
    demographics: Demographics | None = Field(
        None,
        description="age, income and household bands, point in time (None: the shop has no customer table)",
    )
    campaigns: CampaignSummary | None = Field(
        None, description="campaign history and redemption score (None: the shop has no campaign tables)"
    )


class EventAccepted(BaseModel):
    event_id: str = Field(description="id given to the event (also its id in raw.events)")
    batch_date: str = Field(description="the nightly batch that will load it (its UTC day)")
    landing_file: str = Field(description="the live landing file it was appended to (fsynced)")
    live_events: int = Field(description="the user's live events since the nightly run, this one included")
    duplicate: bool = Field(
        False,
        description="true: an event equal on every field (ts to the second, session, price...) was "
        "accepted earlier today; this one was not stored again and event_id is the earlier event's",
    )


class Metadata(BaseModel):
    model_version: str = Field(description="BentoML tag of the production model being served")
    trained_at: str | None = Field(description="when the model was saved (ISO, UTC)")
    promoted_at: str | None = Field(description="when the production pointer last moved (ISO, UTC)")
    metrics: dict[str, float | int | str | None] = Field(description="evaluation metrics saved with it")
    n_users: int = Field(description="users the model knows")
    n_items: int = Field(description="items the model ranks")
    features_as_of: str | None = Field(description="as-of day of the nightly features in the online store")
    max_k: int = Field(MAX_K, description="largest k accepted")
    worker_pid: int | None = Field(None, description="process id of the worker that answered")


Score = Annotated[float, Strict(), Field(ge=0, le=1)]
Count = Annotated[int, Strict(), Field(ge=0)]
Money = Annotated[float, Strict()]
Names = Annotated[list[Id], Field(max_length=50)]


class AudienceRequest(_Request):
    """An audience definition (personaflow/profiles/audiences.py AudienceSpec): every filter given must hold;
    a list is any-of."""

    name: Annotated[str, Strict(), StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")] = "adhoc"
    rfm_segments: Names = Field(default_factory=list, description="e.g. ['Champions', 'At Risk']")
    segment_labels: Names = Field(default_factory=list, description="K-means segment labels")
    personas: Names = Field(
        default_factory=list, description="behaviour persona names, e.g. ['bulk narrow-range buyers']"
    )
    min_churn_score: Score | None = None
    max_churn_score: Score | None = None
    min_recency_days: Count | None = None
    max_recency_days: Count | None = None
    min_frequency: Count | None = None
    max_frequency: Count | None = None
    min_monetary: Money | None = None
    max_monetary: Money | None = None
    countries: Names = Field(default_factory=list)
    bought_categories: Names = Field(default_factory=list, description="bought an item of one of these")
    bought_items: Names = Field(default_factory=list, description="bought one of these item ids")
    bought_text: Names = Field(default_factory=list, description="bought an item whose name has a word")
    last_review_sentiment: Literal["negative", "positive"] | None = Field(
        None, description="the customer's newest review was scored so"
    )
    min_share_negative_reviews: Score | None = None
    age_bands: Names = Field(default_factory=list, description="young, middle-aged, older, unknown")
    income_bands: Names = Field(default_factory=list, description="low/mid/high income, unknown")
    households: Names = Field(default_factory=list, description="singles, couples, families, unknown")
    demographic_labels: Names = Field(default_factory=list, description="e.g. 'young families, mid income'")
    min_redeem_score: Score | None = Field(None, description="P(redeem the next campaign of its type) >=")
    not_reached_by_running_campaign: Annotated[bool, Strict()] = Field(
        False, description="no campaign running now reached them"
    )
    limit: Annotated[int, Strict(), Field(ge=0, le=1000)] = Field(100, description="members listed, 0..1000")


class AudienceAnswer(BaseModel):
    audience: str = Field(description="the audience's name")
    as_of: str | None = Field(description="the night whose profiles were used")
    size: int = Field(description="customers in the audience")
    share: float = Field(description="size / customers")
    customers: int = Field(description="customers with a profile that night")
    monetary_total: float = Field(description="net revenue of the audience's customers")
    mean_recency_days: float | None = Field(description="mean days since the last purchase")
    rfm_segments: dict[str, int] = Field(description="the audience's five largest RFM segments")
    members: list[dict] = Field(description="the first `limit` members, best customers first")
