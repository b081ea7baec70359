"""Scheduler service: fire times, grouping, catch-up, reload, the lock and graceful shutdown.

No test waits for wall-clock schedule times: fire times are computed from the
triggers, and jobs are run by calling the functions the service scheduled, with
an injected `now`. The scheduler used for that is started paused, so nothing
fires on its own.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time as clock
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from newsletter.models import Subscriber
from newsletter.scheduler import (
    AlreadyRunning,
    JobStats,
    ScheduleSettings,
    SendGroup,
    Service,
    group_subscribers,
    last_fire_time,
    next_fire_times,
)

ROOT = Path(__file__).resolve().parents[1]
BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
EVERY_DAY = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def sub(email, tz="Europe/Berlin", at="07:30", days=WEEKDAYS, **fields):
    return Subscriber(email=email, timezone=tz, send_at=at, days=list(days), **fields)


def group(tz="Europe/Berlin", at=time(7, 30), days=WEEKDAYS, emails=("a@example.org",)):
    return SendGroup(timezone=tz, send_at=at, days=tuple(days), emails=tuple(emails))


class PausedScheduler(BackgroundScheduler):
    """Starts paused: jobs are only run by the test calling them."""

    def start(self, paused=False):
        super().start(paused=True)


class Harness:
    """A Service on a paused scheduler, with subscribers, `now` and the ledger under test control."""

    def __init__(self, tmp_path, subscribers, now, scheduler=None, **settings):
        self.subscribers = list(subscribers)
        self.now = now
        self.done: set[tuple[str, date]] = set()
        self.sends: list[tuple[tuple[str, ...], date]] = []
        self.sent_event = threading.Event()
        self.service = Service(
            ScheduleSettings(**settings),
            load_subscribers=lambda: list(self.subscribers),
            send_group=self.send_group,
            is_group_done=lambda g, day: all((email, day) in self.done for email in g.emails),
            fetch=lambda: JobStats(sent=5),
            lock_path=tmp_path / "run.lock",
            scheduler=scheduler or PausedScheduler(timezone=UTC),
            now=lambda: self.now,
        )

    def send_group(self, g, day):
        self.sends.append((g.emails, day))
        self.done.update((email, day) for email in g.emails)
        self.sent_event.set()
        return JobStats(sent=len(g.emails))

    def run(self, job_id):
        job = self.service.scheduler.get_job(job_id)
        assert job is not None, f"no job {job_id!r}; have {self.job_ids()}"
        return job.func(*job.args, **job.kwargs)

    def job_ids(self):
        return sorted(job.id for job in self.service.scheduler.get_jobs())

    def overdue(self):
        """Jobs set to run at once (catch-up) rather than at their next scheduled time."""
        real_now = datetime.now(UTC)
        return sorted(job.id for job in self.service.scheduler.get_jobs() if job.next_run_time <= real_now)


@pytest.fixture
def harness(tmp_path):
    made = []

    def make(subscribers, now, **kwargs):
        made.append(Harness(tmp_path, subscribers, now, **kwargs))
        return made[-1]

    yield make
    for h in made:
        h.service.stop()


# --- grouping ---------------------------------------------------------------


def test_group_subscribers_groups_active_ones_by_zone_time_and_days():
    subscribers = [
        sub("a@example.org"),
        sub("b@example.org", days=["fri", "thu", "wed", "tue", "mon"]),  # same days, other order
        sub("c@example.org", at="08:00"),
        sub("d@example.org", tz="Asia/Tokyo"),
        sub("e@example.org", days=["sat", "sun"]),
        sub("f@example.org", active=False),
        sub("g@example.org", days=[]),
    ]
    groups = group_subscribers(subscribers)
    assert [(g.timezone, f"{g.send_at:%H:%M}", g.days, g.emails) for g in groups] == [
        ("Asia/Tokyo", "07:30", WEEKDAYS, ("d@example.org",)),
        ("Europe/Berlin", "07:30", WEEKDAYS, ("a@example.org", "b@example.org")),
        ("Europe/Berlin", "07:30", ("sat", "sun"), ("e@example.org",)),
        ("Europe/Berlin", "08:00", WEEKDAYS, ("c@example.org",)),
    ]


# --- fire times ---------------------------------------------------------------


def test_tokyo_morning_is_the_previous_evening_in_utc():
    g = group(tz="Asia/Tokyo", days=EVERY_DAY)
    fires = next_fire_times(g, datetime(2026, 11, 25, 12, 0, tzinfo=UTC), 2)
    assert fires == [datetime(2026, 11, 25, 22, 30, tzinfo=UTC), datetime(2026, 11, 26, 22, 30, tzinfo=UTC)]
    assert fires[0].astimezone(ZoneInfo("Asia/Tokyo")).date() == date(2026, 11, 26)


def test_next_fire_times_are_strictly_after():
    g = group(tz="UTC", days=EVERY_DAY)
    at = datetime(2026, 11, 25, 7, 30, tzinfo=UTC)
    assert next_fire_times(g, at, 1) == [at + timedelta(days=1)]
    assert next_fire_times(g, at - timedelta(seconds=1), 1) == [at]


@pytest.mark.parametrize(
    ("start", "expected_utc"),
    [
        (  # spring forward: Sunday 29 March 2026, 02:00 CET -> 03:00 CEST
            datetime(2026, 3, 27, 12, tzinfo=UTC),
            ["2026-03-28T06:30", "2026-03-29T05:30", "2026-03-30T05:30"],
        ),
        (  # fall back: Sunday 25 October 2026, 03:00 CEST -> 02:00 CET
            datetime(2026, 10, 23, 12, tzinfo=UTC),
            ["2026-10-24T05:30", "2026-10-25T06:30", "2026-10-26T06:30"],
        ),
    ],
)
def test_berlin_0730_fires_once_a_day_across_dst(start, expected_utc):
    fires = next_fire_times(group(days=EVERY_DAY), start, 3)
    assert [f.strftime("%Y-%m-%dT%H:%M") for f in fires] == expected_utc
    local = [f.astimezone(BERLIN) for f in fires]
    assert all((t.hour, t.minute) == (7, 30) for t in local)
    assert len({t.date() for t in local}) == 3


def test_send_time_inside_the_spring_gap_fires_once_an_hour_later():
    # 02:30 does not exist in Berlin on 29 March 2026; it fires once, at 03:30 CEST.
    fires = next_fire_times(group(at=time(2, 30), days=EVERY_DAY), datetime(2026, 3, 28, 12, tzinfo=UTC), 2)
    assert fires[0] == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert fires[0].astimezone(BERLIN).strftime("%Y-%m-%d %H:%M %Z") == "2026-03-29 03:30 CEST"
    assert fires[1].astimezone(BERLIN).strftime("%Y-%m-%d %H:%M %Z") == "2026-03-30 02:30 CEST"


def test_send_time_repeated_by_the_fall_back_fires_once():
    g = group(at=time(2, 30), days=EVERY_DAY)
    start = datetime(2026, 10, 24, 12, tzinfo=UTC)
    fires = next_fire_times(g, start, 2)
    assert fires == [datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 26, 1, 30, tzinfo=UTC)]
    # plain CronTrigger would send twice that night: the reason for SendTrigger
    plain = CronTrigger(hour=2, minute=30, timezone=BERLIN)
    first = plain.get_next_fire_time(None, start)
    assert plain.get_next_fire_time(first, first).date() == date(2026, 10, 25)


def test_weekdays_only_group_skips_the_weekend():
    fires = next_fire_times(group(), datetime(2026, 11, 27, 12, tzinfo=UTC), 6)  # after Friday's send
    assert [f.astimezone(BERLIN).strftime("%a %d") for f in fires] == [
        "Mon 30", "Tue 01", "Wed 02", "Thu 03", "Fri 04", "Mon 07",
    ]


def test_a_weekly_subscriber_is_scheduled_on_its_one_day():
    weekly = Subscriber(email="w@example.org", timezone="Europe/Berlin", send_at="07:30", frequency="weekly", days=["mon"])
    monday_default = Subscriber(email="m@example.org", timezone="Europe/Berlin", send_at="07:30", frequency="weekly")
    daily = Subscriber(email="d@example.org", timezone="Europe/Berlin", send_at="07:30")
    groups = group_subscribers([weekly, monday_default, daily])
    assert [(g.days, g.emails) for g in groups] == [
        (("mon",), ("w@example.org", "m@example.org")),
        (tuple(EVERY_DAY), ("d@example.org",)),
    ]
    fires = next_fire_times(groups[0], datetime(2026, 11, 24, 12, tzinfo=UTC), 4)  # a Tuesday
    assert [f.astimezone(BERLIN).strftime("%a %d %H:%M") for f in fires] == [
        "Mon 30 07:30", "Mon 07 07:30", "Mon 14 07:30", "Mon 21 07:30",
    ]
    wednesday = datetime(2026, 12, 2, 12, tzinfo=UTC)
    assert last_fire_time(groups[0], wednesday).astimezone(BERLIN).strftime("%a %d %H:%M") == "Mon 30 07:30"
    with pytest.raises(ValueError, match='needs exactly one day'):
        Subscriber(email="x@example.org", frequency="weekly", days=["mon", "thu"])


@pytest.mark.parametrize(
    "g",
    [
        group(at=time(2, 30), days=EVERY_DAY),
        group(at=time(0, 15), days=("sat", "sun")),
        group(tz="America/Santiago", at=time(0, 0), days=EVERY_DAY),  # DST changes at midnight
        group(tz="Australia/Lord_Howe", at=time(1, 45), days=EVERY_DAY),  # half-hour DST
    ],
)
def test_last_fire_time_agrees_with_the_trigger_all_year(g):
    for fire in next_fire_times(g, datetime(2026, 1, 1, tzinfo=UTC), 400 if len(g.days) == 7 else 110):
        assert last_fire_time(g, fire) == fire
        assert last_fire_time(g, fire + timedelta(minutes=59)) == fire
        assert last_fire_time(g, fire - timedelta(seconds=1)) < fire


# --- the jobs the service schedules ------------------------------------------------


def test_every_job_sets_grace_coalesce_and_max_instances(harness):
    h = harness([sub("a@example.org"), sub("b@example.org", tz="Asia/Tokyo")], datetime(2026, 11, 25, 18, tzinfo=UTC),
                misfire_grace_time=900)
    h.service.start()
    assert h.job_ids() == [
        "fetch", "reload", "send Asia/Tokyo 07:30 mon,tue,wed,thu,fri", "send Europe/Berlin 07:30 mon,tue,wed,thu,fri",
    ]
    for job in h.service.scheduler.get_jobs():
        assert (job.misfire_grace_time, job.coalesce, job.max_instances) == (900, True, 1), job.id
    trigger = h.service.scheduler.get_job("send Asia/Tokyo 07:30 mon,tue,wed,thu,fri").trigger
    assert isinstance(trigger, CronTrigger) and trigger.timezone == ZoneInfo("Asia/Tokyo")


def test_send_job_sends_for_the_local_date_at_fire_time(harness):
    h = harness([sub("a@example.org", tz="Asia/Tokyo")], datetime(2026, 11, 25, 12, tzinfo=UTC))
    h.service.start()
    h.now = datetime(2026, 11, 25, 22, 30, 2, tzinfo=UTC)  # Thursday 07:30 in Tokyo
    assert h.run("send Asia/Tokyo 07:30 mon,tue,wed,thu,fri") == JobStats(sent=1)
    assert h.sends == [(("a@example.org",), date(2026, 11, 26))]
    h.now += timedelta(minutes=50)  # a late (coalesced) run is for the same edition and sends nothing twice
    assert h.run("send Asia/Tokyo 07:30 mon,tue,wed,thu,fri") is None
    assert len(h.sends) == 1


def test_edited_subscribers_take_effect_without_restart(harness, caplog):
    caplog.set_level(logging.INFO, logger="newsletter.scheduler")
    h = harness([sub("a@example.org"), sub("b@example.org")], datetime(2026, 11, 25, 5, tzinfo=UTC))
    h.service.start()
    berlin = "send Europe/Berlin 07:30 mon,tue,wed,thu,fri"
    h.now = datetime(2026, 11, 25, 6, 30, tzinfo=UTC)
    h.run(berlin)
    # b moves to 08:00, c joins at 07:30: the next 07:30 run sends to the current members
    h.subscribers = [sub("a@example.org"), sub("b@example.org", at="08:00"), sub("c@example.org")]
    h.now = datetime(2026, 11, 26, 6, 30, tzinfo=UTC)
    h.run(berlin)
    assert h.sends == [(("a@example.org", "b@example.org"), date(2026, 11, 25)),
                       (("a@example.org", "c@example.org"), date(2026, 11, 26))]
    # the reload job adds the 08:00 group; b already had today's edition, so no catch-up
    h.run("reload")
    assert h.job_ids() == ["fetch", "reload", berlin, "send Europe/Berlin 08:00 mon,tue,wed,thu,fri"]
    assert h.overdue() == []
    # everyone deactivated: the reload removes the empty groups
    h.subscribers = [sub("a@example.org", active=False)]
    h.run("reload")
    assert h.job_ids() == ["fetch", "reload"]
    assert "reload: 0 send groups, 0 added, 2 removed" in caplog.text
    assert "sent 2, failed 0, skipped 0" in caplog.text


def test_group_emptied_before_its_job_runs_sends_nothing(harness):
    h = harness([sub("a@example.org")], datetime(2026, 11, 24, 12, tzinfo=UTC))
    h.service.start()
    h.subscribers = []
    h.now = datetime(2026, 11, 25, 6, 30, tzinfo=UTC)
    assert h.run("send Europe/Berlin 07:30 mon,tue,wed,thu,fri") is None
    assert h.sends == []


def test_a_failing_send_is_logged_and_the_job_survives(harness, caplog):
    h = harness([sub("a@example.org")], datetime(2026, 11, 24, 12, tzinfo=UTC))
    h.service._send_group = lambda g, day: 1 / 0
    h.service.start()
    h.now = datetime(2026, 11, 25, 6, 30, tzinfo=UTC)
    assert h.run("send Europe/Berlin 07:30 mon,tue,wed,thu,fri") is None
    assert "2026-11-25: failed after" in caplog.text and "ZeroDivisionError" in caplog.text


def test_fetch_job_logs_its_counts(harness, caplog):
    caplog.set_level(logging.INFO, logger="newsletter.scheduler")
    h = harness([], datetime(2026, 11, 24, 12, tzinfo=UTC))
    h.service.start()
    assert h.run("fetch") == JobStats(sent=5)
    assert "fetch: sent 5, failed 0, skipped 0" in caplog.text


# --- catch-up ---------------------------------------------------------------------


def test_catch_up_sends_a_missed_edition_inside_the_window(harness):
    h = harness([sub("a@example.org")], datetime(2026, 11, 25, 9, 0, tzinfo=UTC))  # 10:00 Berlin, due at 07:30
    h.service.start()
    assert h.overdue() == ["send Europe/Berlin 07:30 mon,tue,wed,thu,fri"]
    h.now += timedelta(seconds=1)
    h.run("send Europe/Berlin 07:30 mon,tue,wed,thu,fri")
    assert h.sends == [(("a@example.org",), date(2026, 11, 25))]


def test_a_group_that_appears_while_running_is_caught_up(harness):
    h = harness([sub("a@example.org", at="09:00")], datetime(2026, 11, 25, 6, 0, tzinfo=UTC))  # 07:00 Berlin
    h.service.start()
    assert h.overdue() == []
    h.subscribers = [sub("a@example.org", at="07:00")]  # at 08:00 Berlin
    h.now = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)
    h.run("reload")
    assert h.job_ids() == ["fetch", "reload", "send Europe/Berlin 07:00 mon,tue,wed,thu,fri"]
    assert h.overdue() == ["send Europe/Berlin 07:00 mon,tue,wed,thu,fri"]


def test_catch_up_after_midnight_is_for_the_previous_local_day(harness):
    h = harness([sub("a@example.org", at="23:30")], datetime(2026, 11, 25, 23, 15, tzinfo=UTC))  # 00:15 Thursday
    h.service.start()
    assert h.overdue() == ["send Europe/Berlin 23:30 mon,tue,wed,thu,fri"]
    h.run("send Europe/Berlin 23:30 mon,tue,wed,thu,fri")
    assert h.sends == [(("a@example.org",), date(2026, 11, 25))]


def test_catch_up_skips_and_logs_an_old_miss(harness, caplog):
    h = harness([sub("a@example.org")], datetime(2026, 11, 25, 13, 0, tzinfo=UTC), catch_up=timedelta(hours=4))
    h.service.start()
    assert h.overdue() == []
    assert "the 2026-11-25 edition was due 6:30:00 ago, more than catch_up (4:00:00); skipped" in caplog.text


def test_catch_up_skips_a_done_edition(harness, caplog):
    h = harness([sub("a@example.org")], datetime(2026, 11, 25, 9, 0, tzinfo=UTC))
    h.done.add(("a@example.org", date(2026, 11, 25)))
    h.service.start()
    assert h.overdue() == []
    assert "edition" not in caplog.text


def test_catch_up_runs_at_once_on_a_running_scheduler(harness):
    now = datetime.now(UTC)
    at = (now - timedelta(minutes=5)).time().replace(second=0, microsecond=0)
    h = harness([sub("a@example.org", tz="UTC", at=at.strftime("%H:%M"), days=EVERY_DAY)], now,
                scheduler=BackgroundScheduler(timezone=UTC))
    h.service.start()
    assert h.sent_event.wait(10)
    assert h.sends == [(("a@example.org",), (now - timedelta(minutes=5)).date())]


# --- next_runs ------------------------------------------------------------------------


def test_next_runs_lists_groups_soonest_first_then_fetch(harness):
    h = harness([sub("a@example.org"), sub("b@example.org"), sub("c@example.org", tz="Asia/Tokyo", days=EVERY_DAY)],
                datetime(2026, 11, 25, 12, 0, tzinfo=UTC))
    assert h.service.next_runs() == [
        {"job": "send", "timezone": "Asia/Tokyo", "send_at": "07:30", "days": list(EVERY_DAY), "subscribers": 1,
         "next_run_utc": "2026-11-25T22:30:00+00:00"},
        {"job": "send", "timezone": "Europe/Berlin", "send_at": "07:30", "days": list(WEEKDAYS), "subscribers": 2,
         "next_run_utc": "2026-11-26T06:30:00+00:00"},
        {"job": "fetch", "cron": "0 */3 * * *", "next_run_utc": "2026-11-25T15:00:00+00:00"},
    ]


def test_bad_fetch_cron_is_reported_by_field():
    with pytest.raises(ValueError, match=r"^fetch_cron: '0 \*/3 \* \*' is not a crontab line"):
        ScheduleSettings(fetch_cron="0 */3 * *")


# --- one instance, graceful shutdown ------------------------------------------------

SCRIPT = """
import logging, sys, time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from newsletter.models import Subscriber
from newsletter.scheduler import JobStats, ScheduleSettings, Service

