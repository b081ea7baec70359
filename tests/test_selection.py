"""Selection: ranking properties on small hand-made papers, and keyword picks on a real page.

Every test runs twice: `select` one profile at a time (numpy), and `select_many`'s compiled loop
(keyword_batch, what a big run uses), so both ways are held to every property."""

import sys

import random
import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from newsletter.models import Paper, Subscriber
from newsletter.selection import PaperIndex, select, select_many

TODAY = date(2026, 11, 25)
PAGE = Path(__file__).parent / "fixtures" / "selection" / "hf-page-000.txt"
FILLER = [
    ("Sparse attention for long documents", "We make attention sparse so long documents fit in memory."),
    ("A dataset of street scenes", "We collect street scenes from many cities and label them."),
    ("Faster matrix multiplication on GPUs", "Kernels for matrix multiplication run faster on new hardware."),
]


def compiled_select(subscriber, index, *, already_sent=frozenset(), similar=None, has_positives=False):
    """`select` by way of `select_many(..., compiled=True)`."""
    email = subscriber.email
    return select_many(
        index, [subscriber], {email: already_sent}, {email: similar} if similar is not None else {},
        {email} if has_positives else set(), compiled=True,
    )[0]


@pytest.fixture(autouse=True, params=["numpy", "compiled"])
def ranking_way(request, monkeypatch):
    """Which way the tests' `select` goes: "compiled" sends it through the compiled batch loop."""
    if request.param == "compiled":
        monkeypatch.setattr(sys.modules[__name__], "select", compiled_select)
    return request.param


def paper(title, abstract="", *, days=0, upvotes=None, **fields) -> Paper:
    published = None if days is None else TODAY - timedelta(days=days)
    return Paper.create(title, abstract=abstract, published=published, upvotes=upvotes, **fields)


def filler() -> list[Paper]:
    return [paper(title, abstract, days=30) for title, abstract in FILLER]


def reader(**fields) -> Subscriber:
    fields.setdefault("max_age_days", 60)
    return Subscriber(email="reader@example.org", **fields)


def titles(picks) -> list[str]:
    return [pick.paper.title for pick in picks]


def keyword_titles(papers, keywords, **fields) -> list[str]:
    return titles(select(reader(mode="keywords", keywords=keywords, **fields), PaperIndex(papers, TODAY)))


# -- keywords -------------------------------------------------------------------


def test_title_match_beats_abstract_only_match_even_repeated():
    papers = [
        paper("Image synthesis at scale", "diffusion diffusion diffusion diffusion diffusion sampling"),
        paper("Diffusion for images", "We study images."),
        *filler(),
    ]
    assert keyword_titles(papers, ["diffusion"]) == ["Diffusion for images", "Image synthesis at scale"]


def test_phrase_beats_scattered_words():
    papers = [
        paper("Learning to walk", "Learning to walk from the reinforcement a teacher gives."),
        paper("Robots that walk", "We use reinforcement learning for walking."),
        paper("Learning to run", "Far away from that word, at the end, comes reinforcement: too far to count."),
        *filler(),
    ]
    picks = select(reader(mode="keywords", keywords=["reinforcement learning"]), PaperIndex(papers, TODAY))
    assert titles(picks) == ["Robots that walk", "Learning to walk"]
    assert picks[0].score > picks[1].score
    assert picks[1].reasons == ['matched "reinforcement learning" with words apart']


def test_a_phrase_needs_its_words_in_order():
    papers = [paper("Learning reinforcement signals", "Nothing else."), *filler()]
    picks = select(reader(mode="keywords", keywords=["reinforcement learning"]), PaperIndex(papers, TODAY))
    assert picks[0].reasons == ['matched "reinforcement learning" with words apart']


def test_weights_are_applied():
    papers = [paper("Alpha methods", days=0), paper("Beta methods", days=1), *filler()]
    assert keyword_titles(papers, ["alpha", "beta"]) == ["Alpha methods", "Beta methods"]
    assert keyword_titles(papers, ["alpha", "beta^3"]) == ["Beta methods", "Alpha methods"]
    assert keyword_titles(papers, ["alpha^0.5", "beta"]) == ["Beta methods", "Alpha methods"]


