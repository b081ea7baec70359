"""One edition run: due subscribers -> select -> render -> claim -> send -> record.

Every sender (`send`, `run`'s jobs, Celery workers) goes through the same path:
a chunk's editions are built, then claimed in the ledger under this run's owner
and lease (new rows are inserted already claimed), and only what was claimed is
handed to the backend. Each outcome is recorded as the backend reports it
(newsletter/recorder.py), and a heartbeat renews the lease while the run lives,
so two runs at once split the work instead of doubling it, and a run that dies
leaves only its in-flight messages in doubt. The ledger's rules are in
newsletter/store/ledger.py. Subscribers are streamed in chunks, so memory stays
flat however many there are.

One subscriber's broken edition (a selection, rendering or message error) is
recorded `failed` with the reason and the run goes on.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import socket
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from newsletter.budget import fit
from newsletter.config import INSECURE_DEV_KEY, Config
from newsletter.delivery import Backend, DeliveryStopped, OutgoingMessage, create_backend
from newsletter.dkim_signing import Signer
from newsletter.feedback import feedback_links
from newsletter.links import archive_url, view_url
from newsletter.message import build_message, make_message_id
from newsletter.models import Edition, Pick, Subscriber
from newsletter.processes import pid_gone
from newsletter.recorder import Heartbeat, Recorder
from newsletter.relevance import Relevance
from newsletter.render import EmptyNote, RenderedEdition, Renderer, RenderSettings, format_date, keywords
from newsletter.selection import BATCH_PROFILES, PaperIndex, select_many
from newsletter.store import LedgerEntry, Store
from newsletter.store.ledger import HELD, SETTLED, EditionRecord, Outcome, State, not_due
from newsletter.summaries import Summariser
from newsletter.unsubscribe import unsubscribe_url

log = logging.getLogger(__name__)


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
    """Selects and renders editions; the one code path shared by send, render, preview and the web pages."""

    def __init__(self, config: Config, store: Store, *, key: bytes | None = None, recheck_seconds: float = 0.0):
        """`recheck_seconds`: how long compiled templates are trusted before their files are looked at again."""
        self.config = config
        self.store = store
        self.key = key if key is not None else signing_key(config)
        newsletter = config.newsletter
        self.sender_address = newsletter.sender_address  # parsed once, not per message
        self.renderer = Renderer(
            RenderSettings(
                newsletter_name=newsletter.name,
                base_url=newsletter.base_url,
                address=newsletter.address,
                subject=config.model.render.subject,
                templates_dir=config.templates_dir,
                language=config.model.render.language,
                logo_url=newsletter.logo_url,
                accent_color=newsletter.accent_color,
            ),
            recheck_seconds=recheck_seconds,
        )
        self.summariser = Summariser(config.model.summaries, store)
        self._indexes: dict[tuple[date, int, bool], PaperIndex] = {}
        self.relevance = Relevance(store, config.model.selection.embedder)
        self.keyword_run_size = 0  # keyword and trending readers the run selects (in chunks): from BATCH_PROFILES on, compiled
        self.signer = Signer.from_config(config)  # raises DkimError when [dkim] is set but its key cannot be used

    def index(self, day: date, max_age_days: int, *, weekly: bool = False) -> PaperIndex:
        """The papers an edition dated `day` may pick from, indexed once per (date, age window, cadence).

        A weekly index ranks trending papers by their upvotes alone: a week's papers compete without daily decay.
        """
        key = (day, max_age_days, weekly)
        if key not in self._indexes:
            papers = self.store.papers(since=day - timedelta(days=max_age_days), until=day)
            self._indexes[key] = PaperIndex(papers, day, decay=not weekly)
        return self._indexes[key]

    def index_for(self, subscriber: Subscriber, day: date) -> PaperIndex:
        return self.index(day, subscriber.window_days, weekly=subscriber.weekly)

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
        for window, weekly in sorted({(s.window_days, s.weekly) for s in subscribers}):
            group = [s for s in subscribers if (s.window_days, s.weekly) == (window, weekly)]
            similar.update(self.relevance.similar_picks(group, self.index(day, window, weekly=weekly), sent, feedback))
        positives = {email for email, items in feedback.items() if any(item.kind == "more" for item in items)}
        compiled = self.keyword_run_size >= BATCH_PROFILES
        groups: dict[int, tuple[PaperIndex, list[Subscriber]]] = {}
        for s in subscribers:
            index = self.index_for(s, day)
            groups.setdefault(id(index), (index, []))[1].append(s)
        picks = {}
        for index, group in groups.values():
            chosen = select_many(index, group, sent, similar, positives, compiled=compiled)
            picks.update(zip([s.email for s in group], chosen))
        return {s.email: picks[s.email] for s in subscribers}

    def picks_from_ledger(self, entry: LedgerEntry) -> list[Pick]:
        """The picks an earlier run recorded, so a resend carries exactly the same edition.

        Those the size budget left out come last, as they did: the budget cuts them again.
        """
        papers = self.store.get_papers([item["id"] for item in entry.picks])
        return [
            Pick(paper=papers[item["id"]], score=item["score"], reasons=list(item["reasons"]))
            for item in entry.picks
            if item["id"] in papers
        ]

    def build(
        self, subscriber: Subscriber, day: date, picks: list[Pick], message_id: str | None = None, *,
        note: EmptyNote | None = None, make_summaries: bool = True, budget: bool = True,
    ) -> tuple[Edition, bytes]:
        """Render one edition and serialise it as an RFC 5322 message, DKIM-signed when `[dkim]` is set.

        The edition's `picks` are those that fit the size budget (the ones to record as sent), its
        `left_out` the rest; with `budget` False (the "View in browser" page) every pick is shown.

        Every backend, the preview and `render` get these bytes: this is the one place messages are made.
        A resend passes the recorded Message-ID. With `make_summaries` False (the web pages) only
        stored TL;DRs are used, never the endpoint.
        """
        newsletter = self.config.newsletter
        base = newsletter.base_url
        link = unsubscribe_url(base, subscriber.email, self.key)
        summaries = self.summariser.summaries([pick.paper for pick in picks], make=make_summaries) if picks else {}
        web = {"view_url": view_url(base, subscriber.email, day, self.key),
               "archive_url": archive_url(base, subscriber.email, self.key)}

        def render(some: list[Pick], omitted: int) -> RenderedEdition:
            votes = feedback_links(base, subscriber.email, [pick.paper.id for pick in some], self.key)
            return self.renderer.render(
                subscriber, day, some, unsubscribe_url=link, summaries=summaries, note=note, feedback_links=votes,
                omitted=omitted, **web,
            )

        if budget:
            fitted = fit(render, picks, who=f"{subscriber.email} {day}")  # the HTML size budget (newsletter/budget.py)
            rendered, left_out, picks = fitted.edition, picks[len(fitted.picks):], fitted.picks
        else:
            rendered, left_out = render(picks, 0), []
        message_id = message_id or self.message_id(subscriber, day)
        data = build_message(
            sender=self.config.newsletter.sender,
            to_name=subscriber.name,
            to_email=subscriber.email,
            subject=rendered.subject,
            html=rendered.html_utf8,
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
        edition = Edition(subscriber, day, picks, rendered.subject, rendered.html, rendered.text, message_id, left_out)
        return edition, data

    def message_id(self, subscriber: Subscriber, day: date) -> str:
        return make_message_id(subscriber.email, day, self.config.newsletter.domain)

    def edition(self, subscriber: Subscriber, day: date) -> tuple[Edition, bytes] | None:
        """What `send` would deliver to this subscriber for `day` (recorded picks if any), or None."""
        entry = self.recorded_entry(subscriber, day)
        picks = self.picks_from_ledger(entry) if entry else self.select(subscriber, day)
        return self.build(subscriber, day, picks, entry.message_id if entry else None) if picks else None

    def recorded_entry(self, subscriber: Subscriber, day: date) -> LedgerEntry | None:
        """The ledger's edition for this subscriber and date; None when there is none yet (no row, or only `queued`)."""
        entry = self.store.ledger_entries(day, [subscriber.email]).get(subscriber.email)
        return None if entry is None or entry.state == State.QUEUED else entry

    def recorded(self, subscriber: Subscriber, day: date) -> tuple[Edition, bytes] | None:
        """The edition the ledger recorded for this subscriber and date, rebuilt from its picks; None if there is none.

        This is the "View in browser" page: the same picks, renderer and stored summaries as the mail,
        and the picks the size budget left out of it too (a web page is not clipped at 102 KB).
        """
        entry = self.recorded_entry(subscriber, day)
        if entry is None:
            return None
        picks = self.picks_from_ledger(entry)
        note = None if picks else self.empty_note(subscriber, day, set())
        return self.build(subscriber, day, picks, note=note, make_summaries=False, budget=False)

    def empty_note(self, subscriber: Subscriber, day: date, already_sent: set[str]) -> EmptyNote:
        """Why `subscriber` has nothing on `day`: no new papers, none matched, and any source whose fetches fail."""
        period = "this week" if subscriber.weekly else "today"
        fresh = self.index_for(subscriber, day).candidates(subscriber.window_days, already_sent)
        reasons = []
        if not fresh:
            last = self.store.editions_of(subscriber.email, before=day, limit=1)
            since = f" since your last edition on {format_date(last[0].edition_date)}" if last else ""
            reasons.append(f"There are no new papers in the store{since}, so there is nothing to send {period}.")
        else:
            wanted = keywords(subscriber)
            what = "your keywords (" + ", ".join(wanted) + ")" if wanted else "your profile"
            noun = "paper" if fresh == 1 else "papers"
            reasons.append(f"None of the {fresh} new {noun} matched {what} {period}.")
        statuses = self.store.fetch_statuses()
        for source in self.config.model.sources.fetch:
            status = statuses.get(source)
            if status is not None and status.failing_since is not None:
                when = f"{format_date(status.failing_since.date())} {status.failing_since:%H:%M} UTC"
                error = f" ({status.last_error})" if status.last_error else ""
                reasons.append(f"Fetching papers from {source} has failed since {when}{error}.")
        return EmptyNote(tuple(reasons))

    def wants_note(self, subscriber: Subscriber, day: date, skip_empty: bool) -> bool:
        """Whether an empty day gets a note: the subscriber's `empty` (else `[schedule] skip_empty`),
        and never two notes in a row."""
        empty = subscriber.empty or ("skip" if skip_empty else "note")
        if empty == "skip":
            return False
        previous = self.store.editions_of(subscriber.email, before=day, limit=1)
        return not previous or bool(previous[0].picks)

    def close(self) -> None:
        self.summariser.close()


