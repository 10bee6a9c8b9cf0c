// The I/O of one transfer in the browser, as p2pshare/session.py: rendezvous, PAKE, sealed
// offer/answer, WebRTC, then the transfer protocol. transfer.js decides what to send; this
// module owns every await. Progress goes out through onEvent:
//   {type: "code", code}                     the sender's code is ready
//   {type: "connected", path}                the data channel is open (path may be null)
//   {type: "offer", summary}                 (receiver) what the sender offers
//   {type: "progress", done, total}
//   {type: "file", name, blob, size}         (receiver) a verified download is ready
//   {type: "text", text}                     (receiver) a text message arrived
// Browser APIs only (WebSocket, RTCPeerConnection, Blob); no DOM.

import { sha256 } from "@noble/hashes/sha2.js";

import { toHex } from "./bytes.js";
import { StreamedDownload, streamingAvailable } from "./download.js";
import { generateWords, parseCode } from "./codes.js";
import { DATA_END_OVERHEAD, IntegrityError, ProtocolError } from "./frames.js";
import { checkOffer, printable, terminalSafe } from "./names.js";
import { PakeSession, randomBytes, RECEIVER, SENDER } from "./pake.js";
import { RendezvousClient } from "./rendezvous.js";
import { Sealer } from "./seal.js";
import { abortFrame, DEFAULT_WINDOW_BYTES, pingFrame, ReceiverProtocol, SenderProtocol } from "./transfer.js";
import { PeerLink, PeerLostError } from "./webrtc.js";
import { Crc32, ZipBuilder } from "./zip.js";

export const CONNECT_TIMEOUT_MS = 30_000;
export const PEER_TIMEOUT_MS = 20_000;
export const PING_INTERVAL_MS = 2_000;
export const GOODBYE_WAIT_MS = 3_000;
const READ_BLOCK_BYTES = 4 * 1024 * 1024;
const BLOB_BATCH_BYTES = 8 * 1024 * 1024;
const PROGRESS_EVERY_MS = 100;

/** Progress events at most every PROGRESS_EVERY_MS (and always the last one). */
function throttled(onEvent) {
  let last = 0;
  return (done, total, force = false) => {
    const now = performance.now();
    if (force || now - last >= PROGRESS_EVERY_MS) {
      last = now;
      onEvent({ type: "progress", done, total });
    }
  };
}

export class DeclinedError extends Error {
  constructor(message = "declined by the receiver") {
    super(message);
    this.name = "declined";
  }
}

export class InterruptedError extends Error {
  constructor(message = "interrupted") {
    super(message);
    this.name = "interrupted";
  }
}

// -- pairing and connecting ----------------------------------------------------------------

async function pake(rv, role, code) {
  const session = new PakeSession(role, code.password);
  rv.send(session.start());
  // The sender waits as long as the server keeps its code (the room's TTL).
  await rv.waitPaired(role === SENDER ? null : 10_000);
  session.finish(await rv.receive(CONNECT_TIMEOUT_MS));
  rv.send(session.confirmation());
  session.verifyConfirmation(await rv.receive(CONNECT_TIMEOUT_MS));
  return session;
}

/** While ICE and DTLS run: throw the peer's sealed abort if one comes. Anything else on the
 * rendezvous (the peer leaving once its side is open, a closed server) is not a failure. */
async function watchForAbort(rv, sealer) {
  let sealed;
  try {
    sealed = await rv.receive(null);
  } catch {
    return new Promise(() => {}); // the link's own outcome decides
  }
  sealer.openSignal(sealed);
  throw Object.assign(new Error("the other side sent an unexpected signalling message"), { name: "protocol" });
}

async function pairAndConnect(rv, role, code, onEvent) {
  const session = await pake(rv, role, code);
  const sealer = new Sealer(session);
  const link = new PeerLink(rv.iceServers);
  try {
    try {
      if (role === SENDER) {
        rv.send(sealer.sealSdp("offer", await link.createOffer()));
        await link.acceptAnswer(sealer.openSdp("answer", await rv.receive(CONNECT_TIMEOUT_MS)));
      } else {
        const offer = sealer.openSdp("offer", await rv.receive(CONNECT_TIMEOUT_MS));
        rv.send(sealer.sealSdp("answer", await link.acceptOffer(offer)));
      }
    } catch (e) {
      if (!e.remote) {
        try {
          rv.send(sealer.sealAbort(e.name in NAMES ? e : Object.assign(new Error(e.message), { name: "connect-failed" })));
        } catch {
          // the server or the peer is gone: nothing to tell
        }
      }
      throw e;
    }
    await Promise.race([link.waitOpen(CONNECT_TIMEOUT_MS), watchForAbort(rv, sealer)]);
  } catch (e) {
    link.close();
    throw e;
  }
  rv.close();
  onEvent({ type: "connected", path: await link.path() });
  return link;
}