def test_more_keywords_matched_ranks_higher():
    papers = [
        paper("Graph networks", "We study graphs."), paper("Graph networks for molecules", "Molecules."), *filler(),
    ]
    assert keyword_titles(papers, ["graph network", "molecule"])[0] == "Graph networks for molecules"


def test_exclusion_removes_the_paper_whatever_it_matches():
    papers = [
        paper("A survey of diffusion models", "Diffusion everywhere."),
        paper("Diffusion models for audio", "We generate audio."),
        paper("Diffusion for text", "A large language model helps."),
        paper("Diffusion for video", "A large model of language helps."),
        *filler(),
    ]
    assert set(keyword_titles(papers, ["diffusion", "-survey"])) == {
        "Diffusion for text", "Diffusion for video", "Diffusion models for audio",
    }
    # a phrase exclusion needs the phrase; its words apart do not exclude
    assert "Diffusion for text" not in keyword_titles(papers, ["diffusion", "-large language models"])
    assert "Diffusion for video" in keyword_titles(papers, ["diffusion", "-large language models"])


def test_a_paper_matching_no_positive_keyword_is_not_picked():
    papers = [paper("Diffusion for audio"), *filler()]
    assert keyword_titles(papers, ["transformer"]) == []


@pytest.mark.parametrize("keyword", ["policies", "policy"])
def test_plural_and_singular_match_each_other(keyword):
    papers = [paper("Learning a policy", "One policy."), paper("Policies for robots", "Many policies."), *filler()]
    assert set(keyword_titles(papers, [keyword])) == {"Learning a policy", "Policies for robots"}


@pytest.mark.parametrize("keyword", ["pre-training", "pretraining", "pre training", "Pre-Training"])
def test_hyphen_space_and_joined_forms_match_each_other(keyword):
    papers = [
        paper("Pre-training vision models"),
        paper("Pretraining speech models"),
        paper("Pre training text models"),
        paper("Training from scratch"),
        *filler(),
    ]
    assert set(keyword_titles(papers, [keyword])) == {
        "Pre-training vision models", "Pretraining speech models", "Pre training text models",
    }


def test_compound_variants_inside_longer_phrases():
    papers = [
        paper("Self-supervised pretraining of encoders"),
        paper("Self supervised pre-training of decoders"),
        paper("Selfsupervised pre training of adapters"),
        paper("Supervised pretraining of heads"),
        *filler(),
    ]
    expected = {
        "Self-supervised pretraining of encoders",
        "Self supervised pre-training of decoders",
        "Selfsupervised pre training of adapters",
    }
    for keyword in ["self-supervised pre-training", "self supervised pretraining", "selfsupervised pretraining"]:
        picks = select(reader(mode="keywords", keywords=[keyword]), PaperIndex(papers, TODAY))
        assert {p.paper.title for p in picks if "in title" in p.reasons[0]} == expected, keyword


def test_matching_is_case_insensitive_over_title_and_abstract():
    papers = [paper("Nothing here", "We use a TRANSFORMER."), *filler()]
    picks = select(reader(mode="keywords", keywords=["Transformers"]), PaperIndex(papers, TODAY))
    assert picks[0].reasons == ['matched "Transformers" in abstract']


def test_keyword_reasons_use_the_users_text():
    papers = [
        paper("Reinforcement learning for robots", "We learn a policy.", arxiv_id="2411.00001"),
        paper("Policy search", "A policy; reinforcement learning again.", arxiv_id="2411.00002"),
        *filler(),
    ]
    picks = select(
        reader(mode="keywords", keywords=["Reinforcement Learning^2", "policy", "-survey"]), PaperIndex(papers, TODAY)
    )
    assert picks[0].reasons == ['matched "Reinforcement Learning" in title; "policy" in abstract']
    assert picks[1].reasons == ['matched "Reinforcement Learning" in abstract; "policy" in title and abstract']


def test_keyword_ties_go_to_the_more_recent_paper():
    papers = [
        paper("Undated quantum paper", "Same text.", days=None),
        paper("Old quantum paper", "Same text.", days=5),
        paper("New quantum paper", "Same text.", days=1),
    ]
    assert keyword_titles(papers + filler(), ["quantum"]) == [
        "New quantum paper", "Old quantum paper", "Undated quantum paper",
    ]
    assert keyword_titles(papers[1:] + filler(), ["quantum"]) == ["New quantum paper", "Old quantum paper"]


