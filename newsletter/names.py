"""People's names compared as selection's followed authors need them (README: "Followed authors"):
accents and case ignored, initials matching names, "Family, Given" and either order."""

from __future__ import annotations

import re
import unicodedata


def name_tokens(name: str) -> tuple[str, ...]:
    """A person's name as comparable words: accents dropped, case folded, initials as single letters,
    and "LeCun, Yann" turned to "yann lecun"."""
    if name.count(",") == 1:
        family, given = name.split(",")
        name = f"{given} {family}"
    plain = unicodedata.normalize("NFKD", name)
    plain = "".join(ch for ch in plain if not unicodedata.combining(ch)).casefold()
    return tuple(re.findall(r"[^\W\d_]+", plain))


def same_person(wanted: tuple[str, ...], tokens: tuple[str, ...]) -> bool:
    """Whether two names (as `name_tokens`) can be one person: every word of the shorter name matches
    a different word of the longer (equal, or an initial of it), and one full word is equal."""
    short, long = (wanted, tokens) if len(wanted) <= len(tokens) else (tokens, wanted)
    free = list(long)
    full_match = False
    for word in short:
        match = next((other for other in free if other == word), None)
        if match is None:
            match = next(
                (other for other in free if (len(word) == 1 or len(other) == 1) and other[0] == word[0]), None
            )
        else:
            full_match = full_match or len(word) > 1
        if match is None:
            return False
        free.remove(match)
    return full_match
