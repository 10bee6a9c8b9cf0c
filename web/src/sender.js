// Sending, as p2pshare/sender.py and sources.py: entries from File objects, the sender's own
// check of its names, then the offer, the receiver's prefixes answered, and every file read in
// slices within the receiver's credit, hashed as it goes. Browser APIs only.

import { generateWords, parseCode } from "./codes.js";
import { DeclinedError } from "./errors.js";
import { DATA_END_OVERHEAD } from "./frames.js";
import { createHash } from "./hashing.js";
import { checkOffer, checkOfferYielding, printable, yieldToEventLoop } from "./names.js";
import { randomBytes, SENDER } from "./pake.js";
import { pairAndConnect } from "./pairing.js";
import { RendezvousClient } from "./rendezvous.js";
import { SenderProtocol } from "./transfer.js";
import { throttled, Wire, withPeer } from "./wire.js";

const READ_BLOCK_BYTES = 4 * 1024 * 1024;
/** Small files are read this many files ahead: a read of a File is a round trip to the
 * browser's file thread, and one at a time a tree of small files waited on each. */
const READ_AHEAD_FILES = 32;
const READ_AHEAD_FILE_BYTES = 64 * 1024;

/** Entries for the offer from File objects (webkitRelativePath keeps a chosen folder's tree). */
export function entriesFor(files) {
  const sources = new Sources();
  for (const file of files) sources.add(file);
  return sources.list;
}

/** entriesFor for a page, with the event loop run every `sliceMs`: a chosen folder's File
 * objects learn their size and time from the browser one synchronous call at a time (0.4 ms
 * each on a loaded machine: seconds for a tree of 10,000 files in one task). */
export async function entriesForYielding(files, sliceMs = 10) {
  const sources = new Sources();
  let since = performance.now();
  for (const file of files) {
    sources.add(file);
    if (performance.now() - since >= sliceMs) {
      await yieldToEventLoop();
      since = performance.now();
    }
  }
  return sources.list;
}

class Sources {
  constructor() {
    this.seen = new Set();
    this.list = [];
  }

  add(file) {
    const { seen, list: sources } = this;
    const path = file.p2psharePath ?? (file.webkitRelativePath || file.name);
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join("/");
      if (!seen.has(dir)) {
        seen.add(dir);
        sources.push({ file: null, entry: { path: dir, size: 0, mode: 0o755, mtime: null, kind: "dir" } });
      }
    }
    const mtime = Number.isFinite(file.lastModified) ? file.lastModified / 1000 : null;
    sources.push({ file, entry: { path, size: file.size, mode: 0o644, mtime, kind: "file" } });
  }
}

/** Refuse, before a code is shown, what every receiver would refuse (sources.py). */
export function checkOwnOffer(entries) {
  try {
    checkOffer(entries);
  } catch (e) {
    throw ownOfferError(e);
  }
}

/** checkOwnOffer for a page: the same checks, with the event loop run between slices. */
export async function checkOwnOfferYielding(entries) {
  try {
    await checkOfferYielding(entries);
  } catch (e) {
    throw ownOfferError(e);
  }
}

function ownOfferError(e) {
  if (e.name !== "unsafe-name") return e;
  const reason = e.message.replace(/^refused /, "").replace(/^offer: /, "");
  return Object.assign(
    new Error(`cannot send: ${reason}; a receiver would refuse it (rename it and send again)`),
    { name: "unsafe-name", local: true },
  );
}

async function readSlice(file, start, end) {
  try {
    // A whole file is read without slice(): in Chromium each slice() of a File cost 0.55 ms
    // of the main thread, most of the time a tree of small files spent (bench/page_tree.py).
    const part = start === 0 && end >= file.size ? file : file.slice(start, end);
    return new Uint8Array(await part.arrayBuffer());
  } catch {
    throw Object.assign(new Error(`cannot read ${printable(file.name)} (was it changed or moved?)`), {
      name: "file-error",
    });
  }
}

/** Hash the first `length` bytes of `file` into `hasher`. */
async function hashPrefix(file, length, hasher) {
  for (let pos = 0; pos < length; pos += READ_BLOCK_BYTES) {
    hasher.update(await readSlice(file, pos, Math.min(length, pos + READ_BLOCK_BYTES)));
  }
}

/**
 * Send `files` (File objects). Resolves once the receiver verified everything.
 * `server`: the rendezvous URL; `wordlist`: the 256 code words; `confirmWords`: resolves
 * true once the person confirmed that the other side shows the same security words, false
 * if they differ. The page always asks (it always shows the words): it is awaited once the
 * data channel is open, before anything is sent on it (the Offer included), pings running
 * meanwhile, as the CLI's `send --verify` does; false stops both sides with Abort "declined".
 */
