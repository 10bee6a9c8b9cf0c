// The transfer protocol as two sans-I/O state machines, ported from p2pshare/transfer.py:
// frames in, frames and events out. Neither class touches a channel, file, clock or the DOM;
// session.js feeds them frames and carries out what they return; tests drive them directly.
//
//   sender                                         receiver
//     │── Offer(files, total) ───────────────────────>│  validate, ask the user
//     │<─────────────────────── Accept(window) / Abort│
//     │<────────────── Have(prefixes it already holds)│  only after an interrupted try
//     │── Resume(index, offset) for each, first ─────>│
//     │── Data ... (never more than the credit) ─────>│  hash, keep
//     │<────────────────────────────── Credit(bytes) ─│  as data is stored
//     │── FileEnd(index, sha256) / DataEnd ──────────>│  verify
//     │<──────────────────────────────── FileAck(i) ──│
//     │<──────────────────────────────────── Done ────│  after the last file
//
// Events are plain objects: {type: "offer", files, compression, hashes}, {type: "accepted", window,
// have}, {type: "resumed", index, offset}, {type: "chunk", index, payload, rawLen},
// {type: "file-ended", index, sha256}, {type: "file-acked", index}, {type: "finished"},
// {type: "peer-aborted", error: Error}.

import { decode, encode, HAVE_BATCH, IntegrityError, offerFrames, offerFramesYielding, ProtocolError, totalBytes } from "./frames.js";
import { printable } from "./names.js";
import { PeerError } from "./seal.js";

export { PeerError };

export const DEFAULT_WINDOW_BYTES = 8 * 1024 * 1024;
export const ACK_EVERY_FILES = 256;
/** Entries a receiver takes in one offer: each costs memory before anything is shown. */
export const DEFAULT_MAX_OFFER_ENTRIES = 50_000;
/** Encoded size of a whole offer (all its messages) a receiver takes. */
export const DEFAULT_MAX_OFFER_BYTES = 8 * 1024 * 1024;

/** The receiver does not take the offer (error name "declined"). */
export class OfferDeclinedError extends Error {
  constructor(message) {
    super(message);
    this.name = "declined";
  }
}

const OFFERING = "offering";
const TRANSFERRING = "transferring";
const FINISHED = "finished";
const ABORTED = "aborted";

/** Message names as transfer.py says them ("unexpected Credit message" reaches the peer). */
const MESSAGE_NAMES = {
  offer: "OfferHead",
  "offer-more": "OfferMore",
  accept: "Accept",
  have: "Have",
  resume: "Resume",
  abort: "Abort",
  credit: "Credit",
  "file-end": "FileEnd",
  "file-ack": "FileAck",
  done: "Done",
  ping: "Ping",
  data: "Data",
  "data-z": "DataZ",
  "data-end": "DataEnd",
};

function unexpected(msg) {
  return new ProtocolError(`unexpected ${MESSAGE_NAMES[msg.type] ?? msg.type} message`);
}

function peerAbort(msg) {
  return { type: "peer-aborted", error: new PeerError(msg.error, "the other side: " + printable(msg.message)) };
}

function common(side, msg) {
  if (msg.type === "ping") return [];
  if (msg.type === "abort") {
    side.state = ABORTED;
    return [peerAbort(msg)];
  }
  return null;
}

function dataIndexes(files) {
  const out = [];
  files.forEach((entry, i) => {
    if (entry.kind !== "dir") out.push(i);
  });
  return out;
}

/** Prefixes must name regular file entries, in increasing order, within their size. */
export function checkPrefixes(files, prefixes) {
  let last = -1;
  for (const p of prefixes) {
    if (!(last < p.index && p.index < files.length)) {
      throw new ProtocolError("prefixes out of order or past the offer");
    }
    const entry = files[p.index];
    if (entry.kind !== "file" || entry.size === null || !(p.offset > 0 && p.offset <= entry.size)) {
      throw new ProtocolError("a prefix that does not fit its entry");
    }
    last = p.index;
  }
}

function firstIndexAtLeast(sorted, value) {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid] < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The sending side: offers `files`, then sends their data in order within the credit. */
export class SenderProtocol {
  constructor(files, compression = []) {
    this.files = files;
    this.compressionOffered = compression;
    this.state = OFFERING;
    this.credit = 0;
    this.order = dataIndexes(files);
    this.position = 0;
    this.sentInFile = 0;
    this.acked = 0;
    this.compression = null;
    this.window = 0;
    this.haveCount = 0;
    this.haveList = [];
    this.have = new Map();
    this.starts = new Map();
  }

