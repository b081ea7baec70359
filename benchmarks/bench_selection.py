"""Selection speed: one PaperIndex, every subscriber selected against it, versus the naive loop.

Papers are generated from a word-bigram chain trained on the real sample page
(tests/fixtures/selection/hf-page-000.txt), so titles and abstracts share the
vocabulary and phrases of real ones, dated over 30 days, 20% without upvotes.
Profiles take 3-8 keywords from that vocabulary (topical words, frequent
two-word phrases, some hyphenated, some weighted, some exclusions), modes 60%
keywords / 25% mixed / 15% trending, assorted limits, up to 20 papers already
sent.  The naive way loops over every paper for every subscriber with one regex
per keyword; it runs on a sample of subscribers and is extrapolated.

    python benchmarks/bench_selection.py                       # 10,000 papers x 100,000 subscribers
    python benchmarks/bench_selection.py --papers 2000 --subscribers 5000
    python benchmarks/bench_selection.py --check main    # same picks as main's selection.py, both ways? (no timing)

It also times selection spread over forked worker processes (`--processes`,
default one per core), the way a big `send` selects: every distinct keyword
resolved and laid out once on the index (its words and phrases found in forked
children while numba loads), then the profiles shared out, each worker selecting CHUNK
at a time with `select_many`'s compiled loop (`--way numpy`: one `select` call
a profile instead). (`newsletter send`'s workers each build the index of their
edition dates and resolve their own share's keywords.)
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import random
import re
import subprocess
import sys
import time
import types
from collections import Counter, defaultdict
from datetime import date, timedelta
from itertools import accumulate
from itertools import chain as chained
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from newsletter.keywords import parse_keywords  # noqa: E402
from newsletter.models import Paper, Subscriber  # noqa: E402
from newsletter.selection import PaperIndex, paper_age, select, select_many  # noqa: E402

SAMPLE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "selection" / "hf-page-000.txt"
TODAY = date(2026, 11, 25)
STOP = set(
    "a an and are as at be been but by can for from has have in into is it its more most not of on or our over "
    "such than that the their these this those through to under use used using via was we were which while "
    "with without both each also only other they them how what when where who new well two one all any may".split()
)


def corpus() -> list[list[str]]:
    """The sample page's titles and abstracts as word lists (blocks of a few words that are not author lines)."""
    blocks = [" ".join(block.split()) for block in SAMPLE.read_text(encoding="utf-8").split("\n\n")]
    return [block.split() for block in blocks if len(block.split()) >= 4 and not block.startswith("•")]


def chain(texts: list[list[str]]) -> dict[str, list[str]]:
    following = defaultdict(list)
    for text in texts:
        for left, right in zip(text, text[1:]):
            following[left].append(right)
    return following


def babble(rng: random.Random, following: dict[str, list[str]], starts: list[str], length: int) -> str:
    word = rng.choice(starts)
    out = [word]
    while len(out) < length:
        options = following.get(word)
        word = rng.choice(options) if options else rng.choice(starts)
        out.append(word)
    return " ".join(out)


def make_papers(rng: random.Random, count: int) -> list[Paper]:
    texts = corpus()
    following = chain(texts)
    starts = [text[0] for text in texts]
    papers = []
    for n in range(count):
        upvotes = None if rng.random() < 0.2 else int(rng.lognormvariate(2, 1.3))
        papers.append(
            Paper.create(
                babble(rng, following, starts, rng.randint(6, 14)),
                arxiv_id=f"2611.{n:05d}",
                abstract=babble(rng, following, starts, rng.randint(120, 250)),
                published=TODAY - timedelta(days=rng.randint(0, 30)),
                upvotes=upvotes,
            )
        )
    return papers


def keyword_pool(papers: list[Paper]) -> tuple[list[str], list[float], list[str], list[float]]:
    """Topical words (in 0.3-10% of papers, weighted by the square root of that share) and
    the 600 most frequent two-word phrases (weighted the same way): what readers type.
    The weights come cumulative, so that drawing a keyword does not add them all up again."""
    doc_words, doc_pairs = Counter(), Counter()
    sample = papers[:2000]
    for paper in sample:
        tokens = re.findall(r"[a-z]+(?:-[a-z]+)*", f"{paper.title} {paper.abstract}".lower())
        # dict.fromkeys, not set: the pool's order (and so every profile) must not depend on PYTHONHASHSEED
        doc_words.update(dict.fromkeys(t for t in tokens if t not in STOP and len(t) > 4).keys())
        doc_pairs.update(
            dict.fromkeys(
                f"{a} {b}" for a, b in zip(tokens, tokens[1:]) if a not in STOP and b not in STOP and len(a) > 2
            ).keys()
        )
    terms = [(w, c**0.5) for w, c in doc_words.items() if 0.003 <= c / len(sample) <= 0.1]
    phrases = [(p, c**0.5) for p, c in doc_pairs.most_common(600) if c >= 3]
    return (
        [w for w, _ in terms], list(accumulate(c for _, c in terms)),
        [p for p, _ in phrases], list(accumulate(c for _, c in phrases)),
    )