def test_a_profile_without_positive_keywords_gets_no_keyword_picks():
    unchecked = Subscriber.model_construct(
        email="reader@example.org", mode="keywords", keywords=["-survey"], max_items=5, min_upvotes=None,
        max_age_days=7, trending_share=0.3,
    )
    assert select(unchecked, PaperIndex(filler(), TODAY)) == []


def test_keyword_filters():
    papers = [
        paper("Fresh robots", days=1, upvotes=3),
        paper("Old robots", days=20, upvotes=50),
        paper("Unvoted robots", days=1, upvotes=None),
        *filler(),
    ]
    assert set(keyword_titles(papers, ["robot"], max_age_days=7)) == {"Fresh robots", "Unvoted robots"}
    assert set(keyword_titles(papers, ["robot"], min_upvotes=3)) == {"Fresh robots", "Old robots"}
    assert keyword_titles(papers, ["robot"], min_upvotes=4, max_age_days=7) == []
    assert keyword_titles(papers, ["old"], min_upvotes=1, max_age_days=7) == []


def test_bad_keyword_syntax_raises_value_error():
    subscriber = reader(mode="keywords", keywords=["diffusion", "x^abc"])
    with pytest.raises(ValueError, match="keyword 'x\\^abc'"):
        select(subscriber, PaperIndex(filler(), TODAY))


# -- trending -------------------------------------------------------------------


def trending(papers, **fields):
    return select(reader(mode="trending", **fields), PaperIndex(papers, TODAY))


def test_decay_puts_100_today_above_120_a_week_ago():
    papers = [paper("Last week", days=7, upvotes=120), paper("Today", days=0, upvotes=100)]
    assert titles(trending(papers)) == ["Today", "Last week"]


def test_unknown_upvotes_come_after_all_known_ones():
    papers = [
        paper("Unvoted today", days=0, upvotes=None),
        paper("Zero votes last month", days=30, upvotes=0),
        paper("Two votes", days=3, upvotes=2),
    ]
    assert titles(trending(papers)) == ["Two votes", "Zero votes last month", "Unvoted today"]


def test_trending_ties_go_to_the_more_recent_paper():
    papers = [
        paper("Unvoted old", days=4),
        paper("Undated", days=None),
        paper("Unvoted new", days=1),
        paper("Zero old", days=9, upvotes=0),
        paper("Zero new", days=2, upvotes=0),
    ]
    assert titles(trending(papers)) == ["Zero new", "Zero old", "Unvoted new", "Unvoted old", "Undated"]


def test_age_falls_back_to_first_seen():
    papers = [
        paper("Seen a week ago", days=None, upvotes=120, first_seen=datetime(2026, 11, 18, 9, tzinfo=timezone.utc)),
        paper("Seen today", days=None, upvotes=100, first_seen=datetime(2026, 11, 25, 6)),
    ]
    assert titles(trending(papers)) == ["Seen today", "Seen a week ago"]
    assert titles(trending(papers, max_age_days=3)) == ["Seen today"]


def test_min_upvotes_and_max_age_filters():
    papers = [
        paper("Five", days=1, upvotes=5),
        paper("Four", days=1, upvotes=4),
        paper("Unknown", days=1, upvotes=None),
        paper("Old", days=8, upvotes=500),
        paper("Exactly a week", days=7, upvotes=7),
        paper("Undated", days=None, upvotes=6),
        paper("Tomorrow", days=-1, upvotes=1),
    ]
    assert set(titles(trending(papers, min_upvotes=5, max_age_days=7))) == {"Five", "Exactly a week", "Undated"}
    assert set(titles(trending(papers, max_age_days=1))) == {"Five", "Four", "Unknown", "Undated", "Tomorrow"}


def test_trending_reasons():
    papers = [paper("Big", upvotes=148), paper("Small", upvotes=1), paper("Unvoted")]
    assert [pick.reasons for pick in trending(papers)] == [
        ["trending #1 today, 148 upvotes"],
        ["trending #2 today, 1 upvote"],
        ["trending #3 today (no upvote count yet)"],
    ]
    # the rank is the paper's place in the whole edition, not in one reader's filtered list
    assert trending(papers, min_upvotes=1)[1].reasons == ["trending #2 today, 1 upvote"]
    assert trending(papers, min_upvotes=2)[0].reasons == ["trending #1 today, 148 upvotes"]


