"""One edition run: due subscribers -> select -> render -> ledger -> send.

The run is idempotent and resumable. Each (subscriber, edition date) is written
to the ledger as `pending` before a backend sees it, `sending` while the backend
has it, and `sent` or `failed` after, so a second run sends only what is left
and a crash leaves `sending` as the only uncertain state. Subscribers are
streamed in chunks (select, render, send), so memory stays flat however many
there are.

With a `Claim` (Celery workers, see newsletter/workers.py) a chunk is claimed in
the ledger just before it is sent: only `pending` rows, or `sending` rows whose
lease ran out, are taken, so two workers never send the same edition and the
editions of a worker that died are taken over once its lease expires.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

from newsletter.config import INSECURE_DEV_KEY, Config
from newsletter.delivery import Backend, OutgoingMessage, create_backend
from newsletter.dkim_signing import Signer
from newsletter.feedback import feedback_url
from newsletter.message import build_message, make_message_id
from newsletter.models import Edition, Pick, Subscriber
from newsletter.relevance import Relevance
from newsletter.render import RenderedEdition, Renderer, RenderSettings
from newsletter.selection import PaperIndex, select
from newsletter.store import LedgerEntry, Store
from newsletter.unsubscribe import unsubscribe_url


TEMPLATE_RECHECK_SECONDS = 2.0  # a send run looks at template files about once per chunk, not per edition


class MissingSecret(Exception):
    """The unsubscribe signing key is not set where it must be."""


def local_today(subscriber: Subscriber, now: datetime | None = None) -> date:
    """The subscriber's current date in their own time zone."""
    return (now or datetime.now(subscriber.zone)).astimezone(subscriber.zone).date()


def signing_key(config: Config, *, public: bool = False) -> bytes:
    """The unsubscribe key from the environment.

    Without it, a backend that delivers real mail (`Backend.real_mail`: smtp, any
    plugin) or a `public` endpoint (`serve`) is refused: links signed with the
    published development key could be forged by anyone. Local backends (file,
    mbox, console, memory) use that development key.
    """
    from newsletter.delivery import get_backend_class

    key = config.secret_key()
    if key is not None:
        return key
    variable = config.newsletter.secret_env
    hint = f"export {variable}=$(python -c 'import secrets; print(secrets.token_hex(32))')"
    if public:
        raise MissingSecret(f"{variable} is not set: the unsubscribe endpoint checks links with this secret key ({hint})")
    if get_backend_class(config.delivery.backend).real_mail:
        raise MissingSecret(
            f"{variable} is not set: real mail (backend {config.delivery.backend!r}) needs a secret key for "
            f"unsubscribe links ({hint})"
        )
    return INSECURE_DEV_KEY


