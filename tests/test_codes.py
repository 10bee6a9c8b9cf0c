"""Codes: generation, parsing and the wordlist."""

from __future__ import annotations

import random

import pytest

from p2pshare.codes import Code, generate_words, parse_chosen_code, parse_code, wordlist
from p2pshare.errors import BadCodeError


def test_wordlist_has_256_distinct_simple_words() -> None:
    """Each word carries 8 bits: 256 distinct lowercase words."""
    words = wordlist()
    assert len(words) == 256 and len(set(words)) == 256
    assert all(w.isalpha() and w.islower() for w in words)


def test_generated_words_come_from_the_wordlist() -> None:
    """Generated words are drawn from the list, as many as asked."""
    words = generate_words(5, random.Random(1))
    assert len(words) == 5 and set(words) <= set(wordlist())


def test_generation_uses_the_whole_list() -> None:
    """Draws are uniform enough that every word shows up in a long run."""
    rng = random.Random(7)
    seen = {w for _ in range(2000) for w in generate_words(2, rng)}
    assert seen == set(wordlist())


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("7-guitar-ocean", Code("7", ("guitar", "ocean"))),
        ("  7-Guitar-OCEAN \n", Code("7", ("guitar", "ocean"))),
        ("7 guitar ocean", Code("7", ("guitar", "ocean"))),
        ("123456-a-b-c", Code("123456", ("a", "b", "c"))),
    ],
)
def test_parse_code_forgives_case_and_spacing(typed: str, expected: Code) -> None:
    """What people type is normalised to one canonical code."""
    assert parse_code(typed) == expected
    assert str(parse_code(typed)) == str(expected)


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "7",
        "guitar-ocean",
        "0-guitar",
        "07-guitar",
        "1234567-guitar",
        "7-gui/tar",
        "7-guitar-" + "x" * 40,
        "7-ünïcode",
        "7-" + "-".join(["a"] * 17),
    ],
)
def test_parse_code_rejects_non_codes(typed: str) -> None:
    """Anything that is not number-words is refused with a BadCodeError."""
    with pytest.raises(BadCodeError):
        parse_code(typed)


def test_chosen_code_needs_some_secret() -> None:
    """A hand-picked code must not be trivially guessable."""
    with pytest.raises(BadCodeError):
        parse_chosen_code("7-ab")
    assert parse_chosen_code("7-abcd").words == ("abcd",)


def test_password_binds_the_nameplate() -> None:
    """The same words under another nameplate are another password."""
    assert parse_code("7-a-b").password != parse_code("8-a-b").password
