// Codes: <nameplate>-<word>-<word>, parsed and generated as p2pshare/codes.py does. No DOM.
// The words come from p2pshare/wordlist.txt (bundled as text by esbuild; tests pass the list).

import { utf8 } from "./bytes.js";

export const DEFAULT_WORDS = 2;
export const VERIFY_WORDS = 4;
const NAMEPLATE_RE = /^[1-9][0-9]{0,5}$/;
const WORD_RE = /^[a-z0-9]{1,32}$/;
const MAX_WORDS = 16;

/** Not a p2pshare code (error name "bad-code"). */
export class BadCodeError extends Error {
  constructor(message = "that is not a p2pshare code: codes look like 7-guitar-ocean") {
    super(message);
    this.name = "bad-code";
  }
}

/** What a user typed: case, surrounding space and space-for-dash are forgiven. */
export function parseCode(text) {
  const parts = text
    .trim()
    .toLowerCase()
    .split(/[-\s]+/)
    .filter((p) => p);
  if (parts.length < 2 || !NAMEPLATE_RE.test(parts[0])) throw new BadCodeError();
  const words = parts.slice(1);
  if (words.length > MAX_WORDS || !words.every((w) => WORD_RE.test(w))) {
    throw new BadCodeError(
      "a code is a number followed by words of letters and digits, like 7-guitar-ocean",
    );
  }
  const code = [parts[0], ...words].join("-");
  return { nameplate: parts[0], words, text: code, password: utf8(code) };
}

export function wordsFrom(text) {
  return text
    .split(/\r?\n/)
    .map((w) => w.trim())
    .filter((w) => w);
}

/** `count` words drawn uniformly (rejection sampling over random bytes) from `wordlist`. */
export function generateWords(wordlist, count = DEFAULT_WORDS, randomBytes) {
  if (wordlist.length !== 256) throw new Error("the word list must have 256 words");
  return Array.from(randomBytes(count), (b) => wordlist[b]);
}

/** The words for two people to compare aloud, one byte of `keyMaterial` per word, as
 * p2pshare/codes.py's words_from_key (`keyMaterial`: PakeSession.verificationBytes()). */
export function verificationWords(keyMaterial, wordlist, count = VERIFY_WORDS) {
  if (wordlist.length !== 256) throw new Error("the word list must have 256 words");
  if (keyMaterial.length < count) throw new Error(`${count} words need ${count} bytes of key material`);
  return Array.from(keyMaterial.subarray(0, count), (b) => wordlist[b]);
}

/** The words of `code` (parseCode's result) that are not in `wordlist`: typos, or a code
 * chosen with `send --code`. Worth a question before connecting: a wrong code burns the
 * sender's (p2pshare/codes.py's unknown_words). */
export function unknownWords(code, wordlist) {
  const known = new Set(wordlist);
  return code.words.filter((w) => !known.has(w));
}

/** Characters `a` and `b` have in common, as Python's difflib.SequenceMatcher counts them
 * (longest common block first, leftmost on ties, then both sides of it; no junk heuristic,
 * which difflib applies only to sequences of 200 or more). */
function matchingCharacters(a, b) {
  let total = 0;
  const stack = [[0, a.length, 0, b.length]];
  while (stack.length) {
    const [alo, ahi, blo, bhi] = stack.pop();
    let besti = alo;
    let bestj = blo;
    let best = 0;
    let lengths = new Map();
    for (let i = alo; i < ahi; i++) {
      const next = new Map();
      for (let j = blo; j < bhi; j++) {
        if (a[i] !== b[j]) continue;
        const k = (lengths.get(j - 1) ?? 0) + 1;
        next.set(j, k);
        if (k > best) {
          besti = i - k + 1;
          bestj = j - k + 1;
          best = k;
        }
      }
      lengths = next;
    }
    if (!best) continue;
    total += best;
    if (alo < besti && blo < bestj) stack.push([alo, besti, blo, bestj]);
    if (besti + best < ahi && bestj + best < bhi) stack.push([besti + best, ahi, bestj + best, bhi]);
  }
  return total;
}

/** The wordlist's nearest spelling of `word`, or null when none is close: the choice of
 * p2pshare/codes.py's closest_word (difflib.get_close_matches, n=1, cutoff 0.6; on a tie
 * the word that sorts last, as get_close_matches' heap does). */
export function closestWord(word, wordlist) {
  let best = null;
  let bestScore = 0.6;
  for (const candidate of wordlist) {
    const score = (2 * matchingCharacters(candidate, word)) / (candidate.length + word.length);
    if (score > bestScore || (score === bestScore && (best === null || candidate > best))) {
      best = candidate;
      bestScore = score;
    }
  }
  return best;
}