class EditionBuilder:
    """Selects and renders editions; the one code path shared by send, render and preview."""

    def __init__(self, config: Config, store: Store, *, key: bytes | None = None, recheck_seconds: float = 0.0):
        """`recheck_seconds`: how long compiled templates are trusted before their files are looked at again."""
        self.config = config
        self.store = store
        self.key = key if key is not None else signing_key(config)
        self.sender_address = config.newsletter.sender_address  # parsed once, not per message
        self.renderer = Renderer(
            RenderSettings(
                newsletter_name=config.newsletter.name,
                base_url=config.newsletter.base_url,
                address=config.newsletter.address,
                subject=config.model.render.subject,
                templates_dir=config.templates_dir,
                language=config.model.render.language,
            ),
            recheck_seconds=recheck_seconds,
        )
        self._indexes: dict[tuple[date, int], PaperIndex] = {}
        self.relevance = Relevance(store, config.model.selection.embedder)
        self.signer = Signer.from_config(config)  # raises DkimError when [dkim] is set but its key cannot be used

    def index(self, day: date, max_age_days: int) -> PaperIndex:
        """The papers an edition dated `day` may pick from, indexed once per (date, age window)."""
        key = (day, max_age_days)
        if key not in self._indexes:
            papers = self.store.papers(since=day - timedelta(days=max_age_days), until=day)
            self._indexes[key] = PaperIndex(papers, day)
        return self._indexes[key]

    def select(self, subscriber: Subscriber, day: date, already_sent: set[str] | None = None) -> list[Pick]:
        """Fresh picks for one subscriber and date (no ledger change)."""
        sent = None if already_sent is None else {subscriber.email: already_sent}
        return self.select_many([subscriber], day, sent)[subscriber.email]

    def select_many(
        self, subscribers: list[Subscriber], day: date, sent: dict[str, set[str]] | None = None
    ) -> dict[str, list[Pick]]:
        """Fresh picks for several subscribers (no ledger change); their similar rankings are scored together."""
        emails = [s.email for s in subscribers]
        if sent is None:
            sent = self.store.sent_paper_ids(emails, before=day)
        feedback = self.store.feedback(emails)
        similar: dict[str, list[Pick]] = {}
        for max_age_days in sorted({s.max_age_days for s in subscribers}):
            group = [s for s in subscribers if s.max_age_days == max_age_days]
            similar.update(self.relevance.similar_picks(group, self.index(day, max_age_days), sent, feedback))
        return {
            s.email: select(
                s,
                self.index(day, s.max_age_days),
                already_sent=sent.get(s.email, set()),
                similar=similar.get(s.email),
                has_positives=any(item.kind == "more" for item in feedback.get(s.email, ())),
            )
            for s in subscribers
        }

    def picks_from_ledger(self, entry: LedgerEntry) -> list[Pick]:
        """The picks an earlier run recorded, so a resend carries exactly the same edition."""
        papers = self.store.get_papers(entry.paper_ids)
        return [
            Pick(paper=papers[item["id"]], score=item["score"], reasons=list(item["reasons"]))
            for item in entry.picks
            if item["id"] in papers
        ]

    def build(self, subscriber: Subscriber, day: date, picks: list[Pick]) -> tuple[Edition, bytes]:
        """Render one edition and serialise it as an RFC 5322 message, DKIM-signed when `[dkim]` is set.

        Every backend, the preview and `render` get these bytes: this is the one place messages are made.
        """
        newsletter = self.config.newsletter
        base = newsletter.base_url
        link = unsubscribe_url(base, subscriber.email, self.key)
        votes = [tuple(feedback_url(base, subscriber.email, pick.paper.id, kind, self.key) for kind in ("more", "fewer"))
                 for pick in picks]
        rendered: RenderedEdition = self.renderer.render(subscriber, day, picks, unsubscribe_url=link, feedback_links=votes)
        message_id = make_message_id(subscriber.email, day, self.config.newsletter.domain)
        data = build_message(
            sender=self.config.newsletter.sender,
            to_name=subscriber.name,
            to_email=subscriber.email,
            subject=rendered.subject,
            html=rendered.html,
            text=rendered.text,
            message_id=message_id,
            unsubscribe_url=link,
            list_name=newsletter.name,
            list_id=newsletter.list_identifier,
            unsubscribe_mailto=newsletter.unsubscribe_mailto,
            feedback_id=newsletter.feedback_id,
        )
        if self.signer is not None:
            data = self.signer.sign(data)
        edition = Edition(subscriber, day, picks, rendered.subject, rendered.html, rendered.text, message_id)
        return edition, data

    def edition(self, subscriber: Subscriber, day: date) -> tuple[Edition, bytes] | None:
        """What `send` would deliver to this subscriber for `day` (recorded picks if any), or None."""
        entry = self.store.ledger_entries(day, [subscriber.email]).get(subscriber.email)
        picks = self.picks_from_ledger(entry) if entry else self.select(subscriber, day)
        return self.build(subscriber, day, picks) if picks else None