@dataclass
class RunSummary:
    """What one `send` run did, for the summary table and the scheduler's log line."""

    dry_run: bool = False
    skip_empty: bool = True
    subscribers: int = 0
    sent: int = 0
    failed: int = 0
    rendered: int = 0
    empty: list[str] = field(default_factory=list)  # no picks
    notes: list[str] = field(default_factory=list)  # of those, the ones sent a short note saying why
    already_sent: int = 0
    suppressed: int = 0
    not_today: int = 0
    previously_failed: int = 0
    uncertain: int = 0  # ended `uncertain` in this run (maybe delivered): released only on request
    held: int = 0  # `uncertain` or `review` from before, left alone (`send --resend-uncertain`)
    taken_over: int = 0  # claimed by a run that died (lease expired), sent again with the same Message-ID
    claimed_elsewhere: int = 0  # held or settled by another live run meanwhile
    failures: list[tuple[str, str]] = field(default_factory=list)
    uncertain_rows: list[tuple[str, str]] = field(default_factory=list)
    dates: set[date] = field(default_factory=set)
    processed: int = 0  # subscribers dealt with so far, for progress bars
    stopped: str | None = None  # why the run stopped early (a failure no retry fixes); editions left pending


ProgressCallback = Callable[[RunSummary], None]


@functools.cache
def _machine() -> str:
    """This host's name and boot: a process id means the same process only under both."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        boot = "-"
    return f"{socket.gethostname()}:{boot}"


def new_owner(role: str) -> str:
    """A name for one run's claims, unique per call: `role@host:boot/pid/random`."""
    return f"{role}@{_machine()}/{os.getpid()}/{secrets.token_hex(3)}"


