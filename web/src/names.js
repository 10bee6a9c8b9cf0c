// What the receiver accepts as a file name: p2pshare/files.py, ported. The sender is hostile:
// every path of an offer is checked before anything is saved, and the whole offer is refused
// when one entry is bad. Nothing is "cleaned up" into a name the sender did not say. No DOM.

import { ProtocolError } from "./frames.js";

export const MAX_COMPONENT_BYTES = 255;
export const MAX_PATH_BYTES = 4096;
export const MAX_DEPTH = 64;
export const MAX_PRINT_CHARS = 200;

const WINDOWS_DEVICES = new Set(["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]);
for (let i = 0; i < 10; i++) WINDOWS_DEVICES.add(`COM${i}`).add(`LPT${i}`);
for (const c of "¹²³") WINDOWS_DEVICES.add(`COM${c}`).add(`LPT${c}`);
WINDOWS_DEVICES.add("CLOCK$");
/** The receiver's own bookkeeping is named so; no offered name may start with it. */
export const RESERVED_PREFIX = ".p2pshare-";
// Letters and symbols that draw nothing (U+3164 HANGUL FILLER, U+2800 BRAILLE PATTERN BLANK,
// variation selectors...): a name of them looks empty or like another name.
const DRAWS_NOTHING = new Set([0x034f, 0x115f, 0x1160, 0x17b4, 0x17b5, 0x2800, 0x3164, 0xffa0]);
for (let c = 0x180b; c < 0x1810; c++) DRAWS_NOTHING.add(c);
for (let c = 0xfe00; c < 0xfe10; c++) DRAWS_NOTHING.add(c);
for (let c = 0xe0100; c < 0xe01f0; c++) DRAWS_NOTHING.add(c);
// Python's str.isspace().
const PY_SPACE = /^[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]$/u;
const isSpace = (ch) => PY_SPACE.test(ch);
const FORBIDDEN = new Set('\\/:*?"<>|');
// Python's unicodedata categories Cc, Cf, Cs, Co, Cn and Zl, Zp.
const INVISIBLE = /[\p{C}\p{Zl}\p{Zp}]/u;

/** The offer names a file that is not safe to save (error name "unsafe-name"). */
export class UnsafeNameError extends ProtocolError {
  constructor(message) {
    super(message);
    this.name = "unsafe-name";
  }
}

function utf8Length(text) {
  // As Python's text.encode("utf-8", "surrogatepass"): a lone surrogate takes 3 bytes.
  let n = 0;
  for (const ch of text) {
    const c = ch.codePointAt(0);
    n += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
  }
  return n;
}

function hex(c, width) {
  return c.toString(16).padStart(width, "0");
}

function escape(c) {
  return c < 0x100 ? `\\x${hex(c, 2)}` : c < 0x10000 ? `\\u${hex(c, 4)}` : `\\U${hex(c, 8)}`;
}

/** Control, format (bidi, zero-width), line/paragraph separator, or drawing nothing. */
function hidden(ch) {
  return INVISIBLE.test(ch) || DRAWS_NOTHING.has(ch.codePointAt(0));
}

/** Every control, format, invisible and non-space separator escaped, cut to `limit` characters. */
export function printable(text, limit = MAX_PRINT_CHARS) {
  const chars = [...text];
  let out = "";
  for (const ch of chars.slice(0, limit)) {
    out += hidden(ch) || (ch !== " " && isSpace(ch)) ? escape(ch.codePointAt(0)) : ch;
  }
  return out + (chars.length > limit ? "…" : "");
}

/** A received text message made safe to show: newlines and tabs stay, every other control,
 * format (bidi overrides) or invisible character is escaped (files.py's terminal_safe). */
export function terminalSafe(text) {
  let out = "";
  for (const ch of text) out += ch === "\n" || ch === "\t" || !hidden(ch) ? ch : escape(ch.codePointAt(0));
  return out;
}

/** A name in a message: already printable, quoted once. */
function quoted(text) {
  return `'${text}'`;
}

function repr(text) {
  // Python's repr() of a str, near enough for messages: single quotes unless the text has one.
  const body = text.replaceAll("\\", "\\\\");
  return body.includes("'") && !body.includes('"') ? `"${body}"` : `'${body.replaceAll("'", "\\'")}'`;
}

/** Refuse one path component that could escape, mislead or fail on some system. */
export function checkComponent(part) {
  const shown = () => quoted(printable(part)); // only for a refusal: printable() is not cheap
  if (part === "" || part === "." || part === "..") {
    throw new UnsafeNameError(`refused unsafe name ${shown()}: empty, '.' or '..' component`);
  }
  if (utf8Length(part) > MAX_COMPONENT_BYTES) {
    throw new UnsafeNameError(`refused unsafe name ${shown()}: longer than 255 bytes`);
  }
  for (const ch of part) {
    if (FORBIDDEN.has(ch)) throw new UnsafeNameError(`refused unsafe name ${shown()}: contains ${repr(ch)}`);
    if (INVISIBLE.test(ch)) {
      throw new UnsafeNameError(`refused unsafe name ${shown()}: contains control or invisible character`);
    }
  }
  const chars = [...part];
  const last = chars[chars.length - 1];
  if (last === "." || isSpace(last) || isSpace(chars[0])) {
    throw new UnsafeNameError(`refused unsafe name ${shown()}: leading space or trailing dot or space`);
  }
  if (chars.some((ch) => DRAWS_NOTHING.has(ch.codePointAt(0)))) {
    throw new UnsafeNameError(`refused unsafe name ${shown()}: contains a character that draws nothing`);
  }
  if (casefold(part).startsWith(RESERVED_PREFIX)) {
    throw new UnsafeNameError(`refused unsafe name ${shown()}: names starting with ${RESERVED_PREFIX} are p2pshare's own`);
  }
  const stem = part.split(".")[0].replace(/ +$/, "").toUpperCase();
  if (WINDOWS_DEVICES.has(stem)) {
    throw new UnsafeNameError(`refused unsafe name ${shown()}: reserved device name on Windows`);
  }
}

/** Split a relative POSIX path from an offer into checked components, or refuse it.
 * `passed`: a Set of components already checked (a tree repeats its folder names). */
export function checkPath(path, passed = null) {
  const shown = () => quoted(printable(path));
  if (!path || path.startsWith("/")) throw new UnsafeNameError(`refused unsafe path ${shown()}: empty or absolute`);
  if (utf8Length(path) > MAX_PATH_BYTES) {
    throw new UnsafeNameError(`refused unsafe path ${shown()}: longer than 4096 bytes`);
  }
  const parts = path.split("/");
  if (parts.length > MAX_DEPTH) throw new UnsafeNameError(`refused unsafe path ${shown()}: nested too deep`);
  for (const part of parts) {
    if (passed?.has(part)) continue;
    checkComponent(part);
    passed?.add(part);
  }
  return parts;
}

/**
 * Two paths with the same key would be the same file on some file system: NFC, then a case
 * fold (JavaScript has no str.casefold; upper then lower case folds ß, ſ, ligatures and the
 * like the same way for the names that matter).
 */
export function collisionKey(path) {
  return casefold(path.normalize("NFC"));
}

function casefold(text) {
  return text.toUpperCase().toLowerCase();
}

/** Checks an offer entry by entry (checkOffer, checkOfferYielding): what it saw so far is
 * kept to refuse two names for one file. */
class OfferCheck {
  constructor(count) {
    this.count = count;
    this.kinds = new Map();
    this.names = new Map();
    this.passed = new Set();
    this.parents = new Set(); // parent paths already known to be directories
  }

  add(entry) {
    const { kinds, names } = this;
    if (entry.kind === "text" && this.count !== 1) {
      throw new UnsafeNameError("refused offer: a text message must come alone");
    }
    const parts = checkPath(entry.path, this.passed);
    const shown = () => quoted(printable(entry.path));
    let parent = "";
    for (let depth = 1; depth < parts.length; depth++) {
      parent = depth === 1 ? parts[0] : `${parent}/${parts[depth - 1]}`;
      if (this.parents.has(parent)) continue;
      const key = collisionKey(parent);
      if ((kinds.get(key) ?? "dir") !== "dir") {
        throw new UnsafeNameError(
          `refused offer: ${shown()} needs ${quoted(printable(parent))} to be a directory, ` +
            "but the offer also sends it as a file",
        );
      }
      kinds.set(key, "dir");
      if (!names.has(key)) names.set(key, parent);
      this.parents.add(parent);
    }
    const key = collisionKey(entry.path);
    const kind = entry.kind === "dir" ? "dir" : "file";
    if (kinds.has(key) && (kind === "file" || kinds.get(key) === "file")) {
      throw new UnsafeNameError(
        `refused offer: ${shown()} and ${quoted(printable(names.get(key)))} name the same ` +
          "file (or a file and a directory)",
      );
    }
    kinds.set(key, kind);
    names.set(key, entry.path);
    return parts;
  }
}

/** Check every entry of an offer; return their components, or refuse the whole offer. */
export function checkOffer(files) {
  const check = new OfferCheck(files.length);
  return files.map((entry) => check.add(entry));
}

/** Let the page's event loop run (input, rendering, the data channel's messages). */
export function yieldToEventLoop() {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** checkOffer for a page: the same checks, in slices of about `sliceMs` with the event loop
 * run in between, so that a large offer does not freeze the tab. Resolves to nothing. */
export async function checkOfferYielding(files, sliceMs = 10) {
  const check = new OfferCheck(files.length);
  let since = performance.now();
  for (const entry of files) {
    check.add(entry);
    if (performance.now() - since >= sliceMs) {
      await yieldToEventLoop();
      since = performance.now();
    }
  }
}
