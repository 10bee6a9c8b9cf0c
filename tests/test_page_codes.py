"""The page checks a typed code's words before spending it, as the CLI does: web/src/codes.js
run in Node against p2pshare/codes.py on the same typos (no hand-kept expected answers)."""

from __future__ import annotations

import json
import random
import subprocess

from p2pshare.codes import closest_word, parse_code, unknown_words, wordlist
from tests.cli_helpers import ROOT
from tests.test_web_build import require_tools

SCRIPT = """
import { readFileSync } from "node:fs";
import { closestWord, parseCode, unknownWords, wordsFrom } from "./web/src/codes.js";
const words = wordsFrom(readFileSync("p2pshare/wordlist.txt", "utf8"));
const typed = JSON.parse(readFileSync(0, "utf8"));
const out = typed.map((text) => {
  const unknown = unknownWords(parseCode(text), words);
  return { unknown, closest: unknown.map((w) => closestWord(w, words)) };
});
process.stdout.write(JSON.stringify(out));
"""


def typos(rng: random.Random) -> list[str]:
    """Codes with one word mistyped the ways thumbs do: doubled, dropped, swapped, replaced
    and inserted letters, plus words nowhere near the list."""
    codes = []
    for word in rng.sample(wordlist(), 60):
        i = rng.randrange(len(word))
        letter = rng.choice("abcdefghijklmnopqrstuvwxyz")
        variants = [
            word + word[-1],
            word[:i] + word[i + 1 :],
            word[:i] + letter + word[i + 1 :],
            word[:i] + letter + word[i:],
            word[1] + word[0] + word[2:],
        ]
        codes += [f"{rng.randrange(1, 999)}-cherry-{v}" for v in variants]
    return [*codes, "1-cherry-benchh", "4-zzzzqx-bench", "8-Cherry-Bench", "3-xy-q"]


def test_the_page_questions_the_same_words_and_suggests_the_same_fix() -> None:
    """For ~300 typos the page names the same unknown words as the CLI and suggests the same
    word for each ("did you mean 'bench'?"), or none where the CLI has none."""
    require_tools("node")
    typed = typos(random.Random(29))
    proc = subprocess.run(
        ["node", "--input-type=module", "-e", SCRIPT],
        input=json.dumps(typed),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    page = json.loads(proc.stdout)
    cli: list[dict[str, list[str | None]]] = []
    for text in typed:
        unknown: list[str | None] = list(unknown_words(parse_code(text)))
        closest: list[str | None] = [closest_word(w) for w in unknown if w]
        cli.append({"unknown": unknown, "closest": closest})
    assert page == cli
    assert cli[-4]["closest"] == ["bench"]  # the issue's own example
    assert sum(1 for c in cli if None in c["closest"]) > 0  # some typos have no suggestion


def test_the_page_writes_sizes_as_the_cli_does() -> None:
    """The page's sizes and rates are the CLI's strings (IEC: 38.1 MiB, not 40.0 MB)."""
    require_tools("node")
    from p2pshare.progress import format_size

    sizes = [0, 1, 2, 1023, 1024, 1536, 40_000_000, 38 * 2**20 + 99, 5 * 2**30, 3 * 2**50, 2**62]
    script = (
        'import { formatBytes } from "./web/src/ui.js";'
        "const sizes = JSON.parse(await new Response(process.stdin).text());"
        "process.stdout.write(JSON.stringify(sizes.map(formatBytes)));"
    )
    proc = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        input=json.dumps(sizes),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    assert json.loads(proc.stdout) == [format_size(n) for n in sizes]