def owner_gone(owner: str | None) -> bool:
    """Whether `owner` was a process on this machine, since boot, that no longer exists.

    Its claims need not wait for their lease to run out (a rerun right after
    kill -9 takes over at once). Owners on other machines are never judged here.
    """
    if not owner or "@" not in owner:
        return False
    machine, _, rest = owner.partition("@")[2].partition("/")
    pid = rest.partition("/")[0]
    if machine != _machine() or not pid.isdigit():
        return False
    return pid_gone(int(pid))


@dataclass(frozen=True)
class Claim:
    """Who claims the editions a run sends (`owner`), and for how long each claim holds without a heartbeat."""

    owner: str
    lease_seconds: float = 60.0


def run_edition(
    config: Config,
    store: Store,
    subscribers: Iterable[Subscriber],
    *,
    day: date | None = None,
    only: str | None = None,
    dry_run: bool = False,
    retry_failed: bool = False,
    hold_expired: bool = False,
    skip_empty: bool = True,
    backend: Backend | None = None,
    on_progress: ProgressCallback | None = None,
    claim: Claim | None = None,
) -> RunSummary:
    """Send every due subscriber their edition for `day` (default: each one's local today).

    A subscriber with no new picks gets no email, unless their `empty = "note"` (or,
    for those who do not say, `skip_empty` is False): then a short note saying why,
    never two in a row. Editions are claimed for
    `claim` (default: a new owner for this call, `[delivery] lease_seconds`).
    `hold_expired`: editions a dead run held become `uncertain` instead of being
    sent again. When the backend raises `DeliveryStopped`, the run stops at once
    (`summary.stopped` says why) and what was not attempted is left `pending`.
    """
    summary = RunSummary(dry_run=dry_run, skip_empty=skip_empty)
    builder = EditionBuilder(config, store, recheck_seconds=TEMPLATE_RECHECK_SECONDS)
    if isinstance(subscribers, Sized):  # a big run ranks every chunk with the compiled loops
        builder.relevance.run_size = sum(1 for s in subscribers if s.likes_library)
        builder.keyword_run_size = len(subscribers) - builder.relevance.run_size
    claim = claim or Claim(new_owner("send"), config.delivery.lease_seconds)
    owns_backend = backend is None and not dry_run
    if owns_backend:
        backend = create_backend(config.delivery.backend, config.delivery.backend_options, base_dir=config.base_dir)
        backend.open()
    try:
        with Heartbeat(store, claim.owner, claim.lease_seconds) as heartbeat:
            for edition_day, chunk in due_chunks(store, subscribers, summary, day=day, only=only, size=config.delivery.chunk_size):
                heartbeat.days.add(edition_day)
                _send_chunk(
                    builder, store, chunk, edition_day, backend, summary, claim,
                    dry_run=dry_run, retry_failed=retry_failed, hold_expired=hold_expired,
                )
                if on_progress:
                    on_progress(summary)
                if summary.stopped:
                    break
    finally:
        builder.close()
        if owns_backend:
            backend.close()
    return summary