@dataclass
class RunSummary:
    """What one `send` run did, for the summary table and the scheduler's log line."""

    dry_run: bool = False
    skip_empty: bool = True
    subscribers: int = 0
    sent: int = 0
    failed: int = 0
    rendered: int = 0
    empty: list[str] = field(default_factory=list)
    already_sent: int = 0
    suppressed: int = 0
    not_today: int = 0
    previously_failed: int = 0
    uncertain: int = 0
    held_for_review: int = 0
    claimed_elsewhere: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    dates: set[date] = field(default_factory=set)
    processed: int = 0  # subscribers dealt with so far, for progress bars


ProgressCallback = Callable[[RunSummary], None]


@dataclass(frozen=True)
class Claim:
    """Send only what `worker` claims in the ledger, holding each claim for `lease_seconds`."""

    worker: str
    lease_seconds: float


def run_edition(
    config: Config,
    store: Store,
    subscribers: Iterable[Subscriber],
    *,
    day: date | None = None,
    only: str | None = None,
    dry_run: bool = False,
    resend_uncertain: bool = True,
    retry_failed: bool = False,
    skip_empty: bool = True,
    backend: Backend | None = None,
    on_progress: ProgressCallback | None = None,
    claim: Claim | None = None,
) -> RunSummary:
    """Send every due subscriber their edition for `day` (default: each one's local today).

    A subscriber with no new picks gets no email, unless `skip_empty` is False
    (then a short "no new papers today" edition).
    """
    summary = RunSummary(dry_run=dry_run, skip_empty=skip_empty)
    builder = EditionBuilder(config, store, recheck_seconds=TEMPLATE_RECHECK_SECONDS)
    owns_backend = backend is None and not dry_run
    if owns_backend:
        backend = create_backend(config.delivery.backend, config.delivery.backend_options, base_dir=config.base_dir)
        backend.open()
    try:
        due = due_chunks(store, subscribers, summary, day=day, only=only, size=config.delivery.chunk_size)
        for edition_day, chunk in due:
            _send_chunk(
                builder, store, chunk, edition_day, backend, summary,
                dry_run=dry_run, resend_uncertain=resend_uncertain, retry_failed=retry_failed, claim=claim,
            )
            if on_progress:
                on_progress(summary)
    finally:
        if owns_backend:
            backend.close()
    return summary


def due_chunks(
    store: Store, subscribers: Iterable[Subscriber], summary: RunSummary, *, day: date | None, only: str | None, size: int
) -> Iterator[tuple[date, list[Subscriber]]]:
    """Stream the due subscribers as (edition date, chunk), never holding them all at once.

    Counts the ones that are not due (inactive, unsubscribed, not a sending day) in `summary`.
    """
    suppressed = store.suppressed()
    waiting: dict[date, list[Subscriber]] = {}
    for subscriber in subscribers:
        if (only and subscriber.email != only.strip().lower()) or not subscriber.active:
            continue
        summary.subscribers += 1
        if subscriber.email in suppressed:
            summary.suppressed += 1
            summary.processed += 1
            continue
        edition_day = day or local_today(subscriber)
        if not subscriber.sends_on(edition_day):
            summary.not_today += 1
            summary.processed += 1
            continue
        summary.dates.add(edition_day)
        chunk = waiting.setdefault(edition_day, [])
        chunk.append(subscriber)
        if len(chunk) >= size:
            yield edition_day, waiting.pop(edition_day)
    yield from sorted(waiting.items())


