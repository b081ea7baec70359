"""Paper embeddings: one unit-length vector per text, from a model that runs offline.

The default, `wordllama`, is the 256-dimension static model that the wordllama
wheel ships inside itself (token embeddings averaged). Its loader looks for the
tokenizer in a folder that does not exist and would then fall back to a
download, so it is loaded with the package folder as `cache_dir` and
`disable_download=True`: nothing is ever fetched. Optional models load from a
local folder only (`sentence-transformers:/path`, `model2vec:/path`).

Vectors are computed once per paper at ingest (`embed_missing`) and stored per
model name, so a store can hold vectors of several models side by side.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

DEFAULT_EMBEDDER = "wordllama"
BATCH = 20000  # texts per sparse product: ~5 M words, ~60 MB


class EmbedderError(Exception):
    """An embedder spec names a model that cannot be loaded here; the message says what to do."""


class Embedder(Protocol):
    """Turns texts into unit-length float32 rows."""

    name: str  # stored with each vector: vectors of different models never mix
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray: ...


def paper_text(title: str, abstract: str) -> str:
    """What is embedded for a paper or a library entry: the title, then the abstract."""
    return f"{title}. {abstract}" if abstract else title


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    np.divide(rows, norms, out=rows, where=norms > 0)
    return rows


class WordLlamaEmbedder:
    """wordllama's bundled 256-d model: the average of a text's token embeddings.

    The tokenizer (Llama 2's BPE, no pre-tokenizer) is slow on whole abstracts, and its
    pieces never cross a space, so each distinct word of a batch is tokenized once and
    a text's vector is a sparse (texts x words) product with the words' summed token
    vectors. The result equals `WordLlamaInference.embed(norm=True)` (tests check it).
    """

    dim = 256
    name = f"wordllama-l2_supercat-{dim}"

    def __init__(self):
        try:
            import wordllama
            from wordllama import WordLlama
        except ImportError as missing:
            raise EmbedderError("the default embedder needs the wordllama package: pip install wordllama") from missing
        package = Path(wordllama.__file__).resolve().parent
        model = WordLlama.load(config="l2_supercat", dim=self.dim, cache_dir=package, disable_download=True)
        self.table = np.ascontiguousarray(model.embedding, dtype=np.float32)
        self.tokenizer = model.tokenizer
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()

    def embed(self, texts: list[str]) -> np.ndarray:
        from scipy.sparse import csr_matrix

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), BATCH):
            batch = texts[start : start + BATCH]
            split = [text.split() for text in batch]
            words = [word for text in split for word in text]
            index = {word: row for row, word in enumerate(dict.fromkeys(words))}
            columns = np.fromiter(map(index.__getitem__, words), dtype=np.int64, count=len(words))
            pointers = np.concatenate([[0], np.cumsum([len(text) for text in split])])
            vectors = np.zeros((len(index), self.dim), dtype=np.float32)
            for row, encoding in enumerate(self.tokenizer.encode_batch(list(index), add_special_tokens=False)):
                if encoding.ids:
                    vectors[row] = self.table[np.minimum(encoding.ids, len(self.table) - 1)].sum(axis=0)
            counts = csr_matrix(
                (np.ones(len(columns), dtype=np.float32), columns, pointers),
                shape=(len(batch), len(index)),
            )
            counts.sum_duplicates()
            out[start : start + len(batch)] = counts @ vectors
        return _unit(out)


class SentenceTransformerEmbedder:
    """A sentence-transformers model from a local folder (the `sentence-transformers` extra)."""

    def __init__(self, path: str):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as missing:
            raise EmbedderError(
                "sentence-transformers:PATH needs the extra: pip install 'newsletter[sentence-transformers]'"
            ) from missing
        folder = _local_folder(path)
        self.model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        self.dim = int(self.model.get_sentence_embedding_dimension())
        self.name = f"sentence-transformers:{folder.name}"

    def embed(self, texts: list[str]) -> np.ndarray:
        return _unit(self.model.encode(texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True))


class Model2VecEmbedder:
    """A model2vec static model from a local folder (the `model2vec` extra)."""

    def __init__(self, path: str):
        try:
            from model2vec import StaticModel
        except ImportError as missing:
            raise EmbedderError("model2vec:PATH needs the extra: pip install 'newsletter[model2vec]'") from missing
        folder = _local_folder(path)
        self.model = StaticModel.from_pretrained(str(folder))
        self.dim = int(self.model.dim)
        self.name = f"model2vec:{folder.name}"

    def embed(self, texts: list[str]) -> np.ndarray:
        return _unit(self.model.encode(texts))


def _local_folder(path: str) -> Path:
    """A model folder on this machine; a hub name is refused (nothing is downloaded at run time)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise EmbedderError(f"{path}: no such model folder (models load from a local path only, never downloaded)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    return folder


def model_name(spec: str = DEFAULT_EMBEDDER) -> str:
    """The name a spec's vectors are stored under, known without loading the model: a run whose vectors
    are all stored never loads it (wordllama's import and load cost ~1.5 s per process)."""
    kind, _, path = spec.partition(":")
    if kind == "wordllama" and not path:
        return WordLlamaEmbedder.name
    if kind in ("sentence-transformers", "model2vec") and path:
        return f"{kind}:{Path(path).expanduser().name}"  # as the embedders name themselves
    return load_embedder(spec).name  # an unknown spec: the loader's error says what to do


@lru_cache(maxsize=4)
def load_embedder(spec: str = DEFAULT_EMBEDDER) -> Embedder:
    """The embedder a `[selection] embedder` spec names, loaded once per process."""
    kind, _, path = spec.partition(":")
    if kind == "wordllama" and not path:
        return WordLlamaEmbedder()
    if kind == "sentence-transformers" and path:
        return SentenceTransformerEmbedder(path)
    if kind == "model2vec" and path:
        return Model2VecEmbedder(path)
    raise EmbedderError(
        f"unknown embedder {spec!r} (use \"wordllama\", \"sentence-transformers:/path/to/model\" or \"model2vec:/path/to/model\")"
    )