def due_chunks(
    store: Store, subscribers: Iterable[Subscriber], summary: RunSummary, *, day: date | None, only: str | None, size: int
) -> Iterator[tuple[date, list[Subscriber]]]:
    """Stream the due subscribers as (edition date, chunk), never holding them all at once.

    Counts the ones that are not due (unsubscribed, not a sending day) in `summary`; inactive ones are not counted.
    """
    suppressed = store.suppressed()
    waiting: dict[date, list[Subscriber]] = {}
    for subscriber in subscribers:
        if (only and subscriber.email != only.strip().lower()) or not subscriber.active:
            continue
        summary.subscribers += 1
        edition_day = day or local_today(subscriber)
        reason = not_due(subscriber, edition_day, suppressed)
        if reason is not None:
            summary.suppressed += reason == "unsubscribed"
            summary.not_today += reason == "not a sending day"
            summary.processed += 1
            continue
        summary.dates.add(edition_day)
        chunk = waiting.setdefault(edition_day, [])
        chunk.append(subscriber)
        if len(chunk) >= size:
            yield edition_day, waiting.pop(edition_day)
    yield from sorted(waiting.items())


@dataclass
class _Built:
    subscriber: Subscriber
    record: EditionRecord
    message: OutgoingMessage


def _send_chunk(
    builder: EditionBuilder,
    store: Store,
    chunk: list[Subscriber],
    day: date,
    backend: Backend | None,
    summary: RunSummary,
    claim: Claim,
    *,
    dry_run: bool,
    retry_failed: bool,
    hold_expired: bool,
) -> None:
    summary.processed += len(chunk)
    entries = store.ledger_entries(day, [s.email for s in chunk])
    # in a Celery shard, not built yet: built and claimed like an edition with no row (whoever claims first sends it)
    queued = {email for email, entry in entries.items() if entry.state == State.QUEUED}
    entries = {email: entry for email, entry in entries.items() if email not in queued}
    now = datetime.now(timezone.utc)
    candidates = []
    for subscriber in chunk:
        entry = entries.get(subscriber.email)
        state = entry.state if entry else None
        if state == State.SENT:
            summary.already_sent += 1
        elif state in HELD:
            summary.held += 1
        elif state == State.FAILED and not retry_failed:
            summary.previously_failed += 1
        elif entry is not None and entry.held_by_other(claim.owner, now) and not owner_gone(entry.claimed_by):
            summary.claimed_elsewhere += 1
        else:
            candidates.append(subscriber)
    built, broken = _build_all(builder, store, candidates, entries, day, summary)
    if dry_run:
        return
    if broken:
        store.record_failed([record for record, _ in broken], [reason for _, reason in broken])
    broken_emails = {record.email for record, _ in broken}
    nothing = [s.email for s in candidates if s.email in queued and s.email not in built and s.email not in broken_emails]
    if nothing:  # no picks and no note: no edition, as if never queued
        store.drop_queued(day, nothing)
    if not built:
        return
    fresh = [item.record for email, item in built.items() if email not in entries]
    dead = {e.claimed_by for e in entries.values() if e.held_by_other(claim.owner, now) and owner_gone(e.claimed_by)}
    got = store.claim(
        day, [email for email in built if email in entries], owner=claim.owner, lease_seconds=claim.lease_seconds,
        fresh=fresh, retry_failed=retry_failed, hold_expired=hold_expired, dead_owners=dead,
    )
    summary.claimed_elsewhere += len(got.held_elsewhere) + len(got.settled)
    summary.taken_over += len(got.taken_over)
    summary.uncertain += len(got.expired_to_uncertain)
    # another run recorded some of the editions first (then stopped): the ledger's edition is the one sent
    claimed = set(got.emails)
    recorded = store.ledger_entries(day, [r.email for r in fresh if r.email in claimed and r.email not in got.inserted])
    messages = []
    for email in got.emails:
        item = built[email]
        if email in recorded:
            entry = recorded[email]
            _, data = builder.build(item.subscriber, day, builder.picks_from_ledger(entry), entry.message_id)
            item.message = OutgoingMessage(entry.message_id, item.message.sender, email, data)
        messages.append(item.message)
    if messages:
        _deliver(store, backend, day, messages, claim, summary)


