"""Tf-idf rows for the similar ranking: what scikit-learn's
`TfidfVectorizer(sublinear_tf=True, stop_words="english")` gives, without importing scikit-learn.

Importing scikit-learn costs 1-6 s per process here (`python -X importtime`), more than ranking a whole
day of similar profiles, and `send` needs only this. tests/test_tfidf.py checks these rows against
scikit-learn's on the fixture papers. Words: runs of 2+ word characters, lower-cased, minus the English
stop words (scikit-learn's list); tf is 1 + ln(count), idf ln((1 + n) / (1 + df)) + 1, rows unit length.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix



def sparse_rows(*args, **kwargs) -> csr_matrix:
    """A scipy CSR matrix. scipy is imported here, on first use: importing it costs ~250 ms, which a
    `send` without similar profiles (most runs) should not pay at every start."""
    from scipy.sparse import csr_matrix

    return csr_matrix(*args, **kwargs)


TOKEN = re.compile(r"(?u)\b\w\w+\b")
STOP_WORDS = frozenset(
    """
    a about above across after afterwards again against all almost alone along already also although always am
    among amongst amoungst amount an and another any anyhow anyone anything anyway anywhere are around as at
    back be became because become becomes becoming been before beforehand behind being below beside besides
    between beyond bill both bottom but by call can cannot cant co con could couldnt cry de describe detail do
    done down due during each eg eight either eleven else elsewhere empty enough etc even ever every everyone
    everything everywhere except few fifteen fifty fill find fire first five for former formerly forty found
    four from front full further get give go had has hasnt have he hence her here hereafter hereby herein
    hereupon hers herself him himself his how however hundred i ie if in inc indeed interest into is it its
    itself keep last latter latterly least less ltd made many may me meanwhile might mill mine more moreover
    most mostly move much must my myself name namely neither never nevertheless next nine no nobody none noone
    nor not nothing now nowhere of off often on once one only onto or other others otherwise our ours
    ourselves out over own part per perhaps please put rather re same see seem seemed seeming seems serious
    several she should show side since sincere six sixty so some somehow someone something sometime sometimes
    somewhere still such system take ten than that the their them themselves then thence there thereafter
    thereby therefore therein thereupon these they thick thin third this those though three through throughout
    thru thus to together too top toward towards twelve twenty two un under until up upon us very via was we
    well were what whatever when whence whenever where whereafter whereas whereby wherein whereupon wherever
    whether which while whither who whoever whole whom whose why will with within without would yet you your
    yours yourself yourselves
    """.split()
)


class Tfidf:
    """The vocabulary and idf of the texts it was fitted on; `transform` weighs other texts the same way."""

    def __init__(self, texts: list[str]):
        words = [self._words(text) for text in texts]
        terms = sorted({word for found in words for word in found})
        if not terms:
            raise ValueError("empty vocabulary: the texts hold no words but stop words")
        self.vocabulary = {term: i for i, term in enumerate(terms)}
        self.idf = np.ones(len(terms), dtype=np.float32)
        counts = self._counts(words)
        df = np.bincount(counts.indices, minlength=len(terms)).astype(np.float64)
        self.idf = (np.log((1 + len(texts)) / (1 + df)) + 1).astype(np.float32)
        self.rows = self._weigh(counts)

    @staticmethod
    def _words(text: str) -> list[str]:
        return [word for word in TOKEN.findall(text.lower()) if word not in STOP_WORDS]

    def transform(self, texts: list[str]) -> csr_matrix:
        return self._weigh(self._counts([self._words(text) for text in texts]))

    def _counts(self, words: list[list[str]]) -> csr_matrix:
        """Each text's count of each known word (a sorted CSR matrix)."""
        size, lookup = len(self.vocabulary), self.vocabulary.get
        flat = np.fromiter((lookup(word, -1) for found in words for word in found), dtype=np.int64,
                           count=sum(len(found) for found in words))
        owner = np.repeat(np.arange(len(words), dtype=np.int64), [len(found) for found in words])
        known = flat >= 0
        keys, counts = np.unique(owner[known] * size + flat[known], return_counts=True)
        starts = np.concatenate([[0], np.cumsum(np.bincount(keys // size, minlength=len(words)))])
        return sparse_rows((counts.astype(np.float32), (keys % size).astype(np.int32), starts), shape=(len(words), size))

    def _weigh(self, counts: csr_matrix) -> csr_matrix:
        """Sublinear tf times idf, each row scaled to unit length."""
        data = (1 + np.log(counts.data)) * self.idf[counts.indices]
        owner = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
        norms = np.sqrt(np.bincount(owner, data.astype(np.float64) ** 2, minlength=counts.shape[0]))
        norms[norms == 0] = 1.0  # a text with none of the words stays a zero row
        return sparse_rows((data / norms[owner].astype(np.float32), counts.indices, counts.indptr), shape=counts.shape)
