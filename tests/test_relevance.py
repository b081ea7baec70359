"""Similar picks on the hand-judged fixture: a quality floor, the measured ordering of the variants,
library papers never picked, reasons, shares, and feedback changing the next edition."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.models import Subscriber
from newsletter.relevance import Relevance
from newsletter.selection import PaperIndex, select
from newsletter.store import Feedback, Store
from tests.relevance_eval import TODAY, open_fixture_store, run_variant, subscriber, topics


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    with open_fixture_store(f"sqlite:///{tmp_path_factory.mktemp('relevance') / 'fixture.db'}") as store:
        yield store


def mean(results: dict[str, tuple[float, float]]) -> tuple[float, float]:
    return (sum(p for p, _ in results.values()) / len(results), sum(n for _, n in results.values()) / len(results))


def test_similar_picks_clear_the_floor_on_every_topic(store: Store):
    results = run_variant(store, "similar (hybrid)")
    precision, ndcg = mean(results)
    assert precision >= 0.85 and ndcg >= 0.85, results  # measured 0.95 / 0.94
    assert all(p >= 0.7 for p, _ in results.values()), results


def test_the_hybrid_beats_either_side_alone(store: Store):
    hybrid = mean(run_variant(store, "similar (hybrid)"))[1]
    assert hybrid > mean(run_variant(store, "similar, tf-idf only"))[1]
    assert hybrid > mean(run_variant(store, "similar, embedding only"))[1]


def test_feedback_changes_the_next_edition_for_the_better(store: Store):
    without = run_variant(store, "similar (hybrid)", editions=2)
    clicked = run_variant(store, "similar (hybrid)", editions=2, clicks=True)
    assert without != clicked
    assert mean(clicked)[0] > mean(without)[0]  # measured 0.45 vs 0.38


def reader(tmp_path: Path, library_text: str, suffix: str = ".txt", **fields) -> Subscriber:
    path = tmp_path / f"library{suffix}"
    path.write_text(library_text, encoding="utf-8")
    return Subscriber(**{"email": "r@example.org", "mode": "similar", "library": path, "max_items": 10,
                         "max_age_days": 100000, **fields})


def picks_for(store: Store, sub: Subscriber, sent=frozenset(), feedback=()):
    index = PaperIndex(store.papers(), TODAY)
    relevance = Relevance(store)
    clicks = {sub.email: list(feedback)} if feedback else {}
    similar = relevance.similar_picks([sub], index, {sub.email: set(sent)}, clicks).get(sub.email)
    return select(sub, index, already_sent=set(sent), similar=similar, has_positives=any(f.kind == "more" for f in feedback))


def test_papers_in_the_library_are_never_picked(store: Store, tmp_path: Path):
    quantization = next(t for t in topics() if t.name == "quantization")
    stored = store.get_papers(quantization.relevant)
    titles = [paper.title for paper in stored.values()]
    sub = reader(tmp_path, "\n".join(titles) + "\n")  # a .txt library of titles, looked up in the store
    picks = picks_for(store, sub)
    assert len(picks) == 10
    assert not {pick.paper.id for pick in picks} & set(stored)
    # and by title too: a library entry with the same title as a stored paper, under another id
    bib = reader(tmp_path, "".join(f"@misc{{k{n}, title = {{{title}}}}}\n" for n, title in enumerate(titles)), ".bib")
    assert not {pick.paper.id for pick in picks_for(store, bib)} & set(stored)


def test_every_pick_says_which_library_paper_it_is_close_to(store: Store):
    topic = next(t for t in topics() if t.name == "quantization")
    picks = picks_for(store, subscriber(topic, "similar"))
    library_titles = ("GPTQ", "LLM.int8()", "SmoothQuant", "AWQ", "Quantization and Training")
    for pick in picks:
        [reason] = pick.reasons
        assert reason.startswith('close to "') and reason.endswith('" from your library'), reason
        assert any(reason[len('close to "'):].startswith(title) for title in library_titles), reason
    assert any("…" in pick.reasons[0] for pick in picks)  # long titles are cut at a word


def test_mixed_shares_slots_and_never_repeats_a_paper(store: Store):
    topic = next(t for t in topics() if t.name == "data")
    picks = picks_for(store, subscriber(topic, "mixed", similar_share=0.4, trending_share=0.2))
    assert len(picks) == 10 and len({p.paper.id for p in picks}) == 10
    kinds = [p.reasons[0].split(" ")[0] for p in picks]
    assert kinds.count("matched") == 4 and kinds.count("close") == 4 and kinds.count("trending") == 2, kinds
    assert kinds == sorted(kinds, key=["matched", "close", "trending"].index)  # keyword, similar, trending


def test_exclusions_age_and_sent_papers_hold_for_similar_picks(store: Store, tmp_path: Path):
    topic = next(t for t in topics() if t.name == "quantization")
    first = picks_for(store, subscriber(topic, "similar"))
    sent = {p.paper.id for p in first[:5]}
    again = picks_for(store, subscriber(topic, "similar"), sent=sent)
    assert not sent & {p.paper.id for p in again}
    excluding = picks_for(store, subscriber(topic, "similar", keywords=["-quantization"]))
    assert all("quantization" not in (p.paper.title + p.paper.abstract).lower() for p in excluding)


def test_fewer_like_this_pushes_similar_papers_down_and_more_pulls_them_up(store: Store):
    topic = next(t for t in topics() if t.name == "systems")
    sub = subscriber(topic, "similar")
    base = picks_for(store, sub)
    disliked = base[0].paper
    fewer = picks_for(store, sub, sent={disliked.id}, feedback=[Feedback(sub.email, disliked.id, "fewer", None)])
    plain = picks_for(store, sub, sent={disliked.id})
    assert [p.paper.id for p in fewer] != [p.paper.id for p in plain]
    liked = next(t for t in topics() if t.name == "testing")
    testing_ids = set(liked.relevant)
    liked_ids = sorted(testing_ids)[:3]
    more = picks_for(store, sub, sent={disliked.id, *liked_ids}, feedback=[Feedback(sub.email, i, "more", None) for i in liked_ids])
    plain = picks_for(store, sub, sent={disliked.id, *liked_ids})
    assert sum(p.paper.id in testing_ids for p in more) > sum(p.paper.id in testing_ids for p in plain)
    assert any(p.reasons[0].endswith('that you marked "more like this"') for p in more)


def test_a_keyword_profile_gains_a_similar_share_once_there_are_positives(store: Store):
    topic = next(t for t in topics() if t.name == "ranking")
    sub = subscriber(topic, "keywords")
    liked = next(iter(next(t for t in topics() if t.name == "testing").relevant))
    assert all(p.reasons[0].startswith("matched") for p in picks_for(store, sub))
    picks = picks_for(store, sub, sent={liked}, feedback=[Feedback(sub.email, liked, "more", None)])
    assert [p.reasons[0].split(" ")[0] for p in picks].count("close") == 3  # FEEDBACK_SHARE of 10
    trending = picks_for(store, Subscriber(email="t@example.org", max_age_days=100000), sent={liked},
                         feedback=[Feedback("t@example.org", liked, "more", None)])
    assert [p.reasons[0].split(" ")[0] for p in trending].count("close") == 3


def test_a_run_whose_vectors_are_stored_never_loads_the_model(store: Store, tmp_path: Path, monkeypatch):
    """Library entries' vectors are stored by text beside the papers': the next run (a new Relevance, as a
    new `send` process has) embeds nothing, never loads wordllama, and picks the same papers."""
    from newsletter import relevance as module
    from newsletter.embeddings import load_embedder, model_name

    assert model_name() == load_embedder().name  # the stored vectors' name, known without loading
    quantization = next(t for t in topics() if t.name == "quantization")
    sub = reader(tmp_path, "@misc{a, title = {Low-bit weights for small language models},"
                           " abstract = {We quantize the weights of a language model to three bits.}}\n", ".bib")
    first = [pick.paper.id for pick in picks_for(store, sub)]
    assert len(first) == 10 and quantization.relevant.keys() & set(first)

    def refuse(spec="wordllama"):
        raise AssertionError("the model was loaded although every vector is stored")

    monkeypatch.setattr(module, "load_embedder", refuse)
    assert [pick.paper.id for pick in picks_for(store, sub)] == first
    sub.library.write_text(sub.library.read_text(encoding="utf-8").replace("three bits", "two bits"), encoding="utf-8")
    with pytest.raises(AssertionError, match="the model was loaded"):  # a changed entry is a new text: embedded
        picks_for(store, sub)


def test_ingest_embeds_the_library_entries_so_send_loads_no_model(example_dir: Path, monkeypatch):
    """`newsletter ingest` stores the vectors of every subscriber library's entries with the papers', so
    the day's `send` (a new process: a new Relevance) embeds nothing and never loads the model."""
    from newsletter import relevance as module
    from newsletter.config import load_config
    from newsletter.embeddings import model_name
    from newsletter.library import read_library
    from newsletter.relevance import text_key
    from tests.conftest import run_cli

    (example_dir / "examples" / "subscribers" / "lin.toml").write_text(
        'email = "lin@example.org"\nmode = "similar"\nlibrary = "../libraries/ada-library.bib"\n', encoding="utf-8"
    )
    library = read_library(example_dir / "examples" / "libraries" / "ada-library.bib")
    keys = {text_key(item.text) for item in library.items}
    result = run_cli("ingest", cwd=example_dir)
    assert result.returncode == 0, result.stderr
    config = load_config(example_dir / "config.toml")
    with Store(config.store_url) as store:
        assert set(store.load_vectors(model_name(), keys)) == keys  # every entry, embedded by ingest

        def refuse(spec="wordllama"):
            raise AssertionError("the model was loaded although every vector is stored")

        monkeypatch.setattr(module, "load_embedder", refuse)
        relevance = Relevance(store)
        sub = Subscriber(email="lin@example.org", mode="similar", library=example_dir / "examples" / "libraries" / "ada-library.bib")
        assert relevance.embed_libraries([sub]) == 0
        assert len(relevance._library_examples(relevance.libraries.get(sub.library))) == len(library.items)


