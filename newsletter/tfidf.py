"""Tf-idf rows for the similar ranking: what scikit-learn's
`TfidfVectorizer(sublinear_tf=True, stop_words="english")` gives, without importing scikit-learn.

Importing scikit-learn costs 1-6 s per process here (`python -X importtime`), more than ranking a whole
day of similar profiles, and `send` needs only this. tests/test_tfidf.py checks these rows against
scikit-learn's on the fixture papers. Words: runs of 2+ word characters, lower-cased, minus the English
stop words (scikit-learn's list); tf is 1 + ln(count), idf ln((1 + n) / (1 + df)) + 1, rows unit length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class SparseRows:
    """Rows of float32 values stored as scipy's CSR (row r: `data[indptr[r]:indptr[r + 1]]` at columns
    `indices[...]`, sorted), with the few operations the similar ranking needs done in numpy.

    Not scipy: importing scipy.sparse costs ~0.3 s per process (`python -X importtime`), more than a
    `send` of 1,000 similar readers spends ranking them. Sums run in the order scipy's do, in float32,
    so the scores are scipy's to the last bit (tests/test_tfidf.py compares them)."""

    data: np.ndarray  # float32
    indices: np.ndarray  # int32
    indptr: np.ndarray
    columns: int

    @classmethod
    def empty(cls, rows: int, columns: int) -> SparseRows:
        return cls(np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros(rows + 1, np.int64), columns)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.indptr) - 1, self.columns

    def owners(self) -> np.ndarray:
        """The row of each stored value."""
        return np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))

    def select(self, rows: list[int] | np.ndarray) -> SparseRows:
        starts, ends = self.indptr[rows], self.indptr[np.asarray(rows) + 1]
        lengths = ends - starts
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        at = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
        return SparseRows(self.data[at], self.indices[at], indptr, self.columns)

    def by_column(self) -> SparseRows:
        """The transpose, as rows (one per column, its values in row order)."""
        order = np.argsort(self.indices, kind="stable")
        indptr = np.concatenate([[0], np.cumsum(np.bincount(self.indices, minlength=self.columns))])
        return SparseRows(self.data[order], self.owners()[order].astype(np.int32), indptr, self.shape[0])

    def column_means(self) -> np.ndarray:
        """Each column's mean over the rows (float32, summed in row order as scipy's `mean(axis=0)`)."""
        means = np.zeros(self.columns, dtype=np.float32)
        if self.shape[0]:
            np.add.at(means, self.indices, self.data * (1.0 / self.shape[0]))
        return means

    def dense_product(self, other: SparseRows) -> np.ndarray:
        """self @ other as a dense (rows x other's columns) float32 array; each value summed over self's
        row in column order, as scipy's product sums it."""
        starts = other.indptr[self.indices]
        lengths = other.indptr[self.indices + 1] - starts
        ends = np.cumsum(lengths)
        at = np.repeat(starts - (ends - lengths), lengths) + np.arange(ends[-1] if len(ends) else 0)
        keys = np.repeat(self.owners() * other.columns, lengths) + other.indices[at]
        out = np.zeros(self.shape[0] * other.columns, dtype=np.float32)
        np.add.at(out, keys, np.repeat(self.data, lengths) * other.data[at])
        return out.reshape(self.shape[0], other.columns)


TOKEN = re.compile(r"\w\w+")  # scikit-learn's r"(?u)\b\w\w+\b" finds the same words: a greedy run of
# word characters ends at a boundary anyway, and findall never starts one mid-run; without the \b checks
# it runs in ~3/4 of the time (most of a day's tf-idf fit)
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

    def transform(self, texts: list[str]) -> SparseRows:
        return self._weigh(self._counts([self._words(text) for text in texts]))

    def _counts(self, words: list[list[str]]) -> SparseRows:
        """Each text's count of each known word."""
        size, lookup = len(self.vocabulary), self.vocabulary.get
        flat = np.fromiter((lookup(word, -1) for found in words for word in found), dtype=np.int64,
                           count=sum(len(found) for found in words))
        owner = np.repeat(np.arange(len(words), dtype=np.int64), [len(found) for found in words])
        known = flat >= 0
        keys, counts = np.unique(owner[known] * size + flat[known], return_counts=True)
        starts = np.concatenate([[0], np.cumsum(np.bincount(keys // size, minlength=len(words)))])
        return SparseRows(counts.astype(np.float32), (keys % size).astype(np.int32), starts, size)

    def _weigh(self, counts: SparseRows) -> SparseRows:
        """Sublinear tf times idf, each row scaled to unit length."""
        data = (1 + np.log(counts.data)) * self.idf[counts.indices]
        owner = counts.owners()
        norms = np.sqrt(np.bincount(owner, data.astype(np.float64) ** 2, minlength=counts.shape[0]))
        norms[norms == 0] = 1.0  # a text with none of the words stays a zero row
        return SparseRows(data / norms[owner].astype(np.float32), counts.indices, counts.indptr, counts.columns)
