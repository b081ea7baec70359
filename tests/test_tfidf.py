"""newsletter.tfidf stands in for scikit-learn's TfidfVectorizer(sublinear_tf=True, stop_words="english"):
same vocabulary, same rows, fitted and for new texts."""

from __future__ import annotations

import numpy as np
import pytest

from newsletter.embeddings import paper_text
from newsletter.tfidf import STOP_WORDS, Tfidf
from tests.relevance_eval import fixture_papers

sklearn_text = pytest.importorskip("sklearn.feature_extraction.text")


def test_rows_and_vocabulary_are_scikit_learns():
    texts = [paper_text(paper.title, paper.abstract) for paper in fixture_papers()]
    texts += ["", "the and of", "Ünïcode wörds, CAPITALS and digits 42 x2 a b"]
    ours = Tfidf(texts[:300])
    theirs = sklearn_text.TfidfVectorizer(sublinear_tf=True, stop_words="english", dtype=np.float32)
    fitted = theirs.fit_transform(texts[:300])
    assert ours.vocabulary == theirs.vocabulary_
    assert abs(ours.rows - fitted).max() < 1e-6
    assert abs(ours.transform(texts[300:]) - theirs.transform(texts[300:])).max() < 1e-6
    assert STOP_WORDS == sklearn_text.ENGLISH_STOP_WORDS


def test_no_words_at_all_is_a_value_error():
    with pytest.raises(ValueError):
        Tfidf(["the of and", ""])
