// JSON as Python's json module reads and writes it, where the peer protocol needs the
// difference (docs/protocol.md: control messages are one UTF-8 JSON object):
// - parse: integers stay exact (BigInt above 2^53), floats are marked (JsonFloat), so that
//   "1.0" is refused where Python wants an int, like p2pshare/messages.py does; NaN and
//   Infinity are accepted as floats, as Python does;
// - stringify: Python's json.dumps(..., ensure_ascii=False) byte for byte, compact
//   (separators=(",", ":"), the wire format) or spaced (the default, used to size offer batches).
// No I/O, no DOM.

/** A JSON number written with a fraction or exponent (a Python float). */
export class JsonFloat {
  constructor(value) {
    this.value = value;
  }
}

export class JsonError extends Error {}

const MAX_DEPTH = 900;
const WS = new Set([" ", "\t", "\n", "\r"]);
const NUMBER_RE = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;

/** Parse JSON text; objects have no prototype (so "__proto__" is an ordinary key). */
export function parse(text) {
  let at = 0;

  function fail(what) {
    throw new JsonError(`${what} at ${at}`);
  }

  function skip() {
    while (at < text.length && WS.has(text[at])) at++;
  }

  function string() {
    at++; // opening quote
    let out = "";
    let start = at;
    for (;;) {
      if (at >= text.length) fail("unterminated string");
      const c = text.charCodeAt(at);
      if (c === 0x22) {
        out += text.slice(start, at);
        at++;
        return out;
      }
      if (c < 0x20) fail("control character in string");
      if (c === 0x5c) {
        out += text.slice(start, at);
        const e = text[at + 1];
        at += 2;
        if (e === "u") {
          const hex = text.slice(at, at + 4);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail("bad escape");
          out += String.fromCharCode(parseInt(hex, 16));
          at += 4;
        } else {
          const map = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };
          if (!(e in map)) fail("bad escape");
          out += map[e];
        }
        start = at;
      } else {
        at++;
      }
    }
  }

  function number() {
    NUMBER_RE.lastIndex = at;
    const m = NUMBER_RE.exec(text);
    if (!m) fail("bad number");
    at += m[0].length;
    if (m[1] !== undefined || m[2] !== undefined) return new JsonFloat(Number(m[0]));
    const n = BigInt(m[0]);
    return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER)
      ? Number(n)
      : n;
  }

  function value(depth) {
    if (depth > MAX_DEPTH) fail("nested too deep");
    skip();
    const c = text[at];
    if (c === "{") {
      at++;
      const obj = Object.create(null);
      skip();
      if (text[at] === "}") {
        at++;
        return obj;
      }
      for (;;) {
        skip();
        if (text[at] !== '"') fail("expected a key");
        const key = string();
        skip();
        if (text[at] !== ":") fail("expected ':'");
        at++;
        obj[key] = value(depth + 1);
        skip();
        if (text[at] === ",") {
          at++;
          continue;
        }
        if (text[at] === "}") {
          at++;
          return obj;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      at++;
      const arr = [];
      skip();
      if (text[at] === "]") {
        at++;
        return arr;
      }
      for (;;) {
        arr.push(value(depth + 1));
        skip();
        if (text[at] === ",") {
          at++;
          continue;
        }
        if (text[at] === "]") {
          at++;
          return arr;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return string();
    for (const [word, result] of [
      ["true", true],
      ["false", false],
      ["null", null],
      ["NaN", new JsonFloat(NaN)],
      ["Infinity", new JsonFloat(Infinity)],
      ["-Infinity", new JsonFloat(-Infinity)],
    ]) {
      if (text.startsWith(word, at)) {
        at += word.length;
        return result;
      }
    }
    if (c === "-" || (c >= "0" && c <= "9")) return number();
    fail("unexpected character");
  }

  const result = value(0);
  skip();
  if (at !== text.length) fail("extra data");
  return result;
}

export function isObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof JsonFloat);
}

/** Python's repr() of a float, which json.dumps uses. */
export function pyFloat(x) {
  if (Number.isNaN(x)) return "NaN";
  if (x === Infinity) return "Infinity";
  if (x === -Infinity) return "-Infinity";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const [mantissa, expText] = x.toExponential().split("e");
  const exp = Number(expText);
  const negative = mantissa.startsWith("-");
  const digits = mantissa.replace("-", "").replace(".", "");
  let out;
  if (exp >= -5 && exp < 16) {
    // Python's repr switches to exponent notation below 1e-4 and from 1e16.
    if (exp < -4) {
      out = null;
    } else if (exp < 0) {
      out = "0." + "0".repeat(-exp - 1) + digits;
    } else if (digits.length <= exp + 1) {
      out = digits + "0".repeat(exp + 1 - digits.length) + ".0";
    } else {
      out = digits.slice(0, exp + 1) + "." + digits.slice(exp + 1);
    }
  }
  if (out === undefined || out === null) {
    const m = digits.length > 1 ? digits[0] + "." + digits.slice(1) : digits;
    const sign = exp < 0 ? "-" : "+";
    out = m + "e" + sign + String(Math.abs(exp)).padStart(2, "0");
  }
  return (negative ? "-" : "") + out;
}

/**
 * json.dumps(value, ensure_ascii=False) with compact or default separators; with `ascii`,
 * json.dumps's default ensure_ascii=True (every non-ASCII UTF-16 unit as a \\uXXXX escape).
 */
export function stringify(value, compact = true, ascii = false) {
  const [itemSep, keySep] = compact ? [",", ":"] : [", ", ": "];
  function enc(v) {
    if (v === null || v === undefined) return "null";
    if (v === true) return "true";
    if (v === false) return "false";
    if (v instanceof JsonFloat) return pyFloat(v.value);
    if (typeof v === "bigint") return v.toString();
    if (typeof v === "number") {
      if (!Number.isInteger(v)) return pyFloat(v);
      return String(v);
    }
    if (typeof v === "string") return JSON.stringify(v);
    if (Array.isArray(v)) return "[" + v.map(enc).join(itemSep) + "]";
    return (
      "{" +
      Object.keys(v)
        .map((k) => JSON.stringify(k) + keySep + enc(v[k]))
        .join(itemSep) +
      "}"
    );
  }
  const text = enc(value);
  return ascii ? text.replace(/[^\x00-\x7f]/g, (ch) => "\\u" + ch.charCodeAt(0).toString(16).padStart(4, "0")) : text;
}