def test_a_big_run_of_similar_readers_ranks_every_chunk_with_the_compiled_loop(tmp_path: Path, monkeypatch):
    """A send's chunks are small, but a run with KERNEL_PROFILES similar readers or more pays numba's load
    once and ranks each chunk with the compiled loop; a small run stays on numpy."""
    from datetime import date

    from newsletter import relevance as module
    from newsletter.config import load_config
    from newsletter.pipeline import run_edition
    from newsletter.similarity import SimilarSpace

    (tmp_path / "config.toml").write_text(
        '[newsletter]\nfrom = "a@example.org"\nbase_url = "http://x"\n[store]\npath = "s.db"\n'
        '[delivery]\nbackend = "memory"\nchunk_size = 2\n', encoding="utf-8")
    config = load_config(tmp_path / "config.toml")
    calls = []
    rank = SimilarSpace.rank
    monkeypatch.setattr(SimilarSpace, "rank", lambda self, *a, compiled=None, **k: calls.append(compiled) or rank(self, *a, compiled=compiled, **k))
    readers = [subscriber(topic, "similar").model_copy(update={"email": f"r{n}@example.org"}) for n, topic in enumerate(topics()[:4])]
    with open_fixture_store(config.store_url) as store:
        monkeypatch.setattr(module, "KERNEL_PROFILES", 5)
        run_edition(config, store, readers, day=date(2026, 12, 1), dry_run=True)
        assert calls == [None, None]  # 4 readers, chunks of 2: numpy
        calls.clear()
        monkeypatch.setattr(module, "KERNEL_PROFILES", 4)
        summary = run_edition(config, store, readers, day=date(2026, 12, 1), dry_run=True)
        assert calls == [True, True] and summary.rendered == 4