def _build_all(
    builder: EditionBuilder, store: Store, candidates: list[Subscriber], entries: dict[str, LedgerEntry], day: date,
    summary: RunSummary,
) -> tuple[dict[str, _Built], list[tuple[EditionRecord, str]]]:
    """Select (or reuse the recorded picks), render and serialise each edition; one broken edition breaks only itself."""
    new = [s for s in candidates if s.email not in entries]
    sent_before = store.sent_paper_ids([s.email for s in new], before=day) if new else {}
    try:
        selected = builder.select_many(new, day, sent_before) if new else {}
    except Exception:  # noqa: BLE001 - one at a time below, so a broken edition breaks only itself
        selected = {}
    sender = builder.sender_address
    built: dict[str, _Built] = {}
    broken: list[tuple[EditionRecord, str]] = []
    for subscriber in candidates:
        entry = entries.get(subscriber.email)
        message_id = entry.message_id if entry else builder.message_id(subscriber, day)
        picks: list[Pick] = []
        try:
            if entry:
                picks = builder.picks_from_ledger(entry)
            elif subscriber.email in selected:
                picks = selected[subscriber.email]
            else:
                picks = builder.select(subscriber, day, sent_before.get(subscriber.email, set()))
            note = None
            if not picks:
                summary.empty.append(subscriber.email)
                if not builder.wants_note(subscriber, day, summary.skip_empty):
                    continue
                summary.notes.append(subscriber.email)
                note = builder.empty_note(subscriber, day, sent_before.get(subscriber.email, set()))
            edition, data = builder.build(subscriber, day, picks, message_id, note=note)
        except Exception as error:  # noqa: BLE001 - one subscriber's edition must not stop everyone's
            reason = f"edition not built: {type(error).__name__}: {error}"
            log.warning("%s %s: %s", subscriber.email, day, reason)
            broken.append((EditionRecord(subscriber.email, day, message_id, picks), reason))
            summary.failed += 1
            summary.failures.append((subscriber.email, reason))
            continue
        summary.rendered += 1
        built[subscriber.email] = _Built(
            subscriber,
            EditionRecord(subscriber.email, day, message_id, edition.picks, edition.subject, edition.left_out),
            OutgoingMessage(message_id=message_id, sender=sender, recipient=subscriber.email, data=data),
        )
    return built, broken


