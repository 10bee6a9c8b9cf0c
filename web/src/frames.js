// Wire format of the peer protocol on the data channel (docs/protocol.md, p2pshare/messages.py):
// one binary message per frame, byte 0 the type. Data carries raw bytes, DataEnd and DataZ a
// binary header and bytes, every other type one UTF-8 JSON object. decode() validates the
// types and ranges of every field exactly as messages.py does and throws ProtocolError on
// anything else. No I/O, no DOM.

import { concatBytes, fromHex, toHex, utf8 } from "./bytes.js";
import { isObject, JsonError, JsonFloat, parse, stringify } from "./json.js";

export const PROTOCOL_VERSION = 1;
export const MAX_FILE_BYTES = 2n ** 62n;
export const MAX_ENTRIES = 10_000_000;
export const MAX_TEXT_CHARS = 1024;
export const MAX_TEXT_BYTES = 1024 * 1024;
export const MAX_DATAZ_RAW_BYTES = 1024 * 1024;
export const OFFER_BATCH_BYTES = 48 * 1024;
export const HAVE_BATCH = 512;
export const CODECS = ["zstd"];
// Hashes a sender may offer besides SHA-256. The page offers none and never picks one: it
// hashes with SHA-256, which every peer speaks.
export const HASHES = ["blake3"];
export const KINDS = ["file", "dir", "stream", "text"];

export const T = Object.freeze({
  OFFER: 0x01,
  ACCEPT: 0x02,
  ABORT: 0x03,
  CREDIT: 0x04,
  FILE_END: 0x05,
  FILE_ACK: 0x06,
  DONE: 0x07,
  PING: 0x08,
  OFFER_MORE: 0x09,
  HAVE: 0x0a,
  RESUME: 0x0b,
  DATA: 0x10,
  DATA_END: 0x11,
  DATA_Z: 0x12,
});
export const DATA_END_HEADER = 4 + 8 + 32;
export const DATA_END_OVERHEAD = 1 + DATA_END_HEADER;

/** The other side broke the protocol (error name "protocol", as in errors.py). */
export class ProtocolError extends Error {
  constructor(message = "the other side broke the p2pshare protocol") {
    super(message);
    this.name = "protocol";
  }
}

/** The data received does not match what was declared (error name "integrity"). */
export class IntegrityError extends Error {
  constructor(message = "integrity failure: the data received does not match what was sent") {
    super(message);
    this.name = "integrity";
  }
}

const HEX64 = /^[0-9a-f]{64}$/;

function toNumber(n) {
  // Exact values up to 2^53 become numbers; larger ones stay BigInt (a browser cannot hold
  // such a file anyway; transfer.js refuses offers it cannot count).
  return typeof n === "bigint" && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
}

function isInt(v) {
  return (typeof v === "number" && Number.isInteger(v)) || typeof v === "bigint";
}

function get(obj, key) {
  return Object.hasOwn(obj, key) ? obj[key] : undefined;
}

function int(obj, key, lo = 0, hi = MAX_FILE_BYTES) {
  const v = get(obj, key);
  if (!isInt(v) || BigInt(v) < BigInt(lo) || BigInt(v) > BigInt(hi)) {
    throw new ProtocolError(`field '${key}' must be an integer from ${lo} to ${hi}`);
  }
  return toNumber(v);
}

