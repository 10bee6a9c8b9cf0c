// Receiving, as p2pshare/receiver.py: the offer checked (names, caps) and shown, the user's
// answer, then every entry hashed into its sink and acknowledged only once verified and kept;
// several entries become one ZIP. Browser APIs only.

import { parseCode } from "./codes.js";
import { StreamedDownload, streamingAvailable } from "./download.js";
import { DeclinedError } from "./errors.js";
import { IntegrityError } from "./frames.js";
import { checkOfferYielding, printable, terminalSafe } from "./names.js";
import { RECEIVER } from "./pake.js";
import { pairAndConnect } from "./pairing.js";
import { RendezvousClient } from "./rendezvous.js";
import { BlobFile, checkKept, StreamFile, ZipStreamFile } from "./sinks.js";
import { DEFAULT_WINDOW_BYTES, ReceiverProtocol } from "./transfer.js";
import { GOODBYE_WAIT_MS, throttled, Wire, withPeer } from "./wire.js";
import { ZipBuilder } from "./zip.js";

/** What the page shows before the user accepts: names already escaped by printable(). */
export function summarise(files) {
  const tops = [];
  const seen = new Set();
  for (const entry of files) {
    const slash = entry.path.indexOf("/");
    const raw = slash < 0 ? entry.path + (entry.kind === "dir" ? "/" : "") : entry.path.slice(0, slash + 1);
    if (!seen.has(raw)) {
      seen.add(raw); // printable() only once a name: it is not cheap
      tops.push(raw.endsWith("/") ? printable(raw.slice(0, -1)) + "/" : printable(raw));
    }
  }
  const dirs = files.filter((e) => e.kind === "dir").length;
  let total = 0;
  for (const e of files) total = e.size === null || total === null ? null : total + e.size;
  const isText = files[0].kind === "text";
  // Several entries (or a folder) arrive as one ZIP: the offer says so, and names it.
  const asZip = !isText && (files.length > 1 || files[0].kind === "dir");
  return {
    files: files.length - dirs,
    dirs,
    totalBytes: total,
    // A text message is shown as text: its carrier name (message.txt) is nobody's business.
    names: isText ? [] : tops.slice(0, 10),
    more: isText ? 0 : Math.max(0, tops.length - 10),
    isText,
    asZip,
    zipName: asZip ? zipNameFor(files) : null,
  };
}

/** `photos.zip` for one folder; `report-and-2-more.zip` for loose files and folders. The
 * names were checked (checkOffer) before this is called. */
export function zipNameFor(files) {
  const top = files[0].path.split("/")[0];
  if (files.every((e) => e.path === top || e.path.startsWith(top + "/"))) return `${top}.zip`;
  const tops = new Set(files.map((e) => e.path.split("/")[0]));
  const stem = top.replace(/(.)\.[^.]{1,8}$/, "$1");
  return `${stem}-and-${tops.size - 1}-more.zip`;
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
        const sink = sinkFor(event.index);
        await sink.write(event.payload, asZip);
        received += event.payload.length;
        const grant = proto.consumed(event.payload.length);
        if (grant) link.send(grant);
        progress(received, total);
      } else if (event.type === "file-ended") {
        const sink = sinkFor(event.index);
        const digest = await sink.hasher.digest();
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
  // A file's sink is made when its data starts, and dropped once it is verified: nothing is
  // held per file of the offer but the offer itself.
  const sinkFor = (index) => {
    let sink = sinks.get(index);
    if (!sink) {
      const e = offer[index];
      if (download) sink = asZip ? new ZipStreamFile(download, zip, e) : new StreamFile(download);
      else sink = new BlobFile(e.size);
      sinks.set(index, sink);
    }
    return sink;
  };

  try {
    return await wire.run(() => receiveMain());
  } catch (e) {
    // A streamed download is failed: the browser deletes what it wrote.
    download?.error(e.message);
    throw e;
  }

  async function receiveMain() {
    await wire.until(() => offer !== null);
    // The same checks as checkOffer, with the event loop run between slices: a tree of
    // 50,000 entries took seconds in one task, and the tab froze (bench/page_tree.py).
    await checkOfferYielding(offer);
    if (offer.some((e) => typeof e.size === "bigint")) {
      throw Object.assign(new Error("the offer is larger than a browser can receive"), { name: "declined" });
    }
    const summary = summarise(offer);
    total = summary.totalBytes;
    onEvent({ type: "offer", summary });
    if (!(await confirm(summary))) throw new DeclinedError();
    const dataEntries = offer.filter((e) => e.kind !== "dir");
    asZip = summary.asZip;
    const zipName = summary.zipName;
    // In a secure context the result streams to a download as it arrives (download.js);
    // elsewhere it is kept as Blobs and handed over at the end.
    if (!summary.isText && streamingAvailable()) {
      download = asZip
        ? await StreamedDownload.open(zipName, null)
        : await StreamedDownload.open(baseName(dataEntries[0].path), dataEntries[0].size);
    }
    sinks = new Map();
    for (const e of offer) {
      if (e.kind !== "dir" || !asZip) continue;
      const header = zip.add({ path: e.path, size: 0, crc: 0, mode: e.mode, mtime: e.mtime, dir: true });
      if (download) await download.write(header);
      else zipParts.push(header);
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