def _send_chunk(
    builder: EditionBuilder,
    store: Store,
    chunk: list[Subscriber],
    day: date,
    backend: Backend | None,
    summary: RunSummary,
    *,
    dry_run: bool,
    resend_uncertain: bool,
    retry_failed: bool,
    claim: Claim | None = None,
) -> None:
    summary.processed += len(chunk)
    emails = [s.email for s in chunk]
    entries = store.ledger_entries(day, emails)
    sent_before = store.sent_paper_ids(emails, before=day)
    new_editions, messages, held = [], [], []
    fresh = builder.select_many([s for s in chunk if s.email not in entries], day, sent_before)
    for subscriber in chunk:
        entry = entries.get(subscriber.email)
        state = entry.state if entry else None
        if state == "sent":
            summary.already_sent += 1
            continue
        if state == "review" or (state == "failed" and not retry_failed):
            summary.previously_failed += state == "failed"
            summary.held_for_review += state == "review"
            continue
        if state == "sending" and claim is None:
            summary.uncertain += 1
            if not resend_uncertain:
                held.append((subscriber.email, "review", "uncertain: a run stopped while sending; check before resending"))
                continue
        if entry:
            picks = builder.picks_from_ledger(entry)
        else:
            picks = fresh[subscriber.email]
        if not picks:
            summary.empty.append(subscriber.email)
            if summary.skip_empty:
                continue
        edition, data = builder.build(subscriber, day, picks)
        summary.rendered += 1
        if entry is None:
            new_editions.append((subscriber.email, day, edition.message_id, picks, edition.subject))
        messages.append(
            OutgoingMessage(
                message_id=edition.message_id,
                sender=builder.sender_address,
                recipient=subscriber.email,
                data=data,
            )
        )
    if dry_run:
        return
    store.mark(day, held)
    store.record_pending(new_editions)
    if messages and claim is not None:
        fresh = {email: [pick.paper.id for pick in picks] for email, _, _, picks, _ in new_editions}
        messages = _claim_messages(builder, store, chunk, day, messages, fresh, claim, summary)
    if not messages:
        return
    if claim is None:
        store.mark(day, [(m.recipient, "sending", None) for m in messages])
    results = backend.send_messages(messages)
    outcomes = []
    for message, result in zip(messages, results, strict=True):
        outcomes.append((message.recipient, "sent" if result.ok else "failed", result.reply))
        if result.ok:
            summary.sent += 1
        else:
            summary.failed += 1
            summary.failures.append((message.recipient, result.reply))
    store.mark(day, outcomes, count_attempt=True)


def _claim_messages(
    builder: EditionBuilder,
    store: Store,
    chunk: list[Subscriber],
    day: date,
    messages: list[OutgoingMessage],
    fresh: dict[str, list[str]],
    claim: Claim,
    summary: RunSummary,
) -> list[OutgoingMessage]:
    """The messages whose ledger rows this worker claimed, each carrying the edition the ledger recorded."""
    got = set(store.claim(day, [m.recipient for m in messages], worker=claim.worker, lease_seconds=claim.lease_seconds))
    summary.claimed_elsewhere += len(messages) - len(got)
    claimed = [m for m in messages if m.recipient in got]
    # a worker running the same shard at the same time may have recorded its picks first: the ledger wins
    recorded = store.ledger_entries(day, [m.recipient for m in claimed if m.recipient in fresh])
    by_email = {s.email: s for s in chunk}
    for index, message in enumerate(claimed):
        entry = recorded.get(message.recipient)
        if entry is not None and entry.paper_ids != fresh[message.recipient]:
            _, data = builder.build(by_email[message.recipient], day, builder.picks_from_ledger(entry))
            claimed[index] = replace(message, data=data)
    return claimed


def due_emails(store: Store, subscribers: list[Subscriber], day: date) -> list[str]:
    """The subscribers due on `day`: active, not unsubscribed, and `day` is one of their sending days."""
    suppressed = store.suppressed()
    return [s.email for s in subscribers if s.active and s.email not in suppressed and s.sends_on(day)]


def is_done(store: Store, subscribers: list[Subscriber], day: date) -> bool:
    """Whether every active, unsuppressed subscriber due on `day` has a settled ledger row."""
    emails = due_emails(store, subscribers, day)
    entries = store.ledger_entries(day, emails)
    return all(email in entries and entries[email].state in ("sent", "failed", "review") for email in emails)

