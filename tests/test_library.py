"""Library files: every format, bad entries reported as file:line and skipped, .txt looked up in the store."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from newsletter.library import LibraryCache, LibraryError, read_library, recency_weights
from newsletter.models import Paper
from newsletter.store import Store

FIXTURES = Path(__file__).parent / "fixtures" / "relevance" / "libraries"


@pytest.mark.parametrize(
    ("name", "count", "first"),
    [
        ("quantization.bib", 5, "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained Transformers"),
        ("peft.ris", 5, "LoRA: Low-Rank Adaptation of Large Language Models"),
        ("data.json", 5, "DoReMi: Optimizing Data Mixtures Speeds Up Language Model Pretraining"),
        ("systems.ris", 5, "Megatron-LM: Training Multi-Billion Parameter Language Models Using Model Parallelism"),
    ],
)
def test_each_format_reads_titles_and_abstracts(name: str, count: int, first: str):
    library = read_library(FIXTURES / name)
    assert library.problems == []
    assert len(library.items) == count
    assert library.items[0].title == first  # BibTeX braces are gone
    assert all(item.abstract for item in library.items)


def test_bibtex_ids_and_line_numbers(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "lib.bib"
    path.write_text(
        "% my papers\n"
        "@article{a, title = {{GPTQ}: Accurate \\& Fast}, eprint = {2210.17323v2}, archivePrefix = {arXiv},\n"
        "  doi = {10.1000/xyz}, timestamp = {2024-05-01}}\n"
        "@misc{notitle, author = {Nobody}}\n"
        "@article{broken, title = {unclosed\n"
        "\n"
        "@book{b, title = \"Deep Learning\", abstract = {A book.}}\n",
        encoding="utf-8",
    )
    library = read_library(path)
    by_title = {item.title: item for item in library.items}
    assert set(by_title) == {"GPTQ: Accurate & Fast", "Deep Learning"}
    gptq = by_title["GPTQ: Accurate & Fast"]
    assert (gptq.arxiv_id, gptq.doi, gptq.added, gptq.line) == ("2210.17323", "10.1000/xyz", date(2024, 5, 1), 2)
    assert "2210.17323" in library.paper_ids()
    shown = "lib.bib"
    assert any(p.startswith(f"{shown}:4: entry has no title") for p in library.problems), library.problems
    assert any(p.startswith(f"{shown}:5: ") for p in library.problems), library.problems


def test_ris_bad_records_are_reported_with_their_line(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "lib.ris"
    path.write_text(
        "TY  - JOUR\nTI  - First paper\nAB  - About it.\nUR  - https://arxiv.org/abs/2401.00001v1\nER  - \n\n"
        "TY  - JOUR\nAU  - Someone\nER  - \n\n"
        "JUNK  - what\nER  - \n\n"
        "TY  - JOUR\nT1  - Last paper\n",
        encoding="utf-8",
    )
    library = read_library(path)
    assert [(item.title, item.arxiv_id) for item in library.items] == [("First paper", "2401.00001")]
    assert library.problems == [
        "lib.ris:7: entry has no title; skipped",
        "lib.ris:11: record does not start with 'TY  - '; skipped",
        "lib.ris:14: record has no end (ER  - ); skipped",
    ]


def test_csl_and_zotero_json(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "lib.json"
    path.write_text(
        '[\n  {"title": "CSL item", "abstract": "Text.", "DOI": "10.48550/arXiv.2301.00002"},\n'
        '  {"data": {"itemType": "journalArticle", "title": "Zotero item", "abstractNote": "Z.", "dateAdded": "2025-01-02T10:00:00Z"}},\n'
        '  {"data": {"itemType": "attachment", "title": "PDF"}},\n'
        '  {"author": []},\n'
        '  "not an object"\n]\n',
        encoding="utf-8",
    )
    library = read_library(path)
    assert [(i.title, i.abstract, i.arxiv_id, i.added) for i in library.items] == [
        ("CSL item", "Text.", "2301.00002", None),
        ("Zotero item", "Z.", None, date(2025, 1, 2)),
    ]
    assert library.problems == ["lib.json:5: entry has no title; skipped", "lib.json:6: expected an object with a title; skipped"]


def test_unreadable_files_are_one_error(tmp_path: Path):
    with pytest.raises(LibraryError, match="library file not found"):
        read_library(tmp_path / "missing.bib")
    (tmp_path / "lib.json").write_text("[{,]", encoding="utf-8")
    with pytest.raises(LibraryError, match=r"lib.json:1: not JSON"):
        read_library(tmp_path / "lib.json")
    (tmp_path / "lib.docx").write_text("x", encoding="utf-8")
    with pytest.raises(LibraryError, match="unknown library format '.docx'"):
        read_library(tmp_path / "lib.docx")


def test_txt_entries_are_looked_up_in_the_store(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Store(f"sqlite:///{tmp_path / 's.db'}") as store:
        store.add_papers([
            Paper.create("Attention Is All You Need", arxiv_id="1706.03762", abstract="Transformers."),
            Paper.create("A title-only paper", abstract="Words.", url="https://doi.org/10.1234/ABC.5"),
        ])
        path = tmp_path / "lib.txt"
        path.write_text(
            "# my reading list\n"
            "https://arxiv.org/abs/1706.03762v5\n"
            "a TITLE-only paper  \n"
            "10.1234/abc.5\n"
            "9999.99999\n"
            "10.5555/unknown\n"
            "No Such Paper\n",
            encoding="utf-8",
        )
        library = read_library(path, store=store)
    assert [(item.title, item.line) for item in library.items] == [
        ("Attention Is All You Need", 2), ("A title-only paper", 3), ("A title-only paper", 4)]
    assert library.items[0].abstract == "Transformers."
    assert library.problems == [
        "lib.txt:5: arXiv id '9999.99999' is not in the store; skipped",
        "lib.txt:6: DOI '10.5555/unknown' is not in the store; skipped",
        "lib.txt:7: title 'No Such Paper' is not in the store; skipped",
    ]
    assert "1706.03762" in library.paper_ids()


def test_cache_rereads_a_changed_file(tmp_path: Path):
    path = tmp_path / "lib.bib"
    path.write_text("@misc{a, title = {One}}\n", encoding="utf-8")
    cache = LibraryCache()
    first = cache.get(path)
    assert cache.get(path) is first
    path.write_text("@misc{a, title = {One}}\n@misc{b, title = {Two}}\n", encoding="utf-8")
    assert [item.title for item in cache.get(path).items] == ["One", "Two"]
    assert cache.get(path).digest != first.digest


def test_recency_weights_halve_per_half_life():
    from newsletter.library import LibraryItem

    items = [LibraryItem("new", added=date(2026, 1, 1)), LibraryItem("old", added=date(2025, 1, 1)), LibraryItem("undated")]
    assert recency_weights(items, date(2026, 1, 1)) == pytest.approx([1.0, 0.5, 0.5])


def test_a_subscriber_library_resolves_against_the_subscriber_file(tmp_path: Path, monkeypatch):
    from newsletter.config import load_subscribers

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "subscribers"
    folder.mkdir()
    (folder / "ada-library.bib").write_text("@misc{a, title = {One}}\n", encoding="utf-8")
    (folder / "ada.toml").write_text('email = "ada@example.org"\nmode = "similar"\nlibrary = "ada-library.bib"\n', encoding="utf-8")
    (folder / "bob.toml").write_text('email = "bob@example.org"\nmode = "similar"\nlibrary = "nope.bib"\n', encoding="utf-8")
    (folder / "cy.toml").write_text('email = "cy@example.org"\nmode = "similar"\n', encoding="utf-8")
    (folder / "di.toml").write_text('email = "di@example.org"\nmode = "mixed"\n', encoding="utf-8")
    (folder / "ed.toml").write_text(
        'email = "ed@example.org"\nmode = "mixed"\nlibrary = "ada-library.bib"\ntrending_share = 0.5\nsimilar_share = 0.6\n',
        encoding="utf-8")
    loaded = load_subscribers(folder)
    assert [s.email for s in loaded.subscribers] == ["ada@example.org"]
    assert loaded.subscribers[0].library == (folder / "ada-library.bib").resolve()
    assert loaded.problems == [
        "subscribers/bob.toml: library: file not found: subscribers/nope.bib",
        'subscribers/cy.toml: library: mode "similar" needs a library file, e.g. library = "my-library.bib"',
        "subscribers/di.toml: library: mode 'mixed' needs at least one keyword that is not an exclusion, or a library",
        "subscribers/ed.toml: similar_share: trending_share + similar_share must be at most 1",
    ]
