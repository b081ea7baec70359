"""Finding many keywords' terms in forked children while the parent goes on (`PaperIndex.resolve`).

A big run's distinct keywords take ~1 s to find, and a parent about to fork workers for them would
otherwise spend it on one core while the other waits: its children find the phrases and words while
it loads the compiled selection loop. The matches come back through temporary files, not pipes, so
a child never waits for the parent to read (~20-50 MB for 16,000 keywords).
"""

from __future__ import annotations

import multiprocessing
import pickle
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from newsletter.selection import PaperIndex

ASIDE_TERMS = 100  # finding fewer phrases and split words (~0.5 ms each) is quicker than forking for them


def find_aside(
    index: PaperIndex, single: list[tuple[str]], others: list[tuple[str, ...]], children: int
) -> Callable[[], dict] | None:
    """Start finding these terms (`PaperIndex._unfound`'s) in `children` forked processes (None: too few
    to be worth it); the returned call waits for their matches. The first child scores the words, each
    child its share of the others; a share whose child died is missing (the index finds it when asked)."""
    if children < 1 or len(others) < ASIDE_TERMS or "fork" not in multiprocessing.get_all_start_methods():
        return None
    fork = multiprocessing.get_context("fork")
    started = []
    for share in range(children):
        spool = tempfile.TemporaryFile()
        terms = (single if share == 0 else [], others[share::children])
        child = fork.Process(target=_write_found, args=(index, *terms, spool), daemon=True)
        child.start()
        started.append((child, spool))

    def found() -> dict:
        matches = {}
        for child, spool in started:
            child.join()
            if child.exitcode == 0:  # else it died, perhaps halfway through writing
                spool.seek(0)
                matches.update(pickle.load(spool))
            spool.close()
        return matches

    return found


def _write_found(index: PaperIndex, single: list[tuple[str]], others: list[tuple[str, ...]], spool) -> None:
    """In a child of `find_aside`."""
    found = index._words_found(single)
    found.update((terms, index._find(terms)) for terms in others)
    pickle.dump(found, spool, protocol=pickle.HIGHEST_PROTOCOL)
    spool.flush()
