"""newsletter.tfidf stands in for scikit-learn's TfidfVectorizer(sublinear_tf=True, stop_words="english"):
same vocabulary, same rows, fitted and for new texts."""

from __future__ import annotations

import numpy as np
import pytest

from newsletter.embeddings import paper_text
from newsletter.tfidf import STOP_WORDS, SparseRows, Tfidf
from tests.relevance_eval import fixture_papers

sklearn_text = pytest.importorskip("sklearn.feature_extraction.text")
sparse = pytest.importorskip("scipy.sparse")


def scipy_rows(rows: SparseRows):
    return sparse.csr_matrix((rows.data, rows.indices, rows.indptr), shape=rows.shape)


def test_rows_and_vocabulary_are_scikit_learns():
    texts = [paper_text(paper.title, paper.abstract) for paper in fixture_papers()]
    texts += ["", "the and of", "Ünïcode wörds, CAPITALS and digits 42 x2 a b"]
    ours = Tfidf(texts[:300])
    theirs = sklearn_text.TfidfVectorizer(sublinear_tf=True, stop_words="english", dtype=np.float32)
    fitted = theirs.fit_transform(texts[:300])
    assert ours.vocabulary == theirs.vocabulary_
    assert abs(scipy_rows(ours.rows) - fitted).max() < 1e-6
    assert abs(scipy_rows(ours.transform(texts[300:])) - theirs.transform(texts[300:])).max() < 1e-6
    assert STOP_WORDS == sklearn_text.ENGLISH_STOP_WORDS


def test_sparse_rows_compute_what_scipy_does_to_the_last_bit():
    """The ranking's scores are the ones scipy gave before SparseRows replaced it: same sums, same order."""
    rng = np.random.default_rng(0)
    texts = [paper_text(paper.title, paper.abstract) for paper in fixture_papers()]
    rows = Tfidf(texts).rows
    theirs = scipy_rows(rows)
    assert rows.shape == theirs.shape == (len(texts), len(Tfidf(texts).vocabulary))
    by_column = rows.by_column()
    expected = theirs.T.tocsr()
    assert np.array_equal(by_column.indptr, expected.indptr) and np.array_equal(by_column.indices, expected.indices)
    assert np.array_equal(by_column.data, expected.data)
    assert np.array_equal(rows.column_means(), np.asarray(theirs.mean(axis=0)).ravel())
    picked = [5, 0, 5, len(texts) - 1, 17]
    assert np.array_equal(scipy_rows(rows.select(picked)).toarray(), theirs[picked].toarray())
    query = rows.select(rng.choice(len(texts), 40))  # sums over a row's terms: as scipy's product
    query = SparseRows(query.data * rng.random(len(query.data), dtype=np.float32), query.indices, query.indptr, query.columns)
    assert np.array_equal(query.dense_product(by_column), (scipy_rows(query) @ expected).toarray())
    empty = SparseRows.empty(3, rows.shape[1])
    assert np.array_equal(empty.dense_product(by_column), np.zeros((3, len(texts)), dtype=np.float32))
    assert np.array_equal(empty.column_means(), np.zeros(rows.shape[1], dtype=np.float32))


def test_no_words_at_all_is_a_value_error():
    with pytest.raises(ValueError):
        Tfidf(["the of and", ""])