def test_exclusions_apply_to_trending_too():
    papers = [paper("A survey of everything", upvotes=100), paper("Something new", upvotes=1)]
    assert titles(trending(papers, keywords=["-survey"])) == ["Something new"]


# -- every mode -----------------------------------------------------------------


def many_papers(count=40):
    return [
        paper(f"Robot paper {n}", "Robots walk.", days=n % 5, upvotes=count - n, arxiv_id=f"2411.{n:05d}")
        for n in range(count)
    ]


@pytest.mark.parametrize("mode", ["trending", "keywords", "mixed"])
def test_never_repeats_a_sent_paper(mode):
    papers = many_papers()
    index = PaperIndex(papers, TODAY)
    subscriber = reader(mode=mode, keywords=["robot"], max_items=10)
    first = select(subscriber, index)
    sent = {pick.paper.id for pick in first}
    second = select(subscriber, index, already_sent=sent | {"2411.99999", "not-in-the-index"})
    assert len(second) == 10 and not sent & {pick.paper.id for pick in second}
    everything = {p.id for p in papers}
    assert select(subscriber, index, already_sent=everything) == []


@pytest.mark.parametrize("mode", ["trending", "keywords", "mixed"])
@pytest.mark.parametrize("max_items", [1, 3, 10])
def test_at_most_max_items(mode, max_items):
    picks = select(reader(mode=mode, keywords=["robot"], max_items=max_items), PaperIndex(many_papers(), TODAY))
    assert len(picks) == max_items
    assert len({pick.paper.id for pick in picks}) == max_items


def mixed(papers, **fields):
    return select(reader(mode="mixed", **fields), PaperIndex(papers, TODAY))


def mixed_papers():
    hot = [paper(f"Hot topic {n}", "Celebrities.", upvotes=1000 - n, arxiv_id=f"2411.1{n:04d}") for n in range(10)]
    niche = [paper(f"Quantum note {n}", "Qubits.", upvotes=n, arxiv_id=f"2411.2{n:04d}") for n in range(10)]
    both = [paper("Quantum hot topic", "Quantum qubits for celebrities.", upvotes=5000, arxiv_id="2411.30000")]
    return hot + niche + both


def test_mixed_splits_slots_without_duplicates():
    picks = mixed(mixed_papers(), keywords=["quantum"], max_items=10, trending_share=0.3)
    keyword_picks = [p for p in picks if p.reasons[0].startswith("matched")]
    trending_picks = [p for p in picks if p.reasons[0].startswith("trending")]
    assert len(picks) == 10 and len({p.paper.id for p in picks}) == 10
    assert (len(keyword_picks), len(trending_picks)) == (7, 3)
    assert picks == keyword_picks + trending_picks
    # the paper on top of both lists is taken once, as a keyword pick; trending moves on
    assert picks[0].paper.title == "Quantum hot topic"
    assert titles(trending_picks) == ["Hot topic 0", "Hot topic 1", "Hot topic 2"]
    assert trending_picks[0].reasons == ["trending #2 today, 1000 upvotes"]


@pytest.mark.parametrize("share, keyword_count", [(0.0, 10), (0.25, 8), (0.5, 5), (1.0, 0)])
def test_mixed_slot_count_is_rounded_share(share, keyword_count):
    picks = mixed(mixed_papers(), keywords=["quantum"], max_items=10, trending_share=share)
    assert sum(p.reasons[0].startswith("matched") for p in picks) == min(keyword_count, 11)
    assert len(picks) == 10


def test_mixed_refills_from_trending_when_keywords_run_short():
    papers = mixed_papers()
    picks = mixed(papers, keywords=["qubit"], max_items=15, trending_share=0.2)
    assert sum(p.reasons[0].startswith("matched") for p in picks) == 11
    assert len(picks) == 15
    sparse = mixed(papers, keywords=["nothing-matches-this"], max_items=5)
    assert len(sparse) == 5 and all(p.reasons[0].startswith("trending") for p in sparse)


def test_mixed_refills_from_keywords_when_trending_runs_short():
    papers = [paper(f"Quantum {n}", upvotes=n) for n in range(6)]
    picks = mixed(papers, keywords=["quantum"], max_items=10, trending_share=0.9)
    assert len(picks) == 6 and len({p.paper.id for p in picks}) == 6


