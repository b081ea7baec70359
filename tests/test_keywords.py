"""Keyword syntax and text normalisation."""

import pytest

from newsletter.keywords import Keyword, parse_keyword, parse_keywords, stem, words


def test_term():
    assert parse_keyword("diffusion") == Keyword(text="diffusion", terms=("diffusion",), exclude=False, weight=1.0)


def test_phrase_keeps_the_users_text_and_normalises_terms():
    keyword = parse_keyword("  Reinforcement Learning ")
    assert keyword.text == "Reinforcement Learning"
    assert keyword.terms == ("reinforcement", "learning")


def test_exclusion():
    keyword = parse_keyword("-survey")
    assert keyword.exclude and keyword.terms == ("survey",) and keyword.text == "survey"
    assert parse_keyword("- large language models").terms == ("large", "language", "model")


def test_weight():
    keyword = parse_keyword("video generation^2")
    assert keyword.weight == 2.0 and keyword.text == "video generation" and keyword.terms == ("video", "generation")
    assert parse_keyword("robotics ^ 0.5").weight == 0.5


def test_hyphen_is_a_word_break_not_an_exclusion():
    keyword = parse_keyword("pre-training")
    assert not keyword.exclude and keyword.terms == ("pre", "training")


def test_quotes_around_a_phrase_are_dropped():
    assert parse_keyword('"graph neural network"').text == "graph neural network"


@pytest.mark.parametrize(
    "raw, problem",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("-", "nothing after '-'"),
        ("- ", "nothing after '-'"),
        ("x^abc", "weight 'abc' is not a number"),
        ("x^", "weight '' is not a number"),
        ("x^0", "weight must be a positive number"),
        ("x^-1", "weight must be a positive number"),
        ("x^inf", "weight must be a positive number"),
        ("x^nan", "weight must be a positive number"),
        ("-survey^2", "an exclusion takes no weight"),
        ("^2", "no words to match"),
        ("!!!", "no words to match"),
    ],
)
def test_bad_syntax(raw, problem):
    with pytest.raises(ValueError) as error:
        parse_keyword(raw)
    assert str(error.value).startswith(f"keyword {raw!r}: ")
    assert problem in str(error.value)


def test_parse_keywords_reports_the_bad_one():
    assert [k.text for k in parse_keywords(["a", "b c", "-d"])] == ["a", "b c", "d"]
    with pytest.raises(ValueError, match="keyword 'x\\^abc'"):
        parse_keywords(["fine", "x^abc"])


@pytest.mark.parametrize(
    "word, expected",
    [
        ("models", "model"),
        ("policies", "policy"),
        ("policy", "policy"),
        ("patches", "patch"),
        ("boxes", "box"),
        ("losses", "loss"),
        ("loss", "loss"),
        ("analysis", "analysis"),
        ("corpus", "corpus"),
        ("gas", "gas"),
        ("images", "image"),
        ("uses", "use"),
    ],
)
def test_stem(word, expected):
    assert stem(word) == expected


def test_words_folds_case_compat_forms_and_punctuation():
    expected = ["pre", "training", "of", "fine", "tuned", "llm", "gpt", "4"]
    assert words("Pre-Training of ﬁne-tuned LLMs (GPT-4)") == expected
    assert words("under_score") == ["under", "score"]
