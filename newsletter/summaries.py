"""Optional one-sentence TL;DRs from an OpenAI-compatible chat endpoint (`[summaries]` in the config).

Each paper is summarised once and the result stored (store/summaries.py); every later
edition, and the "View in browser" page, reads the stored one. Off while `endpoint`
is empty (then stored summaries are not shown either). A failure (endpoint down, timeout, a reply that is not a sentence) leaves the
paper without a TL;DR, so its edition shows the cut abstract instead; after
`MAX_FAILURES` failures in one run the endpoint is not asked again until the next run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from newsletter.config import SummariesSection
from newsletter.models import Paper

log = logging.getLogger("newsletter.summaries")

PROMPT = (
    "Summarise this research paper in one plain sentence of at most 30 words for a researcher "
    "deciding whether to read it. Reply with the sentence only."
)
MAX_CHARS = 300
MAX_FAILURES = 3


class Summariser:
    """Makes and stores the TL;DRs of the papers an edition is about to show."""

    def __init__(self, settings: SummariesSection, store):
        self.settings = settings
        self.store = store
        self.failures = 0
        self._client = None  # an httpx.Client, made at the first request
        self._known: dict[str, str | None] = {}  # paper id -> stored TL;DR (None: none); editions share papers

    @property
    def enabled(self) -> bool:
        return bool(self.settings.endpoint) and self.failures < MAX_FAILURES

    @property
    def url(self) -> str:
        endpoint = self.settings.endpoint.rstrip("/")
        return endpoint if endpoint.endswith("/chat/completions") else endpoint + "/chat/completions"

    def summaries(self, papers: Iterable[Paper], *, make: bool = True) -> dict[str, str]:
        """The TL;DR of each paper that has one; with `make`, papers without one are summarised first.

        Off (no `endpoint`): none, not even stored ones.
        """
        if not self.settings.endpoint:
            return {}
        papers = list({paper.id: paper for paper in papers}.values())
        unknown = [paper.id for paper in papers if paper.id not in self._known]
        if unknown:
            stored = self.store.summaries(unknown)
            self._known.update((paper_id, stored.get(paper_id)) for paper_id in unknown)
        if make:
            made = {}
            for paper in papers:
                if self._known[paper.id] is None and paper.abstract and self.enabled:
                    summary = self._ask(paper)
                    if summary:
                        made[paper.id] = summary
            if made:
                self.store.add_summaries(made, model=self.settings.model)
                self._known.update(self.store.summaries(made))  # another process may have stored its own first
        return {paper.id: self._known[paper.id] for paper in papers if self._known[paper.id]}

    def _ask(self, paper: Paper) -> str | None:
        headers = {}
        if self.settings.api_key_env:
            key = os.environ.get(self.settings.api_key_env)
            if key:
                headers["Authorization"] = f"Bearer {key}"
        body = {
            "model": self.settings.model,
            "messages": [
                {"role": "system", "content": PROMPT},
                {"role": "user", "content": f"Title: {paper.title}\n\nAbstract: {paper.abstract}"},
            ],
            "temperature": 0,
        }
        import httpx  # here, not at the top: a run without a summaries endpoint never needs it (~60 ms a start)

        try:
            if self._client is None:
                self._client = httpx.Client(timeout=self.settings.timeout)
            response = self._client.post(self.url, json=body, headers=headers)
            response.raise_for_status()
            text = response.json()["choices"][0]["message"]["content"]
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as error:
            self.failures += 1
            log.warning("summaries: %s: %s; showing the abstract instead", self.url, str(error) or type(error).__name__)
            return None
        sentence = " ".join(str(text).split()).strip('"“” ')
        if not sentence or len(sentence) > MAX_CHARS:
            log.warning("summaries: %s: the reply for %s is not one short sentence; showing the abstract", self.url, paper.id)
            return None
        return sentence

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
