"""The scheduler service behind `newsletter run`.

One APScheduler 3 scheduler runs three kinds of jobs:

- `fetch`: the paper download, on a crontab in UTC;
- `send …`: one cron job per send group, i.e. per (time zone, send time, days)
  shared by active subscribers, firing at that local wall-clock time;
- `reload`: re-reads the subscriber files every few minutes and adds or removes
  send jobs, so editing a subscriber needs no restart.

Every job is added with `misfire_grace_time` (APScheduler's default of 1 s
silently drops a job that starts even a second late, e.g. after a suspend or a
long previous job), `coalesce=True` (runs that piled up while the process was
stopped or busy run once, not once per missed time) and `max_instances=1` (a
slow send is never overlapped by the next run of the same job).

The service itself knows nothing about papers or email: it calls the plain
callables it is given (`send_group`, `is_group_done`, `fetch`, `load_subscribers`).
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import signal
import threading
import time as clock
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Callable
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, EVENT_SCHEDULER_START
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from newsletter.models import WEEKDAYS, Subscriber

log = logging.getLogger("newsletter.scheduler")

GroupKey = tuple[str, time, tuple[str, ...]]


@dataclass(frozen=True)
class SendGroup:
    """Active subscribers who share a time zone, a send time and send days."""

    timezone: str
    send_at: time
    days: tuple[str, ...]  # "mon".."sun", in week order
    emails: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.days or any(day not in WEEKDAYS for day in self.days):
            raise ValueError(f"days: expected some of {', '.join(WEEKDAYS)}, got {self.days!r}")
        if self.send_at.second or self.send_at.microsecond or self.send_at.tzinfo:
            raise ValueError(f"send_at: expected a local time in whole minutes, got {self.send_at!r}")

    @property
    def key(self) -> GroupKey:
        return (self.timezone, self.send_at, self.days)

    @property
    def job_id(self) -> str:
        return f"send {self.timezone} {self.send_at:%H:%M} {','.join(self.days)}"


@dataclass
class JobStats:
    """What one job run did."""

    sent: int = 0
    failed: int = 0
    skipped: int = 0


@dataclass
class ScheduleSettings:
    """The `[schedule]` settings; see the README, "Running it every day".

    - fetch_cron: crontab line in UTC for the fetch job; None or "" for no fetch job.
    - catch_up: on start, an unsent edition due at most this long ago is sent at once;
      older ones are logged and skipped.
    - misfire_grace_time: seconds a job may start late and still run (APScheduler's
      default of 1 s would silently drop a digest after a suspend or a busy minute).
    - skip_empty: read by the pipeline (no picks: no email, or with False a note for subscribers
      without their own `empty`); the scheduler only carries it.
    - shutdown_timeout: seconds SIGTERM waits for the sends in flight.
    - reload_interval: how often the subscriber files are re-read.
    - fetch_at_start: run the fetch job once on start, before the catch-up sends.
    """

    fetch_cron: str | None = "0 */3 * * *"
    catch_up: timedelta = timedelta(hours=6)
    misfire_grace_time: int = 3600
    skip_empty: bool = True
    fetch_at_start: bool = False
    shutdown_timeout: float = 60.0
    reload_interval: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if self.fetch_cron:
            try:
                CronTrigger.from_crontab(self.fetch_cron, timezone=UTC)
            except ValueError as exc:
                raise ValueError(f"fetch_cron: {self.fetch_cron!r} is not a crontab line: {exc}") from None
        if self.misfire_grace_time < 1:
            raise ValueError("misfire_grace_time: must be at least 1 second")
        if self.reload_interval <= timedelta(0):
            raise ValueError("reload_interval: must be positive")
        if self.catch_up < timedelta(0):
            raise ValueError("catch_up: must not be negative")
        if self.shutdown_timeout < 0:
            raise ValueError("shutdown_timeout: must not be negative")


class AlreadyRunning(RuntimeError):
    """Another `newsletter run` holds the lock file."""


def group_subscribers(subscribers: list[Subscriber]) -> list[SendGroup]:
    """Group active subscribers by (time zone, send time to the minute, days); subscribers with no days are left out."""
    groups: dict[GroupKey, dict[str, None]] = {}
    for subscriber in subscribers:
        days = tuple(day for day in WEEKDAYS if day in subscriber.days)
        if subscriber.active and days:
            key = (subscriber.timezone, subscriber.send_at.replace(second=0, microsecond=0), days)
            groups.setdefault(key, {})[subscriber.email] = None
    return [SendGroup(*key, emails=tuple(emails)) for key, emails in sorted(groups.items())]


def _is_second_pass(moment: datetime) -> bool:
    """True for the second occurrence of a wall-clock time that a DST fall-back repeats."""
    return moment.fold == 1 and moment.replace(fold=0).utcoffset() != moment.utcoffset()


class SendTrigger(CronTrigger):
    """A group's daily local-time cron trigger.

    Plain CronTrigger fires twice when a DST fall-back repeats the send time
    (02:30 on 25 October 2026 in Europe/Berlin); this one fires only on the first
    pass. A send time inside a spring-forward gap (02:30 on 29 March 2026 in
    Berlin does not exist) fires once, one gap later: at 03:30 summer time.
    """

    def __init__(self, group: SendGroup):
        super().__init__(
            hour=group.send_at.hour,
            minute=group.send_at.minute,
            day_of_week=",".join(group.days),
            timezone=ZoneInfo(group.timezone),
        )

    def get_next_fire_time(self, previous_fire_time, now):
        fire = super().get_next_fire_time(previous_fire_time, now)
        while fire is not None and _is_second_pass(fire):
            fire = super().get_next_fire_time(fire, fire)
        return fire


def next_fire_times(group: SendGroup, after: datetime, count: int) -> list[datetime]:
    """The group's next `count` send times strictly after `after` (aware), in UTC."""
    trigger = SendTrigger(group)
    times: list[datetime] = []
    previous, now = None, after + timedelta(microseconds=1)
    while len(times) < count:
        fire = trigger.get_next_fire_time(previous, now)
        times.append(fire.astimezone(UTC))
        previous = now = fire
    return times