logging.basicConfig(level=logging.INFO, stream=sys.stderr)
lock, marker, mode, timeout = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], float(sys.argv[4])
due = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%H:%M")
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
subscribers = [Subscriber(email="a@example.org", timezone="UTC", send_at=due, days=days)] if mode == "send" else []

def send_group(group, day):
    marker.with_suffix(".started").write_text("")
    time.sleep(1)
    marker.write_text(",".join(group.emails))
    return JobStats(sent=len(group.emails))

Service(ScheduleSettings(fetch_cron=None, shutdown_timeout=timeout), load_subscribers=lambda: subscribers,
        send_group=send_group, is_group_done=lambda g, d: False, fetch=None, lock_path=lock).start()
print("returned from start")
"""


def spawn(tmp_path, mode, shutdown_timeout=20):
    script = tmp_path / "service.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [str(tmp_path / "run.lock"), str(tmp_path / "marker"), mode, str(shutdown_timeout)]
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for(condition, proc, timeout=15):
    deadline = clock.monotonic() + timeout
    while not condition():
        if proc.poll() is not None or clock.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"gave up waiting; exit {proc.poll()}: {proc.communicate()}")
        clock.sleep(0.02)


def test_second_start_on_the_same_lock_refuses(harness, tmp_path):
    first = harness([], datetime(2026, 11, 25, 12, tzinfo=UTC))
    first.service.start()
    second = harness([], datetime(2026, 11, 25, 12, tzinfo=UTC))
    with pytest.raises(AlreadyRunning, match=rf"{tmp_path / 'run.lock'}: .*\(pid {os.getpid()}\)"):
        second.service.start()
    first.service.stop()
    third = harness([], datetime(2026, 11, 25, 12, tzinfo=UTC))
    third.service.start()  # released on stop


def test_lock_held_by_another_process_and_freed_when_it_dies(harness, tmp_path):
    proc = spawn(tmp_path, "idle")
    lock = tmp_path / "run.lock"
    wait_for(lambda: lock.exists() and lock.read_text().strip() == str(proc.pid), proc)
    h = harness([], datetime(2026, 11, 25, 12, tzinfo=UTC))
    with pytest.raises(AlreadyRunning, match=rf"\(pid {proc.pid}\)"):
        h.service.start()
    proc.kill()  # no clean-up at all: the OS drops the lock
    proc.communicate()
    h.service.start()


def test_sigterm_lets_the_send_in_flight_finish(tmp_path):
    proc = spawn(tmp_path, "send")
    wait_for((tmp_path / "marker.started").exists, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert (tmp_path / "marker").read_text() == "a@example.org"
    assert "returned from start" in out
    assert "SIGTERM received" in err and "sent 1, failed 0, skipped 0" in err
    assert (tmp_path / "run.lock").read_text() == ""


def test_sigterm_gives_up_after_shutdown_timeout(tmp_path):
    proc = spawn(tmp_path, "send", shutdown_timeout=0.2)
    wait_for((tmp_path / "marker.started").exists, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 1, err
    assert "still running after 0.2 s: send UTC" in err
    assert not (tmp_path / "marker").exists() and "returned from start" not in out