def make_subscribers(rng: random.Random, count: int, papers: list[Paper]) -> list[tuple[Subscriber, set[str]]]:
    terms, term_weights, phrases, phrase_weights = keyword_pool(papers)  # cumulative weights
    ids = [paper.id for paper in papers]
    out = []
    for n in range(count):
        keywords = []
        for _ in range(rng.randint(3, 8)):
            if rng.random() < 0.35:
                text = rng.choices(phrases, cum_weights=phrase_weights)[0]
                if rng.random() < 0.2:
                    text = text.replace(" ", "-")
            else:
                text = rng.choices(terms, cum_weights=term_weights)[0]
            roll = rng.random()
            if roll < 0.1 and keywords:
                text = "-" + text
            elif roll < 0.25:
                text += rng.choice(["^2", "^0.5", "^1.5"])
            keywords.append(text)
        mode = rng.choices(["keywords", "mixed", "trending"], [60, 25, 15])[0]
        subscriber = Subscriber.model_construct(
            email=f"reader{n}@example.org",
            mode=mode,
            keywords=keywords,
            max_items=rng.choice([5, 10, 10, 10, 15, 20]),
            min_upvotes=rng.choice([None, None, None, 1, 5, 10]),
            max_age_days=rng.choice([1, 3, 7, 7, 14, 30]),
            trending_share=rng.choice([0.2, 0.3, 0.5]),
        )
        out.append((subscriber, set(rng.sample(ids, rng.randint(0, 20)))))
    return out


def naive_select(subscriber: Subscriber, papers: list[Paper], already_sent: set[str]) -> list[tuple[float, Paper]]:
    """The nested loop: every paper, every keyword, a regex each time."""
    keywords = parse_keywords(subscriber.keywords)
    patterns = [
        (k, re.compile(r"\b" + r"[\s-]?".join(re.escape(t) + r"(?:s|es)?" for t in k.terms) + r"\b"))
        for k in keywords
    ]
    kept = []
    for paper in papers:
        age = paper_age(paper, TODAY)
        if paper.id in already_sent or (age is not None and age > subscriber.max_age_days):
            continue
        if subscriber.min_upvotes is not None and (paper.upvotes is None or paper.upvotes < subscriber.min_upvotes):
            continue
        if subscriber.mode == "trending":
            kept.append(((paper.upvotes or 0) / ((age or 0) + 2) ** 1.5, paper))
            continue
        score = 0.0
        title, abstract = paper.title.lower(), paper.abstract.lower()
        for keyword, pattern in patterns:
            found = 3 * len(pattern.findall(title)) + len(pattern.findall(abstract))
            if found and keyword.exclude:
                score = 0.0
                break
            score += keyword.weight * found
        if score:
            kept.append((score, paper))
    kept.sort(key=lambda pair: -pair[0])
    return kept[: subscriber.max_items]


FORKED: tuple = ()  # (index, subscribers) set before forking: the workers inherit them
CHUNK = 500  # profiles per select_many call in a worker


def select_share(share: tuple[int, int, bool]) -> tuple[int, float]:
    """In a forked worker: select every `step`th subscriber from `start` (`compiled`: CHUNK at a time, as
    `send`'s workers do); the number of picks and the CPU time."""
    start, step, compiled = share
    index, subscribers = FORKED
    cpu = time.process_time()
    mine = subscribers[start::step]
    if compiled:
        picks = 0
        for at in range(0, len(mine), CHUNK):
            chunk = mine[at : at + CHUNK]
            sent = {subscriber.email: already for subscriber, already in chunk}
            picks += sum(map(len, select_many(index, [subscriber for subscriber, _ in chunk], sent, compiled=True)))
    else:
        picks = sum(len(select(subscriber, index, already_sent=sent)) for subscriber, sent in mine)
    return picks, time.process_time() - cpu


