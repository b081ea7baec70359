"""The paper store and the delivery ledger. All SQL lives in this package (SQLAlchemy Core).

One module per table family: `schema` (tables, versions), `engine` (opening,
migrations, SQL helpers), `papers`, `ledger` (deliveries and sent papers, claims),
`suppressions`, `summaries`, `fetches`, `vectors` (paper embeddings), `feedback` (clicks from the
email) and `subscriber_files` (parsed subscriber files). `Store` puts them together behind plain methods.
"""

from __future__ import annotations

from newsletter.store.engine import StoreBase, engine_url
from newsletter.store.feedback import FEEDBACK_KINDS, Feedback, FeedbackMixin
from newsletter.store.fetches import FetchesMixin, FetchStatus
from newsletter.store.ledger import HELD, LEDGER_STATES, SETTLED, EditionRecord, LedgerEntry, LedgerMixin, Outcome, State
from newsletter.store.papers import IngestStats, PaperSet, PapersMixin, _paper_row, merge_papers
from newsletter.store.schema import (
    SCHEMA_VERSION,
    bounces_table,
    deliveries_table,
    metadata,
    papers_table,
    sent_papers_table,
    suppressions_table,
)
from newsletter.store.subscriber_files import SubscriberFilesMixin
from newsletter.store.summaries import SummariesMixin
from newsletter.store.suppressions import BounceRecord, SuppressionsMixin
from newsletter.store.vectors import VectorsMixin

__all__ = [
    "BounceRecord",
    "FEEDBACK_KINDS",
    "Feedback",
    "HELD",
    "LEDGER_STATES",
    "SETTLED",
    "EditionRecord",
    "Outcome",
    "State",
    "SCHEMA_VERSION",
    "FetchStatus",
    "IngestStats",
    "LedgerEntry",
    "PaperSet",
    "Store",
    "_paper_row",
    "bounces_table",
    "deliveries_table",
    "engine_url",
    "merge_papers",
    "metadata",
    "papers_table",
    "sent_papers_table",
    "suppressions_table",
]


class Store(
    PapersMixin,
    LedgerMixin,
    SuppressionsMixin,
    VectorsMixin,
    FeedbackMixin,
    SubscriberFilesMixin,
    SummariesMixin,
    FetchesMixin,
    StoreBase,
):
    """Papers, the ledger, suppressions, paper vectors, feedback, parsed subscriber files, summaries and fetch records."""
