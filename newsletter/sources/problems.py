"""A file's warnings, bounded: the first `MAX_WARNINGS` are kept, the rest only counted.

A file of a million bad lines must cost about what parsing it costs, and tell
the user once how many more there were, not a million times.
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_WARNINGS = 20


class Warnings(list):
    """A list of warning lines that keeps the first `limit` and counts the others in `more`."""

    def __init__(self, limit: int = MAX_WARNINGS):
        super().__init__()
        self.limit = limit
        self.more = 0

    def append(self, warning: str) -> None:
        if len(self) < self.limit:
            super().append(warning)
        else:
            self.more += 1

    def extend(self, warnings: Iterable[str]) -> None:
        for warning in warnings:
            self.append(warning)
        self.more += getattr(warnings, "more", 0)

    @property
    def total(self) -> int:
        return len(self) + self.more

    def lines(self, name: str) -> list[str]:
        """The kept warnings, then `… and N more like these in NAME` when some were only counted."""
        return [*self] + ([f"… and {self.more:,} more like these in {name}"] if self.more else [])