def test_empty_index_and_duplicate_ids():
    assert select(reader(mode="keywords", keywords=["x"]), PaperIndex([], TODAY)) == []
    first = paper("Same id", "first", arxiv_id="2411.00001v1")
    again = paper("Same id, another version", "second", arxiv_id="2411.00001v2")
    index = PaperIndex([first, again], TODAY)
    assert len(index) == 1
    assert [p.paper for p in select(reader(mode="trending"), index)] == [first]


@pytest.mark.parametrize("keywords", [["robot"], ["robot^2"], ["robot", "walk^0.5", "-paper 3"]])
def test_sent_papers_give_their_places_to_the_next_best_unchanged(keywords):
    """Sending the best picks moves the rest up, with the same scores and reasons (the ranking
    skips sent papers among its best `limit + len(sent)`, so many sent papers at the top must not cut it short)."""
    papers = [
        paper(f"Paper {n}" + " robot" * (n % 2), "robot " * (n % 7) + "walk " * (n % 3), days=n % 5) for n in range(40)
    ]
    index = PaperIndex(papers, TODAY)
    subscriber = reader(mode="keywords", keywords=keywords, max_items=10)
    ranking = [(p.paper.id, p.score, p.reasons) for p in select(reader(mode="keywords", keywords=keywords, max_items=40), index)]
    assert len(ranking) > 25 and len({score for _, score, _ in ranking}) > 10
    for sent in ({ranking[0][0]}, {pick[0] for pick in ranking[:12]}, {pick[0] for pick in ranking[::2]}):
        again = [(p.paper.id, p.score, p.reasons) for p in select(subscriber, index, already_sent=sent)]
        assert again == [pick for pick in ranking if pick[0] not in sent][:10]


def test_a_shorter_list_is_the_head_of_a_longer_one_and_the_index_is_reusable():
    """Property check on random papers: every mode, every filter, against one shared index."""
    rng = random.Random(7)
    vocabulary = "graph neural network diffusion model video generation robot policy language agent".split()
    papers = [
        paper(
            " ".join(rng.choices(vocabulary, k=rng.randint(2, 6))) + f" {n}",
            " ".join(rng.choices(vocabulary, k=rng.randint(5, 40))),
            days=rng.choice([None, 0, 1, 2, 5, 9, 20]),
            upvotes=rng.choice([None, 0, 1, 3, 10, 50]),
        )
        for n in range(120)
    ]
    index = PaperIndex(papers, TODAY)
    for _ in range(60):
        choices = ["graph neural network", "diffusion^2", "video-generation", "robot", "policies", "agent^0.5"]
        keywords = [rng.choice(choices) for _ in range(rng.randint(1, 4))]
        if rng.random() < 0.4:
            keywords.append(rng.choice(["-language", "-neural network"]))
        fields = dict(
            mode=rng.choice(["trending", "keywords", "mixed"]),
            keywords=keywords,
            min_upvotes=rng.choice([None, 1, 10]),
            max_age_days=rng.choice([1, 3, 7, 30]),
            trending_share=rng.choice([0.0, 0.3, 1.0]),
        )
        sent = set(rng.sample([p.id for p in papers], 10))
        long = select(reader(max_items=100, **fields), index, already_sent=sent)
        fresh = select(reader(max_items=100, **fields), PaperIndex(papers, TODAY), already_sent=sent)
        assert [(p.paper.id, p.reasons) for p in long] == [(p.paper.id, p.reasons) for p in fresh]
        if fields["mode"] != "mixed":
            short = select(reader(max_items=7, **fields), index, already_sent=sent)
            assert [p.paper.id for p in short] == [p.paper.id for p in long[:7]]
        excluded = [k[1:] for k in keywords if k.startswith("-")]
        for pick in long:
            assert pick.paper.id not in sent
            age = None if pick.paper.published is None else (TODAY - pick.paper.published).days
            assert age is None or age <= fields["max_age_days"]
            if fields["min_upvotes"] is not None:
                assert pick.paper.upvotes is not None and pick.paper.upvotes >= fields["min_upvotes"]
            text = f"{pick.paper.title} {pick.paper.abstract}"
            assert not any(term in text for term in excluded)
        scores = [p.score for p in long if p.reasons[0].startswith("matched")]
        assert scores == sorted(scores, reverse=True)


# -- the real sample page -------------------------------------------------------