// -- the data channel ----------------------------------------------------------------------

/** Feeds incoming frames to `handle`, pings, notices a silent peer; `until` waits on state. */
class Wire {
  constructor(link, handle) {
    this.link = link;
    this.handle = handle;
    this.closing = false;
    this.failure = null;
    this.wakers = [];
    this.stopped = false;
  }

  #wake() {
    const w = this.wakers;
    this.wakers = [];
    for (const f of w) f();
  }

  async #read() {
    while (!this.stopped) {
      const frame = await this.link.nextFrame(PEER_TIMEOUT_MS);
      if (frame === null) {
        if (this.closing) return;
        throw new PeerLostError("the connection to the other side was lost");
      }
      if (typeof frame === "string") throw new ProtocolError("expected a non-empty binary message");
      await this.handle(frame);
      this.#wake();
    }
  }

  /** Wait until `condition()` holds (re-checked after every frame); fails with the wire. */
  async until(condition) {
    while (!condition()) {
      if (this.failure) throw this.failure;
      await new Promise((resolve) => this.wakers.push(resolve));
    }
    if (this.failure) throw this.failure;
  }

  /** Run `main` while reading and pinging; the first failure wins. */
  async run(main) {
    const pinger = setInterval(() => {
      if (!this.closing && !this.link.lost) {
        try {
          this.link.send(pingFrame());
        } catch {
          // the reader reports the loss
        }
      }
    }, PING_INTERVAL_MS);
    const reader = this.#read().catch((e) => {
      this.failure = e;
      this.#wake();
      throw e;
    });
    try {
      return await Promise.race([main(), reader.then(() => new Promise(() => {}))]);
    } finally {
      this.stopped = true;
      clearInterval(pinger);
      reader.catch(() => {});
    }
  }
}

/** Tell the peer why we stop (unless it told us, or is gone), and let it read that. */
async function stopWith(link, error) {
  if (error.remote || error instanceof PeerLostError || error.name === "peer-lost" || link.lost) return;
  try {
    link.send(abortFrame(error.name in NAMES ? error.name : "error", error.message));
  } catch {
    return;
  }
  await link.waitLost(GOODBYE_WAIT_MS);
}

const NAMES = {
  "bad-code": 1, "server-error": 1, "no-such-code": 1, crowded: 1, "wrong-code": 1, "peer-lost": 1,
  "connect-failed": 1, declined: 1, integrity: 1, protocol: 1, "unsafe-name": 1, "file-error": 1,
  interrupted: 1, "disk-full": 1,
};

async function withPeer(link, body) {
  try {
    return await body();
  } catch (e) {
    await stopWith(link, e);
    throw e;
  } finally {
    link.close();
  }
}

// -- sending -------------------------------------------------------------------------------