def selection_at(revision: str):
    """newsletter/selection.py as it is at a git revision, imported as a module of its own."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(
        ["git", "-C", str(root), "show", f"{revision}:newsletter/selection.py"],
        capture_output=True, text=True, check=True,
    ).stdout
    module = types.ModuleType(f"selection_at_{revision}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{revision}:newsletter/selection.py", "exec"), module.__dict__)
    return module


def check(papers: list[Paper], subscribers: list[tuple[Subscriber, set[str]]], revision: str) -> int:
    """Every profile's picks (paper, score, reasons, in order) now, one at a time and by the compiled loop,
    against `revision`'s; the number that differ."""
    old = selection_at(revision)
    old_index, index = old.PaperIndex(papers, TODAY), PaperIndex(papers, TODAY)
    index.resolve(keyword for subscriber, _ in subscribers for keyword in subscriber.keywords)  # as forked workers
    compiled = PaperIndex(papers, TODAY)
    compiled.resolve(chained.from_iterable(subscriber.keywords for subscriber, _ in subscribers), compiled=True, processes=2)
    sent_by_email = {subscriber.email: sent for subscriber, sent in subscribers}
    batched = []
    for at in range(0, len(subscribers), CHUNK):
        chunk = [subscriber for subscriber, _ in subscribers[at : at + CHUNK]]
        batched += select_many(compiled, chunk, sent_by_email, compiled=True)
    differ = 0
    for (subscriber, sent), picks in zip(subscribers, batched):
        before = [(p.paper.id, p.score, p.reasons) for p in old.select(subscriber, old_index, already_sent=sent)]
        now = [(p.paper.id, p.score, p.reasons) for p in select(subscriber, index, already_sent=sent)]
        also = [(p.paper.id, p.score, p.reasons) for p in picks]
        if not before == now == also:
            differ += 1
            if differ <= 3:
                print(f"differs: {subscriber.email} {subscriber.keywords}\n  {revision}: {before}\n  now: {now}"
                      f"\n  compiled: {also}")
    return differ


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=10_000)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--naive-sample", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--processes", type=int, default=len(os.sched_getaffinity(0)),
                        help="also time selection shared out to this many forked workers, after resolving the keywords with as many processes (default: the cores)")
    parser.add_argument("--way", choices=["compiled", "numpy"], default="compiled",
                        help="how the forked workers select: select_many's compiled loop, CHUNK profiles a call"
                        " (default), or select one profile at a time (numpy)")
    parser.add_argument("--check", metavar="REVISION",
                        help="instead of timing, compare every profile's picks with selection.py at this git revision")
    parser.add_argument("--check-sample", type=int, default=5_000, help="how many profiles --check compares")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    papers = make_papers(rng, args.papers)
    subscribers = make_subscribers(rng, args.subscribers, papers)
    print(f"{len(papers):,} papers, {len(subscribers):,} subscribers")
    if args.check:
        sample = subscribers[: args.check_sample]
        differ = check(papers, sample, args.check)
        print(f"{differ:,} of {len(sample):,} profiles' picks differ from {args.check}'s")
        sys.exit(1 if differ else 0)

    start = time.perf_counter()
    index = PaperIndex(papers, TODAY)
    built = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    picks = sum(len(select(subscriber, index, already_sent=sent)) for subscriber, sent in subscribers)
    fast, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"index build:         {built:8.2f} s")
    print(
        f"select, one process: {fast:8.2f} s  ({cpu:.2f} s CPU; {fast / len(subscribers) * 1e6:.0f} us per subscriber,"
        f" {picks:,} picks)"
    )

    forked = None
    if args.processes > 1:
        fresh = PaperIndex(papers, TODAY)
        gc.freeze()  # as `newsletter send` does once its subscribers are loaded: no collection rescans them
        start = time.perf_counter()
        fresh.resolve(chained.from_iterable(subscriber.keywords for subscriber, _ in subscribers),
                      compiled=args.way == "compiled", processes=args.processes)
        resolved = time.perf_counter() - start
        global FORKED
        FORKED = (fresh, subscribers)
        gc.freeze()  # and what resolving made: collections in the workers must not touch (and copy) the shared pages
        start = time.perf_counter()
        with multiprocessing.get_context("fork").Pool(args.processes) as pool:
            shares = pool.map(select_share, [(n, args.processes, args.way == "compiled") for n in range(args.processes)])
        selected = time.perf_counter() - start
        assert sum(count for count, _ in shares) == picks
        forked = resolved + selected
        print(
            f"select, {args.processes} processes, {args.way}: {forked:6.2f} s  ("
            f"{resolved:.2f} s resolving {len(fresh._keywords):,} distinct keywords once"
            + (", loading numba meanwhile, and laying them out," if args.way == "compiled" else ",")
            + f" then {selected:.2f} s in forked workers,"
            f" {' + '.join(f'{cpu:.2f}' for _, cpu in shares)} s CPU); {built + forked:.2f} s with the index build"
        )

    sample = subscribers[: args.naive_sample]
    start = time.perf_counter()
    for subscriber, sent in sample:
        naive_select(subscriber, papers, sent)
    naive = (time.perf_counter() - start) / len(sample) * len(subscribers)
    print(f"naive, extrapolated: {naive:8.2f} s  (from {len(sample)} subscribers, same run)")
    print(f"speed-up, one process: {naive / (built + fast):.0f}x (index build included), {naive / fast:.0f}x (selection alone)")
    if forked:
        print(
            f"speed-up, {args.processes} processes: {naive / (built + forked):.0f}x (index build included),"
            f" {naive / forked:.0f}x (selection alone)"
        )


if __name__ == "__main__":
    main()
