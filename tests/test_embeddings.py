"""The bundled embedding model: offline (no socket, no file outside the package), exact, stored once per paper."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from newsletter.embeddings import EmbedderError, load_embedder, paper_text
from newsletter.models import Paper
from newsletter.store import Store
from tests.pg_server import pg_server, pg_url  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parent.parent

OFFLINE_PROBE = r"""
import json, os, socket, sys
events = {"connect": [], "open": []}
def hook(event, args):
    if event == "socket.connect" or event == "socket.getaddrinfo":
        events["connect"].append(repr(args))
    elif event == "open" and isinstance(args[0], (str, bytes)):
        events["open"].append(os.fsdecode(args[0]))
sys.addaudithook(hook)
def refuse(*args, **kwargs):
    raise OSError("network access attempted")
socket.socket.connect = refuse
socket.create_connection = refuse
from wordllama import WordLlama
resolved = []
original = WordLlama.resolve_file.__func__
def resolve_file(cls, *args, **kwargs):
    path = original(cls, *args, **kwargs)
    resolved.append(str(path))
    return path
WordLlama.resolve_file = classmethod(resolve_file)
from newsletter.embeddings import load_embedder
embedder = load_embedder()
events["resolved"] = resolved
vectors = embedder.embed(["GPTQ: accurate post-training quantization", "A second text"])
print(json.dumps({"events": events, "shape": list(vectors.shape), "name": embedder.name}))
"""


def test_the_default_model_loads_and_embeds_without_the_network():
    """Run in a fresh process with sockets refused and every file open recorded."""
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "HF_HUB_OFFLINE": "0"}
    done = subprocess.run([sys.executable, "-c", OFFLINE_PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["shape"] == [2, 256] and report["name"] == "wordllama-l2_supercat-256"
    assert report["events"]["connect"] == []
    import wordllama

    package = str(Path(wordllama.__file__).resolve().parent)
    # the model files are read (in Rust, so the audit hook cannot see them) from where the loader resolved them
    resolved = report["events"]["resolved"]
    assert [Path(f).name for f in resolved] == ["l2_supercat_256.safetensors", "l2_supercat_tokenizer_config.json"]
    assert all(f.startswith(package) for f in resolved), resolved
    # and Python opened nothing from a cache or home folder
    assert not [f for f in report["events"]["open"] if ".cache" in f or f.startswith("/nonexistent")]


def test_at_the_system_call_level_it_opens_only_the_package_files_and_connects_nowhere(tmp_path: Path):
    """strace sees what Rust opens too (safetensors, tokenizers); skipped where strace cannot run."""
    import shutil

    import wordllama

    if not shutil.which("strace"):
        pytest.skip("strace is not installed")
    trace = tmp_path / "trace"
    code = "from newsletter.embeddings import load_embedder; print(load_embedder().embed(['a text']).shape)"
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(["strace", "-f", "-qq", "-e", "trace=openat,connect", "-o", str(trace), sys.executable, "-c", code],
                          capture_output=True, text=True, env=env, timeout=120)
    if done.returncode != 0 and "ptrace" in done.stderr:
        pytest.skip(f"strace cannot trace here: {done.stderr.strip()[:200]}")
    assert done.returncode == 0, done.stderr
    lines = trace.read_text().splitlines()
    assert not [line for line in lines if "connect(" in line and "AF_UNIX" not in line]
    package = str(Path(wordllama.__file__).resolve().parent)
    model_files = [line for line in lines if ".safetensors" in line or "tokenizer" in line and ".json" in line]
    opened = [line.split('"')[1] for line in model_files if "= -1" not in line]
    assert opened and all(path.startswith(package) for path in opened), opened
    assert not [line for line in lines if "/.cache/" in line or (str(tmp_path) in line and str(trace) not in line)]


def test_fast_pooling_equals_wordllamas_own_embed():
    import wordllama
    from wordllama import WordLlama

    texts = [paper_text("Training Transformers with 4-bit Integers", "Quantizing the activation, weights and gradients to 4-bit."),
             "", "ünïcödé wörds and émojis 🙂 too", "x" * 3000]
    model = WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)
    mine = load_embedder().embed(texts)
    theirs = model.embed(texts, norm=True)
    assert np.allclose(mine[[0, 2, 3]], theirs[[0, 2, 3]], atol=1e-5)
    assert not mine[1].any()  # an empty text is the zero vector, not NaN
    assert np.allclose(np.linalg.norm(mine[[0, 2, 3]], axis=1), 1.0, atol=1e-5)
    # runs of whitespace count as one space (wordllama would make "▁▁" tokens of them)
    ragged = load_embedder().embed(["Quantizing  the activation,\nweights"])[0]
    assert np.allclose(ragged, load_embedder().embed(["Quantizing the activation, weights"])[0])


def test_unknown_or_remote_embedders_are_refused(tmp_path: Path):
    with pytest.raises(EmbedderError, match="unknown embedder"):
        load_embedder("openai:text-embedding-3")
    with pytest.raises(EmbedderError, match="(no such model folder|needs the extra)"):
        load_embedder(f"sentence-transformers:{tmp_path / 'missing'}")
    with pytest.raises(EmbedderError, match="(no such model folder|needs the extra)"):
        load_embedder("model2vec:minishlab/potion-base-8M")


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path: Path):
    url = f"sqlite:///{tmp_path / 's.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    with Store(url) as store:
        yield store


def test_vectors_round_trip_and_are_dropped_when_the_text_changes(store: Store, tmp_path: Path):
    from newsletter.app import embed_papers
    from newsletter.config import load_config

    config_path = tmp_path / "config.toml"
    config_path.write_text('[newsletter]\nfrom = "a@example.org"\nbase_url = "http://x"\n', encoding="utf-8")
    config = load_config(config_path)
    store.add_papers([Paper.create("Quantization of LLMs", arxiv_id="2401.00001", abstract="Low bits.", upvotes=1),
                      Paper.create("A title-only paper", abstract="Words.")])
    name = load_embedder().name
    assert embed_papers(config, store) == 2
    assert embed_papers(config, store) == 0  # once per paper
    stored = store.load_vectors(name, ["2401.00001", "missing"])
    assert list(stored) == ["2401.00001"] and stored["2401.00001"].dtype == np.float32
    assert np.allclose(stored["2401.00001"], load_embedder().embed(["Quantization of LLMs. Low bits."])[0], atol=1e-6)
    store.add_papers([Paper.create("Quantization of LLMs", arxiv_id="2401.00001", abstract="Low bits.", upvotes=50)])
    assert store.papers_without_vectors(name) == []  # upvotes moved, the text did not
    store.add_papers([Paper.create("Quantization of LLMs", arxiv_id="2401.00001", abstract="Low bits, and a longer abstract.")])
    assert [row[0] for row in store.papers_without_vectors(name)] == ["2401.00001"]
    store.add_papers([Paper.create("A title-only paper", arxiv_id="2401.00002", abstract="Words.")])  # renamed to its arXiv id
    assert {row[0] for row in store.papers_without_vectors(name)} == {"2401.00001", "2401.00002"}
    assert embed_papers(config, store) == 2
    assert store.count_vectors(name) == 2  # the old title-hash id's vector went with it