/** Entries for the offer from File objects (webkitRelativePath keeps a chosen folder's tree). */
export function entriesFor(files) {
  const seen = new Set();
  const sources = [];
  for (const file of files) {
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
  return sources;
}

/** Refuse, before a code is shown, what every receiver would refuse (sources.py). */
export function checkOwnOffer(entries) {
  try {
    checkOffer(entries);
  } catch (e) {
    if (e.name !== "unsafe-name") throw e;
    const reason = e.message.replace(/^refused /, "").replace(/^offer: /, "");
    throw Object.assign(
      new Error(`cannot send: ${reason}; a receiver would refuse it (rename it and send again)`),
      { name: "unsafe-name", local: true },
    );
  }
}

async function readSlice(file, start, end) {
  try {
    return new Uint8Array(await file.slice(start, end).arrayBuffer());
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
 * `server`: the rendezvous URL; `wordlist`: the 256 code words.
 */
export async function sendFiles(files, { server, wordlist, onEvent = () => {}, abort = null }) {
  const sources = entriesFor(files);
  if (!sources.some((s) => s.file !== null)) throw new Error("choose at least one file");
  checkOwnOffer(sources.map((s) => s.entry));
  const rv = await RendezvousClient.connect(server);
  try {
    const nameplate = await rv.allocate();
    const code = parseCode([nameplate, ...generateWords(wordlist, 2, randomBytes)].join("-"));
    onEvent({ type: "code", code: code.text });
    const link = await pairAndConnect(rv, SENDER, code, onEvent);
    if (abort) abort.link = link;
    return await withPeer(link, () => sendEntries(link, sources, onEvent));
  } finally {
    rv.close();
  }
}

async function sendEntries(link, sources, onEvent) {
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
    for (const frame of proto.start()) {
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
      const hasher = sha256.create();
      await hashPrefix(sources[index].file, prefix.offset, hasher);
      const matched = toHex(hasher.clone().digest()) === prefix.sha256;
      if (matched) kept.set(index, hasher);
      link.send(proto.resume(index, matched ? prefix.offset : 0));
      if (matched) done += prefix.offset;
    }
    progress(done, total, true);
    for (const index of order) {
      const { file, entry } = sources[index];
      const hasher = kept.get(index) ?? sha256.create();
      let pos = kept.has(index) ? proto.have.get(index).offset : 0;
      if (pos === entry.size) {
        link.send(proto.dataEnd(new Uint8Array(0), toHex(hasher.digest())));
        continue;
      }
      while (pos < entry.size) {
        const block = await readSlice(file, pos, Math.min(entry.size, pos + READ_BLOCK_BYTES));
        if (block.length === 0) throw Object.assign(new Error(`${file.name} changed while it was sent`), { name: "file-error" });
        for (let at = 0; at < block.length; at += chunk) {
          const piece = block.subarray(at, Math.min(block.length, at + chunk));
          hasher.update(piece);
          await wire.until(() => proto.canSend(piece.length));
          if (pos + at + piece.length === entry.size) link.send(proto.dataEnd(piece, toHex(hasher.digest())));
          else link.send(proto.data(piece));
          done += piece.length;
          progress(done, total);
          await link.drain();
        }
        pos += block.length;
      }
      if (entry.size === 0) link.send(proto.dataEnd(new Uint8Array(0), toHex(hasher.digest())));
    }
    progress(done, total, true);
    await wire.until(() => state.finished);
    wire.closing = true;
    return { bytes: total, seconds: (performance.now() - started) / 1000, files: dataSources.length };
  });
}

// -- receiving -----------------------------------------------------------------------------

/** What the page shows before the user accepts: names already escaped by printable(). */
export function summarise(files) {
  const tops = [];
  const seen = new Set();
  for (const entry of files) {
    const parts = entry.path.split("/");
    const top = printable(parts[0]) + (parts.length > 1 || entry.kind === "dir" ? "/" : "");
    if (!seen.has(top)) {
      seen.add(top);
      tops.push(top);
    }
  }
  const dirs = files.filter((e) => e.kind === "dir").length;
  let total = 0;
  for (const e of files) total = e.size === null || total === null ? null : total + e.size;
  return {
    files: files.length - dirs,
    dirs,
    totalBytes: total,
    names: tops.slice(0, 10),
    more: Math.max(0, tops.length - 10),
    isText: files[0].kind === "text",
  };
}

/** Holds one entry's bytes as Blob parts (the browser may keep large Blobs on disk). */
class BlobFile {
  constructor() {
    this.batch = [];
    this.batchBytes = 0;
    this.blobs = [];
    this.size = 0;
    this.hasher = sha256.create();
    this.crc = new Crc32();
  }

  write(payload, zip) {
    this.hasher.update(payload);
    if (zip) this.crc.update(payload);
    // The payload is a view into the frame's buffer, which nothing else keeps.
    this.batch.push(payload);
    this.batchBytes += payload.length;
    this.size += payload.length;
    if (this.batchBytes >= BLOB_BATCH_BYTES) this.flush();
  }

  flush() {
    if (this.batch.length) this.blobs.push(new Blob(this.batch));
    this.batch = [];
    this.batchBytes = 0;
  }

  finish() {
    this.flush();
    return new Blob(this.blobs, { type: "application/octet-stream" });
  }
}

export class StorageError extends Error {
  constructor(message) {
    super(message);
    this.name = "file-error";
  }
}

/** Read the first and the last byte of `blob`: a Blob the browser could not store fails. */
async function checkKept(blob, size, path) {
  if (blob.size !== size) throw new StorageError(`the browser lost data of ${printable(path)}`);
  if (!size) return;
  try {
    await blob.slice(0, 1).arrayBuffer();
    await blob.slice(size - 1, size).arrayBuffer();
  } catch {
    throw new StorageError(
      `the browser could not keep ${printable(path)} (${size} bytes): its storage for ` +
        "downloads is full or limited (a private window keeps everything in memory); " +
        "receive files this large with the p2pshare command line",
    );
  }
}

/** Writes one entry straight into a streamed browser download (download.js). */
class StreamFile {
  constructor(download) {
    this.download = download;
    this.size = 0;
    this.hasher = sha256.create();
  }

  async write(payload) {
    this.hasher.update(payload);
    this.size += payload.length;
    await this.download.write(payload);
  }

  /** The hash matched: complete the download. */
  end() {
    this.download.end();
  }
}

function baseName(path) {
  const parts = path.split("/");
  return parts[parts.length - 1];
}

/**
 * Receive what the holder of `codeText` sends. `confirm(summary)` resolves true to accept.
 * Verified files are handed out as {type: "file"} events (one, or one ZIP for several).
 */
export async function receiveFiles(codeText, { server, confirm, onEvent = () => {}, abort = null }) {
  const code = parseCode(codeText);
  const rv = await RendezvousClient.connect(server);
  try {
    await rv.claim(code.nameplate);
    const link = await pairAndConnect(rv, RECEIVER, code, onEvent);
    if (abort) abort.link = link;
    return await withPeer(link, () => receiveEntries(link, confirm, onEvent));
  } finally {
    rv.close();
  }
}

/** One entry written into a ZIP that streams to a download (headers, data, descriptor). */
class ZipStreamFile {
  constructor(download, zip, entry) {
    this.download = download;
    this.zip = zip;
    this.entry = entry;
    this.size = 0;
    this.hasher = sha256.create();
    this.crc = new Crc32();
    this.begun = false;
  }

  async #begin() {
    if (this.begun) return;
    this.begun = true;
    const e = this.entry;
    await this.download.write(this.zip.begin({ path: e.path, sizeHint: e.size, mode: e.mode, mtime: e.mtime }));
  }

  async write(payload) {
    await this.#begin();
    this.hasher.update(payload);
    this.crc.update(payload);
    this.size += payload.length;
    await this.download.write(payload);
  }

  /** The hash matched: the entry's data descriptor (an empty file gets its header first). */
  async close() {
    await this.#begin();
    await this.download.write(this.zip.descriptor(this.crc.digest(), this.size));
  }
}