def _deliver(store: Store, backend: Backend, day: date, messages: list[OutgoingMessage], claim: Claim, summary: RunSummary) -> None:
    """Hand the claimed messages to the backend, recording each outcome as it is reported."""
    streams = backend.streams_results
    # real mail: a sending thread goes on only once its last outcome is committed (at most one in doubt per connection)
    recorder = Recorder(store, day, messages, wait=streams and backend.real_mail)
    try:
        returned = backend.send_messages(messages, recorder.on_result) if streams else backend.send_messages(messages)
    except DeliveryStopped as error:
        results = recorder.finish()
        untried = [m.recipient for index, m in enumerate(messages) if index not in results]
        store.release(day, claim.owner, untried)
        _tally(messages, results, summary)
        summary.stopped = f"{error} ({len(untried)} editions of this chunk not attempted, left pending)"
        return
    except Exception as error:
        results = recorder.finish()
        _unknown_outcome(store, day, messages, results, f"uncertain: the backend failed: {type(error).__name__}: {error}")
        _tally(messages, results, summary)
        raise
    results = recorder.finish(returned)
    _unknown_outcome(store, day, messages, results, "uncertain: the backend gave no result for this message")
    _tally(messages, results, summary)


def _unknown_outcome(store: Store, day: date, messages: list[OutgoingMessage], results: dict, reason: str) -> None:
    """Messages a backend may have sent without saying so: `uncertain`, never sent again on their own."""
    missing = [Outcome(m.recipient, State.UNCERTAIN, reason) for index, m in enumerate(messages) if index not in results]
    store.record_outcomes(day, missing)


def _tally(messages: list[OutgoingMessage], results: dict, summary: RunSummary) -> None:
    for index, result in sorted(results.items()):
        recipient = messages[index].recipient
        if result.ok:
            summary.sent += 1
        elif result.uncertain:
            summary.uncertain += 1
            summary.uncertain_rows.append((recipient, result.reply))
        else:
            summary.failed += 1
            summary.failures.append((recipient, result.reply))


def resend_held(
    config: Config, store: Store, subscribers: Iterable[Subscriber], emails: list[str] | None, *, day: date | None = None,
    backend: Backend | None = None,
) -> tuple[list[LedgerEntry], RunSummary]:
    """Release `uncertain`/`review` editions (of `emails`, or all) and send them, each with its recorded Message-ID."""
    released = store.release_held(emails, edition_date=day)
    people = {s.email: s for s in subscribers}
    total = RunSummary()
    for edition_day in sorted({row.edition_date for row in released}):
        due = [people[row.email] for row in released if row.edition_date == edition_day and row.email in people]
        summary = run_edition(config, store, due, day=edition_day, backend=backend, skip_empty=False)
        for name in ("subscribers", "sent", "failed", "rendered", "already_sent", "suppressed", "not_today", "uncertain",
                     "claimed_elsewhere", "taken_over"):
            setattr(total, name, getattr(total, name) + getattr(summary, name))
        total.failures += summary.failures
        total.uncertain_rows += summary.uncertain_rows
        total.dates |= summary.dates
        total.stopped = total.stopped or summary.stopped
        if summary.stopped:
            break
    return released, total


def due_emails(store: Store, subscribers: list[Subscriber], day: date) -> list[str]:
    """The subscribers due on `day` (see ledger.not_due)."""
    suppressed = store.suppressed()
    return [s.email for s in subscribers if not_due(s, day, suppressed) is None]


def is_done(store: Store, subscribers: list[Subscriber], day: date) -> bool:
    """Whether every subscriber due on `day` has a settled ledger row."""
    emails = due_emails(store, subscribers, day)
    entries = store.ledger_entries(day, emails)
    return all(email in entries and entries[email].state in SETTLED for email in emails)
