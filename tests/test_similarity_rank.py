"""SimilarSpace.rank against the plain way: every score of a profile computed, z-scored side by side as
the docstring says, blocked and cut candidates dropped, sorted. Same picks, same order, same scores."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from newsletter import similarity
from newsletter.models import Paper
from newsletter.similarity import Example, SimilarSpace

WORDS = ("quantization pruning adapter lora retrieval ranking testing fuzzing kernel gpu memory data "
         "selection corpus benchmark token attention sparse dense low rank weights").split()


def make(count: int, seed: int = 0) -> tuple[list[Paper], np.ndarray, list[Example]]:
    rng = random.Random(seed)
    papers = [Paper.create(f"paper {n} " + " ".join(rng.choices(WORDS, k=3)), arxiv_id=f"2612.{n:05d}",
                           abstract=" ".join(rng.choices(WORDS, k=rng.randint(5, 40)))) for n in range(count)]
    papers.append(Paper.create(papers[3].title, arxiv_id="2612.99999", abstract=papers[3].abstract))  # a tie
    vectors = np.random.default_rng(seed).standard_normal((len(papers), 16)).astype(np.float32)
    vectors[-1] = vectors[3]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    pool = [Example(p.title, f"{p.title}. {p.abstract}", v) for p, v in zip(papers, vectors)]
    return papers, vectors, pool


def zscore(row: np.ndarray) -> np.ndarray:
    spread = row.std()
    return (row - row.mean()) / spread if spread > 0 else row * 0


def dense(rows) -> np.ndarray:
    """SparseRows as a plain array."""
    out = np.zeros(rows.shape, dtype=np.float32)
    out[np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr)), rows.indices] = rows.data
    return out


def plain_top(space: SimilarSpace, profile, skip: np.ndarray, cut: int, limit: int) -> tuple[list[int], np.ndarray]:
    weight = space.embedding_weight
    embedding = space.vectors @ profile.vector
    lexical = dense(space.lexical)[:, profile.terms] @ profile.weights
    scores = weight * zscore(embedding) + (1 - weight) * zscore(lexical)
    scores[skip] = -np.inf
    scores[cut:] = -np.inf
    order = [int(i) for i in np.argsort(-scores, kind="stable")[:limit] if np.isfinite(scores[i])]
    return order, scores


def compiled(monkeypatch) -> None:
    """Every batch ranked by the compiled loop, on 8 of the 16 directions then the others for all."""
    monkeypatch.setattr(similarity, "KERNEL_PROFILES", 1)
    monkeypatch.setattr(similarity, "LEADING_DIRECTIONS", 8)
    monkeypatch.setattr(similarity, "SHORTLIST", 400)


def batch(weight: float = 0.5):
    """A space of 301 candidates and 72 profiles with blocked positions and age cuts, edge cases included."""
    papers, vectors, pool = make(300)
    space = SimilarSpace(papers, vectors, embedding_weight=weight)
    rng = random.Random(1)
    profiles = [space.profile(rng.sample(pool, rng.randint(1, 6))) for _ in range(70)]
    profiles.insert(5, space.profile([Example("unseen", "zyxw vutsr", pool[0].vector)]))  # no term among the candidates
    profiles.append(space.profile([pool[3]]))  # ranks the tied pair (3 and the last paper) on top
    blocked = [np.array(rng.sample(range(len(papers)), rng.randint(0, 30)), dtype=np.int64) for _ in profiles]
    cuts = [rng.choice([len(papers), len(papers), 150, 12, 5, 0]) for _ in profiles]
    cuts[-1] = len(papers)
    blocked[-1] = np.zeros(0, dtype=np.int64)
    return papers, space, profiles, blocked, cuts


@pytest.mark.parametrize("path", ["numpy", "compiled"])
@pytest.mark.parametrize("weight", [0.5, 1.0, 0.0])
def test_rank_equals_scoring_every_candidate_then_sorting(monkeypatch, weight, path):
    monkeypatch.setattr(similarity, "BLOCK", 16)  # several blocks, so the threads share them
    if path == "compiled":
        compiled(monkeypatch)
    papers, space, profiles, blocked, cuts = batch(weight)
    positions, scores = space.rank(profiles, blocked, 10, cuts)
    assert positions.shape == scores.shape == (len(profiles), 10)
    for n, profile in enumerate(profiles):
        expected, plain = plain_top(space, profile, blocked[n], cuts[n], 10)
        found = [int(i) for i in positions[n] if i >= 0]
        assert len(found) == len(expected), n
        assert np.allclose(scores[n][: len(found)], plain[found], atol=1e-4), n  # the real scores of the real papers
        assert np.all(np.diff(scores[n][: len(found)]) <= 0), n  # best first
        left = np.setdiff1d(np.flatnonzero(np.isfinite(plain)), found)
        if len(left) and found:
            assert plain[found].min() >= plain[left].max() - 1e-4, n  # nothing better left out
        assert np.allclose(np.sort(plain[found]), np.sort(plain[expected]), atol=1e-4), n  # they differ in ties only
        assert np.all(scores[n][len(found):] == -np.inf) and np.all(positions[n][len(found):] == -1)
    assert set(positions[-1][:2].tolist()) == {3, len(papers) - 1}  # the two equal papers, on top


def same_picks(found, expected) -> bool:
    """Same candidates per profile with the same scores (float32 rounding apart: it may swap near-ties)."""
    (positions, scores), (positions_expected, scores_expected) = found, expected
    for row in range(len(positions)):
        mine = dict(zip(positions[row].tolist(), scores[row].tolist()))
        theirs = dict(zip(positions_expected[row].tolist(), scores_expected[row].tolist()))
        if mine.keys() != theirs.keys() or not np.allclose([mine[i] for i in theirs], list(theirs.values()), atol=1e-5):
            return False
    return True


def test_the_compiled_loop_gives_the_numpy_ranking(monkeypatch):
    papers, space, profiles, blocked, cuts = batch()
    expected = space.rank(profiles, blocked, 10, cuts)
    compiled(monkeypatch)
    found = space.rank(profiles, blocked, 10, cuts)
    assert same_picks(found, expected)
    assert np.mean(np.all(found[0] == expected[0], axis=1)) > 0.9  # in the same order, but for near-ties
    monkeypatch.setattr(similarity, "SHORTLIST", 60)  # a shortlist of 60 (of up to 301) on 12 directions of 16
    monkeypatch.setattr(similarity, "LEADING_DIRECTIONS", 12)
    assert same_picks(space.rank(profiles, blocked, 10, cuts), expected)
    monkeypatch.setattr(similarity, "SHORTLIST", 10)  # the shortlist is all the other directions reorder:
    assert not same_picks(space.rank(profiles, blocked, 10, cuts), expected)  # too short a one misses some


@pytest.mark.parametrize("path", ["numpy", "compiled"])
def test_a_limit_above_the_candidates_and_an_empty_day(monkeypatch, path):
    if path == "compiled":
        compiled(monkeypatch)
    papers, vectors, pool = make(6)
    space = SimilarSpace(papers, vectors)
    profile = space.profile(pool[:2])
    positions, _ = space.rank([profile], [np.array([1], dtype=np.int64)], 50)
    assert positions.shape == (1, 7)  # the limit cut to the 7 candidates; one is blocked
    assert sorted(positions[0].tolist()) == [-1, 0, 2, 3, 4, 5, 6]
    empty = SimilarSpace([], np.zeros((0, 16), dtype=np.float32))
    assert empty.rank([profile], [np.zeros(0, dtype=np.int64)], 10)[0].shape == (1, 0)


def test_common_terms_are_left_out_only_on_big_days(monkeypatch):
    papers, vectors, pool = make(300)
    space = SimilarSpace(papers, vectors)
    assert not space._common.any()  # 301 candidates: below MIN_COMMON, every term counts
    monkeypatch.setattr(similarity, "MIN_COMMON", 10)
    space = SimilarSpace(papers, vectors)
    frequent = np.diff(space.by_term.indptr) > 0.1 * len(papers)
    assert space._common.any() and np.array_equal(space._common, frequent)


def test_small_batches_never_import_numba_nor_scipy():
    """Importing numba costs ~0.4 s, scipy.sparse ~0.3 s: a send's chunk of similar readers (below
    KERNEL_PROFILES) must pay neither, from its profiles to its reasons."""
    script = (
        "import sys; from tests.test_similarity_rank import batch; from newsletter import similarity\n"
        "papers, space, profiles, blocked, cuts = batch(); positions, _ = space.rank(profiles, blocked, 10, cuts)\n"
        "space.reasons(profiles[0], positions[0][positions[0] >= 0].tolist())\n"
        "assert not {'numba', 'scipy'} & set(sys.modules), 'numba or scipy imported'\n"
        "similarity.KERNEL_PROFILES = len(profiles); space.rank(profiles, blocked, 10, cuts)\n"
        "assert 'numba' in sys.modules\n"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
