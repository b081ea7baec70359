"""Keyword syntax and the text normalisation shared by keywords and the paper index.

One string per keyword:

- `diffusion` a term, `reinforcement learning` a phrase (words adjacent, in order);
- `-survey` an exclusion (a term or a phrase);
- `video generation^2` a weight (a positive number, default 1).

There are no operators: `OR`, `AND` and `NOT` in capitals are refused with a
hint (alternatives are separate keywords; an exclusion is `-word`), and so is
more than one `^`, instead of silently matching a phrase nobody wrote.

Text and keywords are normalised the same way: NFKC, case-folded, split into
words at anything that is not a letter or digit (so `pre-training` is the two
words `pre training`), each word lightly stemmed (`stem`).  Hyphen and space
variants of compounds are matched by the index (see `selection.PaperIndex`).
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

WORD = re.compile(r"[^\W_]+")
OPERATOR = re.compile(r"\b(OR|AND|NOT)\b")  # search-engine syntax, which a keyword does not have


@lru_cache(maxsize=1 << 17)
def stem(word: str) -> str:
    """Strip a plural ending: `policies`->`policy`, `patches`->`patch`, `models`->`model`.

    Deliberately light: words of three letters or fewer and words ending in
    `ss`, `us` or `is` (`loss`, `corpus`, `analysis`) are left alone, and `es`
    is only removed after `ss`, `x`, `z`, `ch` and `sh`.
    """
    if len(word) <= 3 or not word.endswith("s") or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "zes", "ches", "shes")):
        return word[:-2]
    return word[:-1]


def words(text: str) -> list[str]:
    """The normalised, stemmed words of `text`, in order."""
    return [stem(word) for word in WORD.findall(unicodedata.normalize("NFKC", text).casefold())]


@dataclass(frozen=True)
class Keyword:
    """One parsed keyword: `text` as the user wrote it (no `-`, no `^weight`), its stemmed `terms`."""

    text: str
    terms: tuple[str, ...]
    exclude: bool
    weight: float


@lru_cache(maxsize=1 << 16)
def parse_keyword(raw: str) -> Keyword:
    """Parse one keyword string; raises `ValueError("keyword '…': problem")` for bad syntax."""
    text = raw.strip()
    if not text:
        raise ValueError(f"keyword {raw!r}: empty")
    exclude = text.startswith("-")
    if exclude:
        text = text[1:].strip()
        if not text:
            raise ValueError(f"keyword {raw!r}: nothing after '-'")
    operator = OPERATOR.search(text)
    if operator:
        word = operator[0]
        hint = {
            "OR": "list the alternatives as separate keywords (any one of them matches): "
            + ", ".join(repr(part.strip()) for part in re.split(r"\bOR\b", text) if part.strip()),
            "AND": "a keyword of several words already needs them all (as a phrase); or list them as separate keywords",
            "NOT": "write an exclusion as its own keyword starting with '-', e.g. '-survey'",
        }[word]
        raise ValueError(f"keyword {raw!r}: {word} is not an operator here; {hint}")
    if text.count("^") > 1:
        raise ValueError(f"keyword {raw!r}: more than one '^' (one weight at the end, e.g. 'diffusion^2')")
    weight = 1.0
    if "^" in text:
        text, _, number = text.rpartition("^")
        text = text.strip()
        try:
            weight = float(number)
        except ValueError:
            raise ValueError(f"keyword {raw!r}: weight {number.strip()!r} is not a number") from None
        if not math.isfinite(weight) or weight <= 0:
            raise ValueError(f"keyword {raw!r}: weight must be a positive number, got {number.strip()!r}")
        if exclude:
            raise ValueError(f"keyword {raw!r}: an exclusion takes no weight")
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].strip()
    terms = tuple(words(text))
    if not terms:
        raise ValueError(f"keyword {raw!r}: no words to match")
    return Keyword(text=text, terms=terms, exclude=exclude, weight=weight)


def parse_keywords(raws: list[str]) -> list[Keyword]:
    """Parse a profile's keywords; the first bad one raises `ValueError`."""
    return [parse_keyword(raw) for raw in raws]