  start() {
    return offerFrames(this.files, this.compressionOffered);
  }

  /** start() for a page: the same frames, built without holding the event loop for long. */
  startYielding() {
    return offerFramesYielding(this.files, this.compressionOffered);
  }

  /** Index of the entry being sent, or null when all were sent. */
  get current() {
    return this.position < this.order.length ? this.order[this.position] : null;
  }

  /** Bytes still to send of the current entry (null: a stream). */
  get currentRemaining() {
    const index = this.current;
    if (index === null) return 0;
    const size = this.files[index].size;
    return size === null ? null : size - this.sentInFile;
  }

  canSend(nbytes) {
    return this.credit >= nbytes;
  }

  get finished() {
    return this.state === FINISHED;
  }

  receive(frame) {
    const msg = decode(frame);
    const c = common(this, msg);
    if (c !== null) return c;
    if (this.state === OFFERING && msg.type === "accept" && !this.window) {
      if (msg.compression !== null && !this.compressionOffered.includes(msg.compression)) {
        throw new ProtocolError("the receiver chose a compression we did not offer");
      }
      if (msg.hash !== null) throw new ProtocolError("the receiver chose a hash we did not offer");
      this.compression = msg.compression;
      this.window = msg.window;
      this.haveCount = msg.have;
      return this.#accepted();
    }
    if (this.state === OFFERING && msg.type === "have" && this.window) {
      this.haveList.push(...msg.prefixes);
      return this.#accepted();
    }
    if (this.state === TRANSFERRING) {
      if (msg.type === "credit") {
        this.credit += msg.bytes;
        return [];
      }
      if (msg.type === "file-ack") {
        const upto = firstIndexAtLeast(this.order, msg.index);
        if (upto >= this.position || this.order[upto] !== msg.index || upto < this.acked) {
          throw new ProtocolError("acknowledgement for a file not yet sent");
        }
        this.acked = upto + 1;
        return [{ type: "file-acked", index: msg.index }];
      }
      if (msg.type === "done") {
        if (this.acked !== this.order.length) {
          throw new ProtocolError("done before every file was acknowledged");
        }
        this.state = FINISHED;
        return [{ type: "finished" }];
      }
    }
    throw unexpected(msg);
  }

  #accepted() {
    if (this.haveList.length > this.haveCount) {
      throw new ProtocolError("the receiver listed more prefixes than it declared");
    }
    if (this.haveList.length < this.haveCount) return [];
    checkPrefixes(this.files, this.haveList);
    this.have = new Map(this.haveList.map((p) => [p.index, p]));
    this.state = TRANSFERRING;
    this.credit = this.window;
    return [{ type: "accepted", window: this.window, have: new Map(this.have) }];
  }

  get resuming() {
    return this.starts.size < this.haveList.length;
  }

  /** Entry `index` starts at `offset` (the receiver's prefix matched ours) or 0 (it did not). */
  resume(index, offset) {
    const due = this.resuming ? this.haveList[this.starts.size] : null;
    if (due === null || index !== due.index || (offset !== 0 && offset !== due.offset)) {
      throw new Error("no such prefix to resume from");
    }
    this.starts.set(index, offset);
    if (index === this.current) this.sentInFile = offset;
    return encode({ type: "resume", index, offset });
  }

  #nextEntry() {
    this.position += 1;
    const current = this.current;
    this.sentInFile = current === null ? 0 : (this.starts.get(current) ?? 0);
  }

  #count(nbytes) {
    if (this.state !== TRANSFERRING || this.current === null || this.resuming) {
      throw new Error("not sending a file");
    }
    const remaining = this.currentRemaining;
    if (!nbytes || nbytes > this.credit || (remaining !== null && nbytes > remaining)) {
      throw new Error("payload exceeds credit or file size");
    }
    this.credit -= nbytes;
    this.sentInFile += nbytes;
  }

  /** Frame the next bytes of the current entry; the caller stays within the credit. */
  data(payload) {
    this.#count(payload.length);
    return encode({ type: "data", payload });
  }

  endFile(sha256) {
    const index = this.current;
    const remaining = this.currentRemaining;
    if (index === null || (remaining !== 0 && remaining !== null)) {
      throw new Error("file not completely sent");
    }
    const frame = encode({ type: "file-end", index, size: this.sentInFile, sha256 });
    this.#nextEntry();
    return frame;
  }

  /** The last bytes of the current entry and its end in one frame (payload may be empty). */
  dataEnd(payload, sha256) {
    const index = this.current;
    const remaining = this.currentRemaining;
    if (this.state !== TRANSFERRING || index === null || this.resuming) {
      throw new Error("not sending a file");
    }
    if (payload.length > this.credit || (remaining !== null && payload.length !== remaining)) {
      throw new Error("payload exceeds credit or does not end the file");
    }
    this.credit -= payload.length;
    const size = this.sentInFile + payload.length;
    this.#nextEntry();
    return encode({ type: "data-end", index, size, sha256, payload });
  }
}