export async function sendFiles(files, { server, wordlist, confirmWords, onEvent = () => {}, abort = null }) {
  if (typeof confirmWords !== "function") throw new TypeError("sendFiles needs confirmWords: a page sender always asks");
  const sources = await entriesForYielding(files);
  if (!sources.some((s) => s.file !== null)) throw new Error("choose at least one file");
  await checkOwnOfferYielding(sources.map((s) => s.entry));
  const rv = await RendezvousClient.connect(server);
  try {
    const nameplate = await rv.allocate();
    const code = parseCode([nameplate, ...generateWords(wordlist, 2, randomBytes)].join("-"));
    onEvent({ type: "code", code: code.text });
    const link = await pairAndConnect(rv, SENDER, code, onEvent);
    if (abort) abort.link = link;
    return await withPeer(link, () => sendEntries(link, sources, onEvent, confirmWords));
  } finally {
    rv.close();
  }
}

const WORDS_DIFFER = "the security words differ: nothing was sent";

async function sendEntries(link, sources, onEvent, confirmWords) {
  const proto = new SenderProtocol(sources.map((s) => s.entry));
  const state = { accepted: false, finished: false, acked: 0 };
  const wire = new Wire(link, (frame) => {
    for (const event of proto.receive(frame)) {
      if (event.type === "peer-aborted") throw event.error;
      if (event.type === "accepted") state.accepted = true;
      else if (event.type === "finished") state.finished = true;
    }
  });
  const dataSources = sources.filter((s) => s.entry.kind !== "dir");
  const order = sources.map((s, i) => (s.entry.kind !== "dir" ? i : -1)).filter((i) => i >= 0);
  const total = dataSources.reduce((n, s) => n + s.entry.size, 0);
  const chunk = link.maxMessageBytes - DATA_END_OVERHEAD;
  const progress = throttled(onEvent);

  return wire.run(async () => {
    // Nothing leaves before the person confirmed the words (sender.py does the same).
    if (!(await confirmWords())) throw new DeclinedError(WORDS_DIFFER);
    for (const frame of await proto.startYielding()) {
      link.send(frame);
      await link.drain();
    }
    await wire.until(() => state.accepted);
    const started = performance.now();
    let done = 0;
    progress(done, total, true);
    // Every prefix the receiver holds is answered first, before any data (protocol.md).
    const kept = new Map();
    for (const index of order) {
      const prefix = proto.have.get(index);
      if (!prefix) continue;
      const hasher = createHash();
      await hashPrefix(sources[index].file, prefix.offset, hasher);
      const matched = (await hasher.peek()) === prefix.sha256;
      if (matched) kept.set(index, hasher);
      else await hasher.digest(); // let the worker forget it
      link.send(proto.resume(index, matched ? prefix.offset : 0));
      if (matched) done += prefix.offset;
    }
    progress(done, total, true);
    const ahead = new Map(); // index -> the whole of a small file, being read
    const readAhead = (from) => {
      for (let j = from; j < Math.min(order.length, from + READ_AHEAD_FILES); j++) {
        const i = order[j];
        const { file, entry } = sources[i];
        if (ahead.has(i) || kept.has(i) || !entry.size || entry.size > READ_AHEAD_FILE_BYTES) continue;
        const reading = readSlice(file, 0, entry.size);
        reading.catch(() => {}); // awaited when its turn comes; not unhandled if we stop first
        ahead.set(i, reading);
      }
    };
    for (const [position, index] of order.entries()) {
      const { file, entry } = sources[index];
      const hasher = kept.get(index) ?? createHash(entry.size);
      let pos = kept.has(index) ? proto.have.get(index).offset : 0;
      if (pos === entry.size) {
        link.send(proto.dataEnd(new Uint8Array(0), await hasher.digest()));
        continue;
      }
      readAhead(position + 1);
      // The next block is read while this one is sent: the channel never waits for the disk.
      const readFrom = (at) => {
        if (at >= entry.size) return null;
        const reading = readSlice(file, at, Math.min(entry.size, at + READ_BLOCK_BYTES));
        reading.catch(() => {}); // awaited below; not an unhandled rejection if we stop first
        return reading;
      };
      let next = ahead.get(index) ?? readFrom(pos);
      ahead.delete(index);
      while (pos < entry.size) {
        const block = await next;
        if (block.length === 0) throw Object.assign(new Error(`${file.name} changed while it was sent`), { name: "file-error" });
        next = readFrom(pos + block.length);
        // The whole block goes to the hashing worker at once, which hashes it while its
        // pieces are sent; only the last piece waits for the digest.
        hasher.update(block);
        for (let at = 0; at < block.length; at += chunk) {
          const piece = block.subarray(at, Math.min(block.length, at + chunk));
          await wire.until(() => proto.canSend(piece.length));
          if (pos + at + piece.length === entry.size) link.send(proto.dataEnd(piece, await hasher.digest()));
          else link.send(proto.data(piece));
          done += piece.length;
          progress(done, total);
          await link.drain();
        }
        pos += block.length;
      }
      if (entry.size === 0) link.send(proto.dataEnd(new Uint8Array(0), await hasher.digest()));
    }
    progress(done, total, true);
    await wire.until(() => state.finished);
    wire.closing = true;
    return { bytes: total, seconds: (performance.now() - started) / 1000, files: dataSources.length };
  });
}
