"""Config and subscriber files: validated, with one `file: field: problem` line per mistake."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from newsletter.config import ConfigError, load_config, load_subscribers
from tests.conftest import run_cli
from tests.pg_server import pg_server, pg_url  # noqa: F401 (fixtures)

MINIMAL = """
[newsletter]
name = "Digest"
from = "Digest <digest@example.org>"
base_url = "https://papers.example.org/"
"""


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


def test_defaults_and_relative_paths(tmp_path: Path):
    config = load_config(write(tmp_path / "conf" / "config.toml", MINIMAL + '[sources]\ninputs = ["papers/*.txt"]\n'))
    write(tmp_path / "conf" / "papers" / "a.txt", "x")
    assert config.newsletter.base_url == "https://papers.example.org"
    assert config.newsletter.domain == "example.org"
    assert config.store_url == f"sqlite:///{tmp_path / 'conf' / 'newsletter.db'}"
    assert config.subscribers_dir == tmp_path / "conf" / "subscribers"
    assert config.input_paths() == [tmp_path / "conf" / "papers" / "a.txt"]
    assert config.delivery.backend == "file"


def test_db_override(tmp_path: Path):
    config = load_config(write(tmp_path / "config.toml", MINIMAL), db=Path("other.db"))
    assert config.store_url == f"sqlite:///{tmp_path / 'other.db'}"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('[delivery]\nbackend = "smpt"\n', "config.toml: delivery.backend: unknown backend 'smpt' (choose one of: "),
        ("[store]\npaht = 'x.db'\n", "config.toml: store.paht: unknown key"),
        ('[delivery]\nbackend = "smtp"\n[delivery.smtp]\nport = "many"\n', "config.toml: delivery.smtp.port: "),
        ("[schedule]\ncatch_up_hours = -1\n", "config.toml: schedule.catch_up_hours: "),
        ('accent_color = "blue"\n', 'config.toml: newsletter.accent_color: expected a colour like "#0b57d0"'),
        ('logo_url = "javascript:alert(1)"\n', "config.toml: newsletter.logo_url: expected an http(s) URL of an image"),
        ('[summaries]\nendpoint = "http://127.0.0.1:8080/v1"\n', "config.toml: summaries: model: name the model"),
        ('[summaries]\nendpoint = "ftp://x"\nmodel = "m"\n', "config.toml: summaries.endpoint: expected an http(s) URL"),
        (
            '[delivery]\nbackend = "smtp"\n[delivery.smtp]\nhost = "smtp.example.org"\nusername = "me"\n'
            'password_env = "SMTP_PASSWORD"\n',
            "config.toml: delivery.smtp: allow_insecure_auth: username with security = \"none\" would send the "
            "password in clear to smtp.example.org",
        ),
    ],
)
def test_config_problems_are_one_line_each(tmp_path: Path, extra: str, expected: str):
    [problem] = problems_of(write(tmp_path / "config.toml", MINIMAL + extra))
    assert problem.startswith(expected), problem


def test_missing_required_keys(tmp_path: Path):
    problems = problems_of(write(tmp_path / "config.toml", '[newsletter]\nname = "x"\n'))
    assert "config.toml: newsletter.from: Field required" in problems
    assert "config.toml: newsletter.base_url: Field required" in problems


def test_toml_syntax_error_names_the_line(tmp_path: Path):
    [problem] = problems_of(write(tmp_path / "config.toml", MINIMAL + "\n[broken\n"))
    assert problem.startswith("config.toml:7: ")


def test_missing_default_config_says_what_to_do():
    [problem] = problems_of(Path("config.toml"))
    assert "copy config.example.toml to config.toml" in problem


SUBSCRIBER = 'email = "{email}"\nname = "N"\ntimezone = "Europe/Berlin"\nsend_at = "07:30"\nmode = "keywords"\nkeywords = ["diffusion"]\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (SUBSCRIBER.replace("Europe/Berlin", "Mars/Base"), "subscribers/ada.toml: timezone: unknown time zone 'Mars/Base'"),
        (SUBSCRIBER.replace("{email}", "not-an-address"), "subscribers/ada.toml: email: value is not a valid email address"),
        (SUBSCRIBER.replace('"keywords"', '"random"'), "subscribers/ada.toml: mode: Input should be 'trending', 'keywords', 'mixed' or 'similar'"),
        (SUBSCRIBER.replace('["diffusion"]', "[]"), "subscribers/ada.toml: keywords: mode 'keywords' needs at least one keyword"),
        (SUBSCRIBER.replace('"07:30"', '"7.30"'), "subscribers/ada.toml: send_at: "),
        (SUBSCRIBER + "colour = 'blue'\n", "subscribers/ada.toml: colour: unknown key"),
        (SUBSCRIBER.replace('mode = "keywords"', 'mode = "keywords'), "subscribers/ada.toml:5: "),
        (SUBSCRIBER + 'frequency = "weekly"\ndays = ["mon", "fri"]\n',
         'subscribers/ada.toml: days: frequency "weekly" needs exactly one day, e.g. days = ["mon"]'),
        (SUBSCRIBER + 'frequency = "monthly"\n', "subscribers/ada.toml: frequency: Input should be 'daily' or 'weekly'"),
        (SUBSCRIBER + 'empty = "explain"\n', "subscribers/ada.toml: empty: Input should be 'skip' or 'note'"),
        (SUBSCRIBER + 'authors = ["Yann LeCun", " "]\n', "subscribers/ada.toml: authors: an author name is empty"),
    ],
)
def test_each_subscriber_problem_is_reported_and_the_rest_load(tmp_path: Path, text: str, expected: str):
    write(tmp_path / "subscribers" / "ada.toml", text.replace("{email}", "ada@example.org"))
    write(tmp_path / "subscribers" / "bob.toml", SUBSCRIBER.replace("{email}", "bob@example.org"))
    loaded = load_subscribers(Path("subscribers"))
    assert [s.email for s in loaded.subscribers] == ["bob@example.org"]
    [problem] = loaded.problems
    assert problem.startswith(expected), problem


def test_duplicate_email_across_files(tmp_path: Path):
    write(tmp_path / "subscribers" / "a.toml", SUBSCRIBER.replace("{email}", "same@example.org"))
    write(tmp_path / "subscribers" / "b.toml", SUBSCRIBER.replace("{email}", "SAME@example.org"))
    loaded = load_subscribers(Path("subscribers"))
    assert len(loaded.subscribers) == 1
    assert loaded.problems == [
        "subscribers/b.toml: email: duplicate address same@example.org (already in subscribers/a.toml)"
    ]


def test_bad_keyword_syntax_is_a_subscriber_problem(tmp_path: Path):
    write(tmp_path / "subscribers" / "a.toml", SUBSCRIBER.replace('["diffusion"]', '["diffusion", "video^abc"]').replace("{email}", "a@example.org"))
    loaded = load_subscribers(Path("subscribers"))
    assert loaded.subscribers == []
    assert loaded.problems[0].startswith("subscribers/a.toml: keywords: ")


def test_subscribers_check_and_list_through_the_cli(example_dir: Path):
    ok = run_cli("subscribers", "check", cwd=example_dir)
    assert ok.returncode == 0 and "3 subscribers ok, 0 problems" in ok.stdout
    listing = run_cli("subscribers", "list", cwd=example_dir)
    assert "ada@example.org" in listing.stdout and "Europe/London" in listing.stdout
    write(example_dir / "examples" / "subscribers" / "zed.toml", 'email = "zed@example.org"\ntimezone = "Mars/Base"\n')
    bad = run_cli("subscribers", "check", cwd=example_dir)
    assert bad.returncode == 1
    assert "examples/subscribers/zed.toml: timezone: unknown time zone 'Mars/Base'" in bad.stdout


def test_suppressed_address_gets_nothing_until_enabled(example_dir: Path):
    assert run_cli("subscribers", "disable", "ada@example.org", cwd=example_dir).returncode == 0
    result = run_cli("send", cwd=example_dir)
    assert "Wrote 2 emails" in result.stdout
    assert run_cli("subscribers", "enable", "ada@example.org", cwd=example_dir).returncode == 0
    again = run_cli("send", cwd=example_dir)
    assert "Wrote 1 email to" in again.stdout
    assert os.path.exists(example_dir / "outbox")


def test_unchanged_subscriber_files_come_from_the_store_cache(tmp_path: Path, monkeypatch):
    from newsletter import config as config_module
    from newsletter.store import Store

    folder = tmp_path / "subscribers"
    for n in range(5):
        write(folder / f"r{n}.toml", f'email = "R{n}@example.org"\nname = "Reader {n}"\nsend_at = "06:1{n}"\n'
              f'mode = "keywords"\nkeywords = ["diffusion^2", "-survey"]\ndays = ["mon", "Thursday"]\n')
    write(folder / "broken.toml", 'email = "not an address"\n')
    write(folder / "z-dup.toml", 'email = "r1@example.org"\n')
    parsed = []
    real_read = config_module.read_toml
    monkeypatch.setattr(config_module, "read_toml", lambda path: parsed.append(path.name) or real_read(path))
    with Store(f"sqlite:///{tmp_path / 's.db'}") as store:
        first = load_subscribers(folder, cache=store)
        assert len(parsed) == 7
        parsed.clear()
        second = load_subscribers(folder, cache=store)
        assert parsed == ["broken.toml"]  # a broken file is never cached: it is reported every time
        assert second.subscribers == first.subscribers == load_subscribers(folder).subscribers
        assert second.problems == first.problems and len(second.problems) == 2
        assert second.subscribers[0].send_at.minute == 10 and second.subscribers[0].days == ["mon", "thu"]

        changed = folder / "r3.toml"
        write(changed, changed.read_text().replace("Reader 3", "Reader Three"))
        os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
        (folder / "r4.toml").unlink()
        parsed.clear()
        third = load_subscribers(folder, cache=store)
        assert sorted(parsed) == ["broken.toml", "r3.toml"]
        assert [s.name for s in third.subscribers] == ["Reader 0", "Reader 1", "Reader 2", "Reader Three"]
        assert len(store.subscriber_files(str(folder.resolve()))) == 5  # r0-r3 and dup; r4 forgotten

        monkeypatch.setattr(config_module, "subscriber_shape", lambda: "another-version")
        parsed.clear()
        load_subscribers(folder, cache=store)
        assert len(parsed) == 6  # cached by a different Subscriber model: read again


def test_a_cached_subscriber_equals_the_validated_one_in_every_field(tmp_path: Path):
    """Every field set away from its default, a library among them: the copy from the cache is the same model."""
    from newsletter.store import Store

    folder = tmp_path / "subscribers"
    write(folder / "papers.bib", "@article{a, title = {Attention}}\n")
    write(folder / "ada.toml", 'email = "ada@example.org"\nname = "Ada"\ntimezone = "Europe/Zurich"\nsend_at = "06:45"\n'
          'frequency = "weekly"\ndays = ["tue"]\nmode = "mixed"\nkeywords = ["diffusion"]\nmax_items = 7\n'
          'min_upvotes = 2\nmax_age_days = 30\ntrending_share = 0.2\nlibrary = "papers.bib"\nsimilar_share = 0.5\n'
          'active = true\nauthors = ["Ada  Lovelace"]\nempty = "note"\n')
    validated = load_subscribers(folder).subscribers
    assert set(validated[0].model_fields_set) == set(type(validated[0]).model_fields) - {"template"}
    with Store(f"sqlite:///{tmp_path / 's.db'}") as store:
        load_subscribers(folder, cache=store)
        cached = load_subscribers(folder, cache=store)
    assert cached.problems == []
    assert cached.subscribers == validated
    for name in type(validated[0]).model_fields:
        assert type(getattr(cached.subscribers[0], name)) is type(getattr(validated[0], name)), name


def test_a_damaged_subscriber_cache_is_read_again_from_the_files(tmp_path: Path):
    """A cached row that is not what this version writes (cut short, not JSON) must not break the load or
    give a half-made subscriber: every file is parsed again and the rows are written anew."""
    from sqlalchemy import update

    from newsletter.store import Store
    from newsletter.store.schema import subscriber_files_table

    folder = tmp_path / "subscribers"
    for n in range(3):
        write(folder / f"r{n}.toml", f'email = "r{n}@example.org"\nsend_at = "06:0{n}"\n')
    expected = load_subscribers(folder).subscribers
    with Store(f"sqlite:///{tmp_path / 's.db'}") as store:
        load_subscribers(folder, cache=store)
        directory = str(folder.resolve())
        for damage in ('["r0@example.org"]', "{not json"):
            with store._writes.begin() as conn:
                conn.execute(update(subscriber_files_table).where(subscriber_files_table.c.path == f"{directory}/r1.toml")
                             .values(subscriber=damage))
            again = load_subscribers(folder, cache=store)
            assert again.problems == [] and again.subscribers == expected
            assert again.paths == {s.email: folder / f"r{n}.toml" for n, s in enumerate(expected)}
            assert store.subscriber_files(directory)[f"{directory}/r1.toml"][3] != damage  # written anew
        assert load_subscribers(folder, cache=store).subscribers == expected


def test_two_runs_saving_the_subscriber_cache_at_once_both_load_everyone(tmp_path: Path, pg_url):
    """Two sends starting together parse the same files and save them: the second must not fail on the first's rows."""
    import threading

    from newsletter.store import Store
    from newsletter.store.schema import subscriber_files_table

    folder = tmp_path / "subscribers"
    for n in range(3):
        write(folder / f"r{n}.toml", f'email = "r{n}@example.org"\n')
    directory = str(folder.resolve())
    with Store(pg_url) as first, Store(pg_url) as second:
        rows = [{"path": f"{directory}/r{n}.toml", "directory": directory, "size": 1, "mtime_ns": 1, "shape": "old",
                 "subscriber": "{}"} for n in range(3)]
        errors = []
        with first._writes.begin() as conn:  # the first run has saved but not committed yet
            conn.execute(subscriber_files_table.insert(), rows)
            # the second run's save cannot see those rows, and waits on them
            racing = threading.Thread(target=lambda: errors.append(_load(folder, second)))
            racing.start()
            racing.join(timeout=1)
        racing.join(timeout=30)
        assert errors == [3]  # everyone loaded, no duplicate-key error
        assert {row[2] for row in second.subscriber_files(directory).values()} != {"old"}  # the fresh parse replaced them


def _load(folder: Path, store) -> int | str:
    try:
        return len(load_subscribers(folder, cache=store).subscribers)
    except Exception as error:  # noqa: BLE001 - the test reports it
        return repr(error)