/** The receiving side: enforces order, declared counts and sizes, and its credit. */
export class ReceiverProtocol {
  constructor(maxEntries = DEFAULT_MAX_OFFER_ENTRIES, maxOfferBytes = DEFAULT_MAX_OFFER_BYTES) {
    this.maxEntries = maxEntries;
    this.maxOfferBytes = maxOfferBytes;
    this.offerBytes = 0;
    this.state = OFFERING;
    this.files = null;
    this.compressionOffered = [];
    this.head = null;
    this.entries = [];
    this.order = [];
    this.position = 0;
    this.receivedInFile = 0;
    this.outstanding = 0;
    this.window = 0;
    this.returned = 0;
    this.verified = 0;
    this.unacked = 0;
    this.compression = null;
    this.haveList = [];
    this.starts = new Map();
  }

  get finished() {
    return this.state === FINISHED;
  }

  receive(frame) {
    const msg = decode(frame);
    const c = common(this, msg);
    if (c !== null) return c;
    if (this.state === OFFERING && this.files === null) {
      if (msg.type === "offer" || msg.type === "offer-more") {
        this.offerBytes += frame.length;
        if (this.offerBytes > this.maxOfferBytes) {
          throw new OfferDeclinedError(
            `not accepted: the offer is larger than ${this.maxOfferBytes.toLocaleString("en")} bytes of names`,
          );
        }
      }
      if (msg.type === "offer" && this.head === null) {
        if (msg.count > this.maxEntries) {
          throw new OfferDeclinedError(
            `not accepted: the offer has ${msg.count.toLocaleString("en")} entries, ` +
              `more than ${this.maxEntries.toLocaleString("en")}`,
          );
        }
        this.head = msg;
        return this.#collect(msg.files);
      }
      if (msg.type === "offer-more" && this.head !== null) return this.#collect(msg.files);
    }
    if (this.state === TRANSFERRING && this.files !== null) {
      if (this.position >= this.order.length) throw new ProtocolError("more files than offered");
      const index = this.order[this.position];
      const size = this.files[index].size;
      if (this.starts.size < this.haveList.length) {
        const due = this.haveList[this.starts.size];
        if (msg.type !== "resume" || msg.index !== due.index) {
          throw new ProtocolError("data before the resume messages");
        }
        if (msg.offset !== 0 && msg.offset !== due.offset) {
          throw new ProtocolError("resuming at an offset we did not offer");
        }
        this.starts.set(due.index, msg.offset);
        if (due.index === index) this.receivedInFile = msg.offset;
        return [{ type: "resumed", index: due.index, offset: msg.offset }];
      }
      if (msg.type === "data") {
        if (!msg.payload.length) throw new ProtocolError("empty data message");
        return [this.#take(index, size, msg.payload)];
      }
      if (msg.type === "data-z") {
        if (this.compression !== "zstd") {
          throw new ProtocolError("compressed data without agreeing on compression");
        }
        return [this.#take(index, size, msg.payload, msg.rawLen)];
      }
      if (msg.type === "data-end") {
        const events = msg.payload.length ? [this.#take(index, size, msg.payload)] : [];
        return [...events, this.#end(index, size, msg.index, msg.size, msg.sha256)];
      }
      if (msg.type === "file-end") return [this.#end(index, size, msg.index, msg.size, msg.sha256)];
    }
    throw unexpected(msg);
  }

  #take(index, size, payload, rawLen = null) {
    const nbytes = rawLen === null ? payload.length : rawLen;
    if (size !== null && this.receivedInFile + nbytes > size) {
      throw new IntegrityError("the sender sent more bytes than it declared");
    }
    if (nbytes > this.outstanding) throw new ProtocolError("the sender ignored flow control");
    this.outstanding -= nbytes;
    this.receivedInFile += nbytes;
    return { type: "chunk", index, payload, rawLen };
  }

  #end(index, size, claimedIndex, claimedSize, sha256) {
    if (claimedIndex !== index) throw new ProtocolError("file end out of order");
    if (claimedSize !== this.receivedInFile || (size !== null && this.receivedInFile !== size)) {
      throw new IntegrityError("the sender sent fewer bytes than it declared");
    }
    this.position += 1;
    const following = this.position < this.order.length ? this.order[this.position] : -1;
    this.receivedInFile = this.starts.get(following) ?? 0;
    return { type: "file-ended", index, sha256 };
  }

  #collect(files) {
    this.entries.push(...files);
    if (this.entries.length > this.head.count) {
      throw new ProtocolError("the sender offered more entries than it declared");
    }
    if (this.entries.length < this.head.count) return [];
    const total = totalBytes(this.entries);
    if (total !== (this.head.total === null ? null : Number(this.head.total))) {
      throw new ProtocolError("the offer's total does not match its entries");
    }
    this.files = this.entries;
    this.compressionOffered = this.head.compression;
    this.order = dataIndexes(this.files);
    this.entries = [];
    return [{ type: "offer", files: this.files, compression: this.compressionOffered, hashes: this.head.hashes }];
  }

  /** Accept with `window` bytes of credit; `compression` one of the offered codecs or null. */
  accept(window = DEFAULT_WINDOW_BYTES, compression = null, have = []) {
    if (this.files === null || this.state !== OFFERING) throw new Error("nothing to accept");
    checkPrefixes(this.files, have);
    this.state = TRANSFERRING;
    this.window = this.outstanding = window;
    this.compression = compression !== null && this.compressionOffered.includes(compression) ? compression : null;
    this.haveList = [...have];
    const frames = [encode({ type: "accept", window, compression: this.compression, have: have.length })];
    for (let start = 0; start < have.length; start += HAVE_BATCH) {
      frames.push(encode({ type: "have", prefixes: have.slice(start, start + HAVE_BATCH) }));
    }
    return frames;
  }

  /** `nbytes` are stored: grant them back, in batches of a quarter window. */
  consumed(nbytes) {
    this.returned += nbytes;
    if (this.returned < Math.max(1, Math.floor(this.window / 4))) return null;
    const grant = this.returned;
    this.returned = 0;
    this.outstanding += grant;
    return encode({ type: "credit", bytes: grant });
  }

  /** Entry `index` is verified: acknowledge cumulatively (every ACK_EVERY_FILES files, after
   * a large file); the last file's acknowledgement waits for finish(). */
  fileVerified(index) {
    if (this.files === null || this.verified >= this.position || index !== this.order[this.verified]) {
      throw new Error("file verified out of order");
    }
    this.verified += 1;
    this.unacked += 1;
    if (this.receivedAll) return [];
    const size = this.files[index].size;
    if (!(this.unacked >= ACK_EVERY_FILES || size === null || size >= Math.floor(this.window / 4))) {
      return [];
    }
    this.unacked = 0;
    return [encode({ type: "file-ack", index })];
  }

  /** Every file of the accepted offer is verified (at once for directories only). */
  get receivedAll() {
    return this.state === TRANSFERRING && this.verified === this.order.length;
  }

  /** Everything is in place: the last acknowledgement and Done (never before). */
  finish() {
    if (!this.receivedAll) throw new Error("files are still outstanding");
    this.state = FINISHED;
    const frames = this.order.length ? [encode({ type: "file-ack", index: this.order[this.order.length - 1] })] : [];
    return [...frames, encode({ type: "done" })];
  }
}

/** The frame that tells the peer we stop, and why (`error.name` is the stable name). */
export function abortFrame(name, message) {
  return encode({ type: "abort", error: name, message });
}

export function pingFrame() {
  return encode({ type: "ping" });
}