async function receiveEntries(link, confirm, onEvent) {
  const proto = new ReceiverProtocol();
  let offer = null;
  let accepted = false;
  let sinks = null; // index -> BlobFile, StreamFile or ZipStreamFile, once accepted
  let asZip = false;
  let download = null; // a streamed download (download.js), when the browser allows one
  const zip = new ZipBuilder();
  const zipParts = [];
  const outcome = { done: false };
  let received = 0;
  let total = null;
  let textParts = null;
  const progress = throttled(onEvent);

  const verified = (index) => {
    for (const f of proto.fileVerified(index)) link.send(f);
    if (proto.receivedAll) {
      outcome.done = true;
      progress(received, total, true);
    }
  };

  const handle = async (frame) => {
    for (const event of proto.receive(frame)) {
      if (event.type === "peer-aborted") throw event.error;
      if (event.type === "offer") offer = event.files;
      else if (event.type === "chunk") {
        const sink = sinks.get(event.index);
        await sink.write(event.payload, asZip);
        received += event.payload.length;
        const grant = proto.consumed(event.payload.length);
        if (grant) link.send(grant);
        progress(received, total);
      } else if (event.type === "file-ended") {
        const sink = sinks.get(event.index);
        const digest = toHex(sink.hasher.digest());
        if (digest !== event.sha256) {
          throw new IntegrityError(`integrity failure: ${printable(offer[event.index].path)} does not match its SHA-256`);
        }
        const entry = offer[event.index];
        sinks.delete(event.index);
        if (sink instanceof StreamFile) {
          sink.end();
          onEvent({ type: "file", name: baseName(entry.path), blob: null, size: sink.size, sha256: digest });
        } else if (sink instanceof ZipStreamFile) {
          await sink.close();
        } else {
          const blob = sink.finish();
          // A file is in place only if the browser really kept it: past its Blob storage
          // limits Chromium drops the data and the Blob fails when read.
          await checkKept(blob, sink.size, entry.path);
          if (entry.kind === "text") {
            textParts = blob;
          } else if (asZip) {
            zipParts.push(zip.add({ path: entry.path, size: sink.size, crc: sink.crc.digest(), mode: entry.mode, mtime: entry.mtime }), blob);
          } else {
            onEvent({ type: "file", name: baseName(entry.path), blob, size: sink.size, sha256: digest });
          }
        }
        verified(event.index);
      }
    }
  };
  const wire = new Wire(link, handle);

  try {
    return await wire.run(() => receiveMain());
  } catch (e) {
    // A streamed download is failed: the browser deletes what it wrote.
    download?.error(e.message);
    throw e;
  }

  async function receiveMain() {
    await wire.until(() => offer !== null);
    checkOffer(offer);
    if (offer.some((e) => typeof e.size === "bigint")) {
      throw Object.assign(new Error("the offer is larger than a browser can receive"), { name: "declined" });
    }
    const summary = summarise(offer);
    total = summary.totalBytes;
    onEvent({ type: "offer", summary });
    if (!(await confirm(summary))) throw new DeclinedError();
    const dataEntries = offer.filter((e) => e.kind !== "dir");
    asZip = !summary.isText && (offer.length > 1 || dataEntries.length !== 1);
    const top = offer[0].path.split("/")[0];
    const zipName = offer.every((e) => e.path === top || e.path.startsWith(top + "/")) ? `${top}.zip` : "p2pshare.zip";
    // In a secure context the result streams to a download as it arrives (download.js);
    // elsewhere it is kept as Blobs and handed over at the end.
    if (!summary.isText && streamingAvailable()) {
      download = asZip
        ? await StreamedDownload.open(zipName, null)
        : await StreamedDownload.open(baseName(dataEntries[0].path), dataEntries[0].size);
    }
    sinks = new Map();
    for (const [i, e] of offer.entries()) {
      if (e.kind === "dir") {
        if (!asZip) continue;
        const header = zip.add({ path: e.path, size: 0, crc: 0, mode: e.mode, mtime: e.mtime, dir: true });
        if (download) await download.write(header);
        else zipParts.push(header);
      } else if (download) {
        sinks.set(i, asZip ? new ZipStreamFile(download, zip, e) : new StreamFile(download));
      } else {
        sinks.set(i, new BlobFile());
      }
    }
    // No zstd: a page decompressing would need a library and bounds; the protocol lets the
    // receiver decline, and the sender then sends raw data.
    for (const f of proto.accept(DEFAULT_WINDOW_BYTES, null)) link.send(f);
    accepted = true;
    const started = performance.now();
    progress(0, total, true);
    if (proto.receivedAll) outcome.done = true; // directories only
    await wire.until(() => outcome.done);
    const seconds = (performance.now() - started) / 1000;
    if (textParts !== null) {
      const text = new TextDecoder("utf-8").decode(await textParts.arrayBuffer());
      onEvent({ type: "text", text: terminalSafe(text) });
    } else if (asZip && download) {
      for (const part of zip.finish()) await download.write(part);
      download.end();
      onEvent({ type: "file", name: zipName, blob: null, size: zip.offset, sha256: null });
    } else if (asZip) {
      zipParts.push(...zip.finish());
      const blob = new Blob(zipParts, { type: "application/zip" });
      await checkKept(blob, blob.size, zipName);
      onEvent({ type: "file", name: zipName, blob, size: blob.size, sha256: null });
    }
    // Everything is in place: the last acknowledgement and Done, then the sender closes
    // (closing first could lose Done).
    wire.closing = true;
    for (const f of proto.finish()) link.send(f);
    await link.waitLost(GOODBYE_WAIT_MS);
    return { bytes: received, seconds, files: dataEntries.length, accepted };
  }
}