function codePoints(s) {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

function str(obj, key, maxChars = MAX_TEXT_CHARS) {
  const v = get(obj, key);
  if (typeof v !== "string" || codePoints(v) > maxChars) {
    throw new ProtocolError(`field '${key}' must be a string of at most ${maxChars} characters`);
  }
  return v;
}

function sha(obj, key = "sha256") {
  const digest = str(obj, key, 64);
  if (!HEX64.test(digest)) throw new ProtocolError("field 'sha256' must be 64 lowercase hex digits");
  return digest;
}

/** An offer entry as the sender declares it (untrusted until names.js says so). */
export function entryFromJson(obj) {
  if (!isObject(obj)) throw new ProtocolError("a file entry must be an object");
  const kind = Object.hasOwn(obj, "kind") ? obj.kind : "file";
  if (!KINDS.includes(kind)) throw new ProtocolError("unknown entry kind");
  let mtime = get(obj, "mtime");
  if (mtime !== undefined && mtime !== null) {
    const value = mtime instanceof JsonFloat ? mtime.value : isInt(mtime) ? Number(mtime) : NaN;
    if (!(value >= 0 && value < 2 ** 40)) throw new ProtocolError("field 'mtime' must be a timestamp");
    mtime = value;
  } else {
    mtime = null;
  }
  let size;
  if (kind === "stream") {
    if (get(obj, "size") !== undefined && get(obj, "size") !== null) {
      throw new ProtocolError("a stream has no declared size");
    }
    size = null;
  } else {
    size = int(obj, "size", 0, kind === "text" ? MAX_TEXT_BYTES : MAX_FILE_BYTES);
    if (kind === "dir" && size !== 0) throw new ProtocolError("a directory has size 0");
  }
  return { path: str(obj, "path", 4096), size, mode: int(obj, "mode", 0, 0o7777), mtime, kind };
}

/** FileEntry.to_json: path, size, mode, then kind (unless file), then mtime (a float). */
export function entryToJson(entry) {
  const obj = { path: entry.path, size: entry.size, mode: entry.mode ?? 0o644 };
  if ((entry.kind ?? "file") !== "file") obj.kind = entry.kind;
  if (entry.mtime !== null && entry.mtime !== undefined) obj.mtime = new JsonFloat(entry.mtime);
  return obj;
}

function entries(obj) {
  const raw = get(obj, "files");
  if (!Array.isArray(raw) || raw.length > MAX_ENTRIES) {
    throw new ProtocolError("'files' must be a list of entries");
  }
  return raw.map(entryFromJson);
}

/** The sum of declared sizes, or null when a stream is offered. */
export function totalBytes(files) {
  let total = 0;
  for (const f of files) {
    if (f.size === null) return null;
    total += Number(f.size);
  }
  return total;
}

function frame(type, obj) {
  return concatBytes(Uint8Array.of(type), utf8(stringify(obj)));
}

/** Offer.frames(): the head with the first batch of entries, then OfferMore batches. */
export function offerFrames(files, compression = [], hashes = []) {
  const batches = new OfferBatches();
  for (const entry of files) batches.add(entry);
  return [...batches.frames(files, compression, hashes)];
}

/** offerFrames for a page: the same frames, built in slices of about `sliceMs` with the
 * event loop run in between (a tree of 50,000 entries took a second in one task). */
export async function offerFramesYielding(files, compression = [], hashes = [], sliceMs = 10) {
  const batches = new OfferBatches();
  let since = performance.now();
  const breathe = async () => {
    if (performance.now() - since < sliceMs) return;
    await new Promise((resolve) => setTimeout(resolve, 0));
    since = performance.now();
  };
  for (const entry of files) {
    batches.add(entry);
    await breathe();
  }
  const out = [];
  for (const f of batches.frames(files, compression, hashes)) {
    out.push(f);
    await breathe();
  }
  return out;
}

/** Entries gathered into batches of at most OFFER_BATCH_BYTES of JSON. */
class OfferBatches {
  constructor() {
    this.batches = [[]];
    this.used = 0;
  }

  add(entry) {
    const obj = entryToJson(entry);
    const cost = utf8(stringify(obj, false)).length + 1;
    const batches = this.batches;
    if (batches[batches.length - 1].length && this.used + cost > OFFER_BATCH_BYTES) {
      batches.push([]);
      this.used = 0;
    }
    batches[batches.length - 1].push(obj);
    this.used += cost;
  }

  /** The frames, one at a time (each is a batch's JSON). */
  *frames(files, compression, hashes) {
    const [first, ...rest] = this.batches;
    const head = { v: PROTOCOL_VERSION, count: files.length, total: totalBytes(files), files: first };
    if (compression.length) head.compression = [...compression];
    if (hashes.length) head.hash = [...hashes];
    yield frame(T.OFFER, head);
    for (const b of rest) yield frame(T.OFFER_MORE, { files: b });
  }
}

/** An optional short list of short names (codecs, hashes); unknown ones are kept. */
function names(obj, key) {
  const list = Object.hasOwn(obj, key) ? obj[key] : [];
  if (
    !Array.isArray(list) ||
    list.length > 8 ||
    !list.every((c) => typeof c === "string" && codePoints(c) <= 16)
  ) {
    throw new ProtocolError(`field '${key}' must be a short list of names`);
  }
  return list;
}

const CONTROL = {
  [T.OFFER](obj) {
    const version = int(obj, "v", 1, 1000);
    if (version !== PROTOCOL_VERSION) {
      throw new ProtocolError(
        `the sender speaks protocol version ${version}, we speak ${PROTOCOL_VERSION}: ` +
          "upgrade p2pshare on both sides",
      );
    }
    const count = int(obj, "count", 1, MAX_ENTRIES);
    const total =
      get(obj, "total") === undefined || get(obj, "total") === null
        ? null
        : int(obj, "total", 0, MAX_FILE_BYTES * 4n);
    const codecs = names(obj, "compression");
    const hashes = names(obj, "hash");
    return { type: "offer", count, total, files: entries(obj), compression: codecs, hashes };
  },
  [T.OFFER_MORE]: (obj) => ({ type: "offer-more", files: entries(obj) }),
  [T.ACCEPT](obj) {
    const codec = get(obj, "compression");
    if (codec !== undefined && codec !== null && !CODECS.includes(codec)) {
      throw new ProtocolError("unknown compression");
    }
    const have = Object.hasOwn(obj, "have") ? int(obj, "have", 0, MAX_ENTRIES) : 0;
    const hash = get(obj, "hash");
    if (hash !== undefined && hash !== null && !HASHES.includes(hash)) {
      throw new ProtocolError("unknown hash");
    }
    const window = int(obj, "window", 1, 2 ** 31);
    return { type: "accept", window, compression: codec ?? null, have, hash: hash ?? null };
  },
  [T.HAVE](obj) {
    const raw = get(obj, "entries");
    if (!Array.isArray(raw) || !(raw.length > 0 && raw.length <= HAVE_BATCH)) {
      throw new ProtocolError(`'entries' must be a list of 1 to ${HAVE_BATCH} prefixes`);
    }
    const prefixes = raw.map((item) => {
      if (!Array.isArray(item) || item.length !== 3) {
        throw new ProtocolError("a prefix must be [index, offset, sha256]");
      }
      const fields = { index: item[0], offset: item[1], sha256: item[2] };
      const digest = sha(fields);
      const offset = int(fields, "offset", 1);
      return { index: int(fields, "index", 0, MAX_ENTRIES), offset, sha256: digest };
    });
    return { type: "have", prefixes };
  },
  [T.RESUME]: (obj) => ({ type: "resume", index: int(obj, "index", 0, MAX_ENTRIES), offset: int(obj, "offset") }),
  [T.ABORT]: (obj) => ({ type: "abort", error: str(obj, "error", 64), message: str(obj, "message") }),
  [T.CREDIT]: (obj) => ({ type: "credit", bytes: int(obj, "bytes", 1, 2 ** 31) }),
  [T.FILE_END](obj) {
    const digest = sha(obj);
    return { type: "file-end", index: int(obj, "index", 0, MAX_ENTRIES), size: int(obj, "size"), sha256: digest };
  },
  [T.FILE_ACK]: (obj) => ({ type: "file-ack", index: int(obj, "index", 0, MAX_ENTRIES) }),
  [T.DONE]: () => ({ type: "done" }),
  [T.PING]: () => ({ type: "ping" }),
};

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Parse one data-channel frame (a Uint8Array); anything malformed throws ProtocolError. */
export function decode(bytes) {
  if (!(bytes instanceof Uint8Array) || bytes.length === 0) {
    throw new ProtocolError("expected a non-empty binary message");
  }
  const kind = bytes[0];
  if (kind === T.DATA) return { type: "data", payload: bytes.subarray(1) };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (kind === T.DATA_Z) {
    if (bytes.length < 5) throw new ProtocolError("truncated compressed data message");
    const rawLen = view.getUint32(1);
    if (!(rawLen > 0 && rawLen <= MAX_DATAZ_RAW_BYTES)) {
      throw new ProtocolError("compressed data message of impossible size");
    }
    return { type: "data-z", rawLen, payload: bytes.subarray(5) };
  }
  if (kind === T.DATA_END) {
    const end = DATA_END_OVERHEAD;
    if (bytes.length < end) throw new ProtocolError("truncated data-end message");
    const index = view.getUint32(1);
    const size = view.getBigUint64(5);
    if (index > MAX_ENTRIES || size > MAX_FILE_BYTES) {
      throw new ProtocolError("data-end fields out of range");
    }
    return {
      type: "data-end",
      index,
      size: toNumber(size),
      sha256: toHex(bytes.subarray(13, 45)),
      payload: bytes.subarray(end),
    };
  }
  const parser = CONTROL[kind];
  if (parser === undefined) throw new ProtocolError(`unknown message type ${kind}`);
  let obj;
  try {
    obj = parse(strictUtf8.decode(bytes.subarray(1)));
  } catch (e) {
    if (e instanceof JsonError || e instanceof TypeError || e instanceof RangeError) {
      throw new ProtocolError("malformed control message");
    }
    throw e;
  }
  if (!isObject(obj)) throw new ProtocolError("a control message must be a JSON object");
  return parser(obj);
}

/** One frame for a control message or data message (offers: offerFrames). */
export function encode(msg) {
  switch (msg.type) {
    case "data":
      return concatBytes(Uint8Array.of(T.DATA), msg.payload);
    case "data-z": {
      const head = new Uint8Array(5);
      head[0] = T.DATA_Z;
      new DataView(head.buffer).setUint32(1, msg.rawLen);
      return concatBytes(head, msg.payload);
    }
    case "data-end": {
      const head = new Uint8Array(DATA_END_OVERHEAD);
      const view = new DataView(head.buffer);
      head[0] = T.DATA_END;
      view.setUint32(1, msg.index);
      view.setBigUint64(5, BigInt(msg.size));
      head.set(fromHex(msg.sha256), 13);
      return concatBytes(head, msg.payload);
    }
    case "accept": {
      const obj = { window: msg.window };
      if (msg.compression) obj.compression = msg.compression;
      if (msg.hash) obj.hash = msg.hash;
      if (msg.have) obj.have = msg.have;
      return frame(T.ACCEPT, obj);
    }
    case "have":
      return frame(T.HAVE, { entries: msg.prefixes.map((p) => [p.index, p.offset, p.sha256]) });
    case "resume":
      return frame(T.RESUME, { index: msg.index, offset: msg.offset });
    case "abort":
      return frame(T.ABORT, { error: msg.error, message: [...msg.message].slice(0, MAX_TEXT_CHARS).join("") });
    case "credit":
      return frame(T.CREDIT, { bytes: msg.bytes });
    case "file-end":
      return frame(T.FILE_END, { index: msg.index, size: msg.size, sha256: msg.sha256 });
    case "file-ack":
      return frame(T.FILE_ACK, { index: msg.index });
    case "done":
      return frame(T.DONE, {});
    case "ping":
      return frame(T.PING, {});
    default:
      throw new Error(`cannot encode ${msg.type}`);
  }
}