def last_fire_time(group: SendGroup, now: datetime) -> datetime:
    """The group's latest send time at or before `now` (aware), in UTC.

    Agrees with `SendTrigger`: a time in a DST gap counts one gap later, a
    repeated time counts once (its first pass).
    """
    zone = ZoneInfo(group.timezone)
    now = now.astimezone(UTC)
    today = now.astimezone(zone).date()
    for back in range(8):
        day = today - timedelta(days=back)
        if WEEKDAYS[day.weekday()] in group.days:
            fire = datetime.combine(day, group.send_at, tzinfo=zone).astimezone(UTC)
            if fire <= now:
                return fire
    raise AssertionError("unreachable: a group sends at least once a week")


def edition_date(group: SendGroup, fire: datetime) -> date:
    """The group's local date of a send time: the date its edition is for."""
    return fire.astimezone(ZoneInfo(group.timezone)).date()


class Service:
    """`newsletter run`: the long-running scheduler service (see the module docstring)."""

    def __init__(
        self,
        settings: ScheduleSettings,
        *,
        load_subscribers: Callable[[], list[Subscriber]],
        send_group: Callable[[SendGroup, date], JobStats],
        is_group_done: Callable[[SendGroup, date], bool],
        fetch: Callable[[], JobStats] | None,
        lock_path: Path,
        cluster_lock: Callable[[], Callable[[], None] | None] | None = None,
        scheduler: BaseScheduler | None = None,
        now: Callable[[], datetime] | None = None,
        cron_jobs: dict[str, tuple[str, Callable[[], JobStats]]] | None = None,
    ):
        self.settings = settings
        self.lock_path = Path(lock_path)
        # takes a lock shared by every host (PostgreSQL advisory lock): returns its release, or None when taken
        self._cluster_lock = cluster_lock
        self._cluster_release: Callable[[], None] | None = None
        self.scheduler = scheduler if scheduler is not None else BlockingScheduler(timezone=UTC)
        self.shutdown_clean = True
        self._load_subscribers = load_subscribers
        self._send_group = send_group
        self._is_group_done = is_group_done
        self._fetch = fetch
        self._cron_jobs = dict(cron_jobs or {})  # name -> (crontab in UTC, job), e.g. reading bounces
        self._now = now or (lambda: datetime.now(UTC))
        self._lock_file = None
        self._stopping = threading.Event()
        self._stopper: threading.Thread | None = None
        self._previous_handlers: dict[int, object] = {}
        self._running: dict[str, int] = {}
        self._state_lock = threading.Lock()

    # --- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Take the lock, add the jobs, schedule catch-up sends, start the scheduler.

        Raises AlreadyRunning when another process (or Service) holds the lock.
        With a BlockingScheduler this blocks until SIGTERM/SIGINT or `stop()`.
        """
        self._acquire_lock()
        # BackgroundScheduler subclasses BlockingScheduler but returns at once
        blocking = isinstance(self.scheduler, BlockingScheduler) and not isinstance(self.scheduler, BackgroundScheduler)
        try:
            if self._fetch is not None and self.settings.fetch_at_start:
                self._run_fetch()  # catch-up sends pick from today's papers
            self.scheduler.add_listener(self._on_skipped, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
            if self._fetch is not None and self.settings.fetch_cron:
                fetch_trigger = CronTrigger.from_crontab(self.settings.fetch_cron, timezone=UTC)
                self._add_job(self._run_fetch, fetch_trigger, "fetch")
            for name, (cron, job) in self._cron_jobs.items():
                self._add_job(functools.partial(self._run_cron_job, name, job), CronTrigger.from_crontab(cron, timezone=UTC), name)
            reload_trigger = IntervalTrigger(seconds=self.settings.reload_interval.total_seconds(), timezone=UTC)
            self._add_job(self._reload, reload_trigger, "reload")
            self._reconcile(group_subscribers(self._load_subscribers()))
            if blocking:  # installed once running, so a signal always finds a scheduler to shut down
                self.scheduler.add_listener(self._install_signal_handlers, EVENT_SCHEDULER_START)
            self.scheduler.start()
        except BaseException:
            self._restore_signal_handlers()
            self._release_lock()
            raise
        if blocking:
            if self._stopper is not None:
                self._stopper.join()
            self._restore_signal_handlers()
            self._release_lock()

    def stop(self) -> None:
        """Stop taking new work, wait up to `shutdown_timeout` for running jobs, release the lock."""
        self._stopping.set()
        if self.scheduler.running:
            with self._state_lock:
                running = sorted(self._running)
            log.info(
                "stopping; waiting up to %g s for: %s", self.settings.shutdown_timeout, ", ".join(running) or "nothing"
            )
            worker = threading.Thread(target=self._shutdown_scheduler, name="newsletter-shutdown", daemon=True)
            worker.start()
            worker.join(self.settings.shutdown_timeout)
            self.shutdown_clean = not worker.is_alive()
            if not self.shutdown_clean:
                with self._state_lock:
                    running = sorted(self._running)
                log.error(
                    "still running after %g s: %s; stopping without them (re-running finishes what the ledger lacks)",
                    self.settings.shutdown_timeout,
                    ", ".join(running),
                )
        self._release_lock()
        log.info("stopped")

    def next_runs(self) -> list[dict]:
        """The next run of every send group (soonest first), then of the fetch job; times in UTC ISO 8601."""
        now = self._now()
        rows = []
        for group in group_subscribers(self._load_subscribers()):
            rows.append(
                {
                    "job": "send",
                    "timezone": group.timezone,
                    "send_at": f"{group.send_at:%H:%M}",
                    "days": list(group.days),
                    "subscribers": len(group.emails),
                    "next_run_utc": next_fire_times(group, now, 1)[0].isoformat(),
                }
            )
        rows.sort(key=lambda row: row["next_run_utc"])
        if self._fetch is not None and self.settings.fetch_cron:
            trigger = CronTrigger.from_crontab(self.settings.fetch_cron, timezone=UTC)
            fire = trigger.get_next_fire_time(None, now + timedelta(microseconds=1))
            rows.append(
                {"job": "fetch", "cron": self.settings.fetch_cron, "next_run_utc": fire.astimezone(UTC).isoformat()}
            )
        for name, (cron, _) in self._cron_jobs.items():
            fire = CronTrigger.from_crontab(cron, timezone=UTC).get_next_fire_time(None, now + timedelta(microseconds=1))
            rows.append({"job": name, "cron": cron, "next_run_utc": fire.astimezone(UTC).isoformat()})
        return rows

    # --- jobs ------------------------------------------------------------------

    def _add_job(self, func, trigger, job_id: str, **options) -> None:
        """Add or replace a job with the three options every job needs.

        misfire_grace_time: a late start (suspend, clock step, busy worker) still
        runs within the grace instead of being dropped after APScheduler's 1 s;
        coalesce: runs missed while stopped or busy run once, not once each;
        max_instances=1: a slow send is never overlapped by its own next run.
        """
        self.scheduler.add_job(
            func,
            trigger,
            id=job_id,
            name=job_id,
            replace_existing=True,
            misfire_grace_time=self.settings.misfire_grace_time,
            coalesce=True,
            max_instances=1,
            **options,
        )

    def _run_send(self, group: SendGroup) -> JobStats | None:
        """Send the edition of the group's latest send time (its local date) to the group's current members."""
        day = edition_date(group, last_fire_time(group, self._now()))
        what = f"{group.job_id} {day}"
        with self._tracking(what) as started:
            try:
                current = next((g for g in group_subscribers(self._load_subscribers()) if g.key == group.key), None)
                if current is None:
                    log.info("%s: no active subscribers left; skipped (%.1f s)", what, clock.monotonic() - started)
                    return None
                if self._is_group_done(current, day):
                    log.info("%s: already sent; skipped (%.1f s)", what, clock.monotonic() - started)
                    return None
                stats = self._send_group(current, day)
            except Exception:
                log.exception("%s: failed after %.1f s", what, clock.monotonic() - started)
                return None
            log.info(
                "%s: sent %d, failed %d, skipped %d (%.1f s)",
                what, stats.sent, stats.failed, stats.skipped, clock.monotonic() - started,
            )
            return stats

    def _run_fetch(self) -> JobStats | None:
        with self._tracking("fetch") as started:
            try:
                stats = self._fetch()
            except Exception:
                log.exception("fetch: failed after %.1f s", clock.monotonic() - started)
                return None
            log.info(
                "fetch: sent %d, failed %d, skipped %d (%.1f s)",
                stats.sent, stats.failed, stats.skipped, clock.monotonic() - started,
            )
            return stats

    def _run_cron_job(self, name: str, job: Callable[[], JobStats]) -> JobStats | None:
        """One run of a `cron_jobs` job, logged like the fetch; a failure is logged, never raised."""
        with self._tracking(name) as started:
            try:
                stats = job()
            except Exception:
                log.exception("%s: failed after %.1f s", name, clock.monotonic() - started)
                return None
            busy = stats.sent or stats.failed or stats.skipped  # a job that found nothing (most minutes) is not news
            log.log(logging.INFO if busy else logging.DEBUG, "%s: sent %d, failed %d, skipped %d (%.1f s)", name,
                    stats.sent, stats.failed, stats.skipped, clock.monotonic() - started)
            return stats

    def _reload(self) -> None:
        """Re-read the subscribers and add/remove send jobs to match."""
        with self._tracking("reload") as started:
            try:
                groups = group_subscribers(self._load_subscribers())
            except Exception:
                log.exception("reload: failed after %.1f s; keeping the current send jobs", clock.monotonic() - started)
                return
            added, removed = self._reconcile(groups)
            log.log(
                logging.INFO if added or removed else logging.DEBUG,
                "reload: %d send groups, %d added, %d removed (%.1f s)",
                len(groups), len(added), len(removed), clock.monotonic() - started,
            )

    def _reconcile(self, groups: list[SendGroup]) -> tuple[list[SendGroup], list[str]]:
        """Make the send jobs match `groups`; a new group whose edition is overdue runs at once (catch-up).

        Catch-up moves the group's own cron job to now rather than adding a one-off
        job, so max_instances=1 also keeps it from overlapping the regular run.
        """
        wanted = {group.job_id: group for group in groups}
        present = {job.id for job in self.scheduler.get_jobs() if job.id.startswith("send ")}
        removed = sorted(present - wanted.keys())
        for job_id in removed:
            self.scheduler.remove_job(job_id)
            log.info("%s: no active subscribers left; job removed", job_id)
        added = [group for job_id, group in wanted.items() if job_id not in present]
        now = self._now()
        for group in added:
            upcoming = next_fire_times(group, now, 1)[0].isoformat()
            log.info("%s: %d subscriber(s), next run %s", group.job_id, len(group.emails), upcoming)
            run_now = {"next_run_time": datetime.now(UTC)} if self._overdue(group, now) else {}
            self._add_job(self._run_send, SendTrigger(group), group.job_id, args=[group], **run_now)
        return added, removed

    def _overdue(self, group: SendGroup, now: datetime) -> bool:
        """Whether the group's latest edition is unsent and due at most `catch_up` ago; older misses are logged."""
        fire = last_fire_time(group, now)
        day = edition_date(group, fire)
        if self._is_group_done(group, day):
            return False
        late = timedelta(seconds=round((now.astimezone(UTC) - fire).total_seconds()))
        if late > self.settings.catch_up:
            log.warning(
                "%s: the %s edition was due %s ago, more than catch_up (%s); skipped, not sent late",
                group.job_id, day, late, self.settings.catch_up,
            )
            return False
        log.info("%s: the %s edition was due %s ago and is not sent; sending now", group.job_id, day, late)
        return True

    def _on_skipped(self, event) -> None:
        if event.code == EVENT_JOB_MISSED:
            log.warning(
                "%s: its %s run started more than misfire_grace_time (%d s) late; skipped",
                event.job_id, event.scheduled_run_time.astimezone(UTC).isoformat(), self.settings.misfire_grace_time,
            )
        else:
            log.warning("%s: the previous run is still going; this run skipped (max_instances=1)", event.job_id)

    @contextmanager
    def _tracking(self, what: str):
        """Record a job as running (for the shutdown messages); yields its start time."""
        with self._state_lock:
            self._running[what] = self._running.get(what, 0) + 1
        try:
            yield clock.monotonic()
        finally:
            with self._state_lock:
                self._running[what] -= 1
                if not self._running[what]:
                    del self._running[what]

    # --- lock and signals ------------------------------------------------------

    def _acquire_lock(self) -> None:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.lock_path, "a+", encoding="ascii")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "unknown"
            handle.close()
            raise AlreadyRunning(
                f"{self.lock_path}: another `newsletter run` holds this lock (pid {pid}); "
                "stop it first, or give this one its own store"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock_file = handle
        if self._cluster_lock is not None:
            release = self._cluster_lock()
            if release is None:
                self._release_lock()
                raise AlreadyRunning(
                    "another `newsletter run` (on this or another host) holds the scheduler lock of this store; "
                    "run one scheduler per store"
                )
            self._cluster_release = release

    def _release_lock(self) -> None:
        with self._state_lock:
            handle, self._lock_file = self._lock_file, None
            release, self._cluster_release = self._cluster_release, None
        if release is not None:
            release()
        if handle is not None:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    def _shutdown_scheduler(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)

    def _install_signal_handlers(self, event=None) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _restore_signal_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    def _on_signal(self, signum, frame) -> None:
        """Stop in a thread: the handler runs on the scheduler's own thread and must return at once."""
        name = signal.Signals(signum).name
        if self._stopping.is_set():
            log.warning("%s: already stopping", name)
            return
        log.info("%s received", name)
        self._stopping.set()
        self._stopper = threading.Thread(target=self._stop_or_exit, name="newsletter-stop")
        self._stopper.start()

    def _stop_or_exit(self) -> None:
        self.stop()
        if not self.shutdown_clean:
            logging.shutdown()
            os._exit(1)