def load_page(path: Path) -> list[tuple[str, str]]:
    """Title/abstract pairs from a blank-line page dump: a short block followed by a long one."""
    blocks = [" ".join(block.split()) for block in path.read_text(encoding="utf-8").split("\n\n")]
    return [(title, abstract) for title, abstract in zip(blocks, blocks[1:]) if 0 < len(title) < 300 < len(abstract)]


def loose(keyword: str) -> re.Pattern:
    """A reader's own check: the words in order, each maybe plural, hyphen, space or nothing between."""
    parts = [re.escape(word) + "(?:s|es)?" for word in re.findall(r"\w+", keyword.lower())]
    return re.compile(r"\b" + r"[\s-]?".join(parts) + r"\b")


def contains(keyword: str, text: str) -> bool:
    """The loose check, or for compounds (`multimodal` in `multi-modal`) the letters with no breaks."""
    compact = re.compile(r"[\W_]+")
    return bool(loose(keyword).search(text)) or compact.sub("", keyword.lower()) in compact.sub("", text)


PROFILES = [
    ["language model", "reinforcement learning", "-survey"],
    ["video generation^2", "diffusion", "benchmark"],
    ["pre-training", "quantization", "fine-tuning"],
    ["pretraining", "agent", "reasoning^0.5", "-large language model"],
    ["multimodal", "text-to-video", "efficient training"],
]


@pytest.mark.parametrize("keywords", PROFILES)
def test_every_keyword_pick_on_the_real_page_contains_what_it_claims(keywords):
    pairs = load_page(PAGE)
    assert len(pairs) == 56
    papers = [paper(title, abstract, days=n % 7, upvotes=n) for n, (title, abstract) in enumerate(pairs)]
    picks = select(reader(mode="keywords", keywords=keywords, max_items=20), PaperIndex(papers, TODAY))
    assert picks
    exclusions = [loose(k[1:]) for k in keywords if k.startswith("-")]
    for pick in picks:
        title, abstract = pick.paper.title.lower(), pick.paper.abstract.lower()
        assert not any(pattern.search(title) or pattern.search(abstract) for pattern in exclusions)
        reason = pick.reasons[0]
        assert reason.startswith("matched ")
        claims = re.findall(r'"([^"]+)" (in title and abstract|in title|in abstract|with words apart)', reason)
        for text, place in claims:
            if place == "with words apart":
                assert all(re.search(r"\b" + w, f"{title} {abstract}") for w in re.findall(r"\w+", text.lower()))
                continue
            if "title" in place:
                assert contains(text, title), (text, title)
            if "abstract" in place:
                assert contains(text, abstract), (text, abstract[:200])
            if place == "in title":
                assert not loose(text).search(abstract), (text, "also in abstract")


def test_resolving_keywords_together_finds_what_one_at_a_time_finds():
    """`resolve` scores one-word keywords in one pass over their postings: the same papers, scores, bit for bit,
    and places as the one-keyword-at-a-time path, so a profile's picks do not depend on which path found them."""
    pairs = load_page(PAGE)
    papers = [paper(title, abstract, days=n % 7, upvotes=n) for n, (title, abstract) in enumerate(pairs)]
    vocabulary = sorted({word for title, abstract in pairs for word in re.findall(r"[a-z]{4,}", f"{title} {abstract}".lower())})
    keywords = vocabulary[::3] + ["-" + word for word in vocabulary[1::40]] + ["zzzunseen", "pretraining", "video generation"]
    together, alone = PaperIndex(papers, TODAY), PaperIndex(papers, TODAY)
    together.resolve(keywords)
    assert len(together._keywords) == len(set(keywords))
    for raw in keywords:
        (_, batch), (_, single) = together._keywords[raw], alone._keyword(raw)
        assert batch.docs.tolist() == single.docs.tolist() and batch.hits.tolist() == single.hits.tolist()
        assert batch.scores.tobytes() == single.scores.tobytes() and batch.where == single.where, raw
    rng = random.Random(3)
    for _ in range(40):
        profile = reader(mode=rng.choice(["keywords", "mixed"]), keywords=rng.sample(keywords, 4), max_items=8)
        assert [(p.paper.id, p.score, p.reasons) for p in select(profile, together)] == [
            (p.paper.id, p.score, p.reasons) for p in select(profile, alone)
        ]
