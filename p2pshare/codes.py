"""Codes: ``<nameplate>-<word>-<word>``, generated, parsed and normalised.

The nameplate is public (the server sees it); the words are the secret, chosen with
:mod:`secrets` from a 256-word list, so each word adds 8 bits. The whole normalised code is the
SPAKE2 password, which binds the nameplate to the words.
"""

from __future__ import annotations

import random
import re
import secrets
from dataclasses import dataclass
from functools import cache
from importlib import resources

from p2pshare.errors import BadCodeError
from signal_server.wire import NAMEPLATE_RE

DEFAULT_WORDS = 2
MIN_SECRET_CHARS = 4
"""A code chosen by hand must carry at least this many secret characters."""

_NAMEPLATE_RE = NAMEPLATE_RE  # the server's own rule (signal_server/wire.py)
_WORD_RE = re.compile(r"[a-z0-9]{1,32}")
_MAX_WORDS = 16


@cache
def wordlist() -> tuple[str, ...]:
    text = resources.files("p2pshare").joinpath("wordlist.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


@dataclass(frozen=True)
class Code:
    nameplate: str
    words: tuple[str, ...]

    def __str__(self) -> str:
        return "-".join((self.nameplate, *self.words))

    @property
    def password(self) -> bytes:
        """The SPAKE2 password: the whole normalised code."""
        return str(self).encode("ascii")


def generate_words(count: int = DEFAULT_WORDS, rng: random.Random | None = None) -> tuple[str, ...]:
    """``count`` words drawn uniformly from the wordlist (``rng`` only for tests)."""
    if not 1 <= count <= _MAX_WORDS:
        raise BadCodeError(f"a code has 1 to {_MAX_WORDS} words, not {count}")
    words = wordlist()
    if rng is None:
        return tuple(secrets.choice(words) for _ in range(count))
    return tuple(rng.choice(words) for _ in range(count))


def parse_code(text: str) -> Code:
    """Parse what a user typed: case, surrounding space and space-for-dash are forgiven."""
    parts = [p for p in re.split(r"[-\s]+", text.strip().lower()) if p]
    if len(parts) < 2 or not _NAMEPLATE_RE.fullmatch(parts[0]):
        raise BadCodeError()
    words = tuple(parts[1:])
    if len(words) > _MAX_WORDS or not all(_WORD_RE.fullmatch(w) for w in words):
        raise BadCodeError(
            "a code is a number followed by words of letters and digits, like 7-guitar-ocean"
        )
    return Code(parts[0], words)


def parse_chosen_code(text: str) -> Code:
    """A code the sender picked with ``--code``: as :func:`parse_code`, plus a minimum secret."""
    code = parse_code(text)
    if sum(len(w) for w in code.words) < MIN_SECRET_CHARS:
        raise BadCodeError(
            f"a chosen code needs at least {MIN_SECRET_CHARS} secret characters "
            "after the number, like 7-guitar-ocean"
        )
    return code


# -- helping a person type a code -------------------------------------------------------------


def complete(text: str) -> list[str]:
    """Completions of a partly typed code (Tab at the ``Code:`` prompt, shell completion).

    Only the last word is completed, from the wordlist; the nameplate and the words already
    typed are kept as they are. Nothing is offered before the nameplate's dash.
    """
    head, sep, last = text.lower().rpartition("-")
    if not sep or not head or not _NAMEPLATE_RE.fullmatch(head.split("-")[0]):
        return []
    return [f"{head}-{word}" for word in wordlist() if word.startswith(last)]


def unknown_words(code: Code) -> tuple[str, ...]:
    """The words of ``code`` that are not in the wordlist: typos, or a code chosen with
    ``--code``. Worth a question before connecting, since a wrong code burns the sender's."""
    known = set(wordlist())
    return tuple(w for w in code.words if w not in known)


def closest_word(word: str) -> str | None:
    """The wordlist's nearest spelling of ``word``, if one is close (for "did you mean")."""
    import difflib

    found = difflib.get_close_matches(word, wordlist(), n=1, cutoff=0.6)
    return found[0] if found else None


# -- comparing the session key aloud ----------------------------------------------------------

VERIFY_WORDS = 4
"""Words shown by ``--verify``: 32 bits, so a man in the middle who got through the PAKE
(he would have had to guess the code) still has a 1 in 4 billion chance of matching."""


def words_from_key(key_material: bytes, count: int = VERIFY_WORDS) -> tuple[str, ...]:
    """Words for two people to compare aloud, one byte of ``key_material`` per word.

    ``key_material`` must already be derived for this purpose (``PakeSession``'s
    ``verification_words`` uses HKDF with its own label), never the session key itself.
    """
    if not 1 <= count <= len(key_material):
        raise ValueError(f"{count} words need at least {count} bytes of key material")
    words = wordlist()
    return tuple(words[b] for b in key_material[:count])
