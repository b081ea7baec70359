"""What data from outside may look like when shown: in an email, a header or a terminal.

Titles, names and abstracts come from feeds and files anyone can write. Shown
values lose control characters (NUL, ESC, C1 codes, line breaks inside a header)
and the invisible bidi controls that reorder text, and are cut to a sane
length. The store keeps the whole value; only what is shown is cut.
"""

from __future__ import annotations

import re

# Display limits (characters), documented in the README ("Limits").
TITLE_CHARS = 300
AUTHOR_CHARS = 100       # one author's name
ORGANIZATION_CHARS = 100
NAME_CHARS = 100         # a subscriber's name (greeting, To display name)
SUBJECT_CHARS = 200
ABSTRACT_CHARS = 2000    # on top of the abstract's word limit, for text without spaces
LINK_CHARS = 2000        # a longer link is dropped, not cut (a cut URL points elsewhere)

# C0 and C1 controls except tab/newline, DEL, line/paragraph separators, and the bidi
# embedding, override and isolate controls (U+202A–U+202E, U+2066–U+2069) and marks.
_UNSHOWN = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")
_UNSHOWN_IN_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")


def shown(value: object, limit: int | None = None, *, one_line: bool = True) -> str:
    """`value` as text fit to show: unshowable characters removed (in one line, breaks and
    tabs become spaces), then cut to `limit` characters with an ellipsis."""
    text = "" if value is None else str(value)
    if limit is not None:
        text = text[: 4 * limit]  # a 1 MB title costs what a short one does
    if one_line:
        text = _UNSHOWN_IN_LINE.sub(lambda m: " " if m[0] in "\t\n\r\x0b\x0c\x85\u2028\u2029" else "", text)
    else:
        text = _UNSHOWN.sub(lambda m: "\n" if m[0] in "\r\u2028\u2029" else "", text.replace("\r\n", "\n"))
    return cut(text, limit)


def cut(text: str, limit: int | None) -> str:
    """`text` cut to at most `limit` characters, the last being `…` when anything was cut."""
    if limit is None or len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + "…"


def listed(parts: list[str]) -> str:
    """Parts as one phrase: "a", "a and b", "a, b and c"."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
