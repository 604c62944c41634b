"""The search syntax: what users type becomes quoted terms, never query syntax of a database."""

from __future__ import annotations

import pytest

from gateway.domain.search import (
    MAX_TERMS,
    SearchError,
    Term,
    conversation_search,
    parse,
    to_fts5,
    to_tsquery,
)


def test_words_phrases_and_prefixes() -> None:
    terms = parse('Red "big  Dog" wor*')
    assert terms == (Term(("red",)), Term(("big", "dog")), Term(("wor",), prefix=True))
    assert to_tsquery(terms) == "('red') & ('big' <-> 'dog') & ('wor':*)"
    assert to_fts5(terms) == '"red" "big dog" "wor"*'


def test_a_prefix_phrase_and_an_unclosed_quote() -> None:
    assert parse('"big do*"') == (Term(("big", "do")),)
    assert parse('"unclosed phrase') == (Term(("unclosed", "phrase")),)


def test_a_word_with_inner_punctuation_is_a_phrase_of_its_parts() -> None:
    assert parse("e-mail") == (Term(("e", "mail")),)
    assert parse("it's") == (Term(("it", "s")),)
    assert parse("wor*d") == (Term(("wor", "d")),)


@pytest.mark.parametrize(
    ("hostile", "expected"),
    [
        ("a & b | !c", (Term(("a",)), Term(("b",)), Term(("c",)))),
        ("a:* <-> b", (Term(("a",)), Term(("b",)))),
        ("x OR y NOT z", (Term(("x",)), Term(("or",)), Term(("y",)), Term(("not",)), Term(("z",)))),
        ("NEAR(a b)", (Term(("near", "a")), Term(("b",)))),
        ("\\'a\\'", (Term(("a",)),)),
        ('a"b', (Term(("a",)), Term(("b",)))),
        ("col:value^2", (Term(("col", "value", "2")),)),
        ("snake_case", (Term(("snake", "case")),)),
    ],
)
def test_operators_quotes_and_backslashes_only_separate_words(
    hostile: str, expected: tuple[Term, ...]
) -> None:
    terms = parse(hostile)
    assert terms == expected
    # Every word reaches both engines inside quotes, holding letters and digits only.
    for word in (w for t in terms for w in t.words):
        assert word.isalnum()
        assert f"'{word}'" in to_tsquery(terms)
        assert f'"{word}' in to_fts5(terms) or f" {word}" in to_fts5(terms)


@pytest.mark.parametrize("empty", ["", "   ", '""', "* & | ! ( ) :", "\\\\", "'", "_"])
def test_a_search_without_words_is_refused(empty: str) -> None:
    with pytest.raises(SearchError, match="at least one word"):
        parse(empty)


def test_repeated_terms_count_once_and_the_number_of_terms_is_bounded() -> None:
    assert parse("a a A") == (Term(("a",)),)
    with pytest.raises(SearchError, match="at most"):
        parse(" ".join(f"w{n}" for n in range(MAX_TERMS + 1)))
    with pytest.raises(SearchError, match="characters"):
        parse("x" * 501)


def test_non_ascii_letters_are_words_kept_as_typed_apart_from_case() -> None:
    assert parse("ÉTÉ Café") == (Term(("été",)), Term(("café",)))


def test_a_conversation_search_looks_for_digits_of_a_number_or_part_of_an_address() -> None:
    assert conversation_search(" (415) 555-01 ").fragment == "41555501"
    assert conversation_search("+1 415").fragment == "1415"
    assert conversation_search("Zoe@Example").fragment == "zoe@example"
    assert conversation_search("parcel 555").terms == (Term(("parcel",)), Term(("555",)))
    with pytest.raises(SearchError):
        conversation_search("@")
