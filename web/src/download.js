// Streamed downloads through the page's service worker (sw.js), where the browser allows one:
// a secure context (https://, http://127.0.0.1). The received bytes go to the browser's
// download as they arrive, with back-pressure, instead of being held as Blobs; the download is
// completed only after the SHA-256 matched, and failed (the browser deletes it) otherwise.
// Browser APIs only; no DOM beyond starting the download.

export const STREAM_PATH = "/p2pshare-download/";
const READY_TIMEOUT_MS = 3_000;
const KEEPALIVE_MS = 10_000;
const BATCH_BYTES = 1024 * 1024;
/** Batches posted to the worker and not yet answered: waiting for each answer before the next
 * batch stalled the data channel for a round trip per MiB (bench/page_speed.py: a CLI -> page
 * transfer at a third of its ceiling on a loaded machine, 88% with Blobs instead). */
const BATCHES_IN_FLIGHT = 4;

let registration = null;

function timeout(ms) {
  return new Promise((resolve) => setTimeout(() => resolve(null), ms));
}

/** Register the service worker when the page may have one; true once it is active. */
export async function setUpStreaming(scriptUrl = "sw.js") {
  if (!globalThis.isSecureContext || !("serviceWorker" in navigator)) return false;
  try {
    await navigator.serviceWorker.register(scriptUrl, { scope: "/" });
    registration = await Promise.race([navigator.serviceWorker.ready, timeout(READY_TIMEOUT_MS)]);
  } catch {
    registration = null;
  }
  return Boolean(registration?.active);
}

export function streamingAvailable() {
  return Boolean(registration?.active);
}

export class DownloadCancelledError extends Error {
  constructor() {
    super("the download was cancelled in the browser");
    this.name = "file-error";
  }
}

/** One streamed download: write() in order, then end() after verifying, or error(). */
export class StreamedDownload {
  constructor(port, worker) {
    this.port = port;
    this.worker = worker;
    this.waiters = [];
    this.cancelled = false;
    this.batch = [];
    this.batchBytes = 0;
    this.inFlight = 0;
    this.maxInFlight = 1; // until the worker says it answers every chunk
    port.onmessage = (e) => {
      const type = e.data?.type;
      if (type === "ready" && e.data.pipelined === true) this.maxInFlight = BATCHES_IN_FLIGHT;
      if (type === "cancelled") this.cancelled = true;
      else if (type === "more") this.inFlight = Math.max(0, this.inFlight - 1);
      const waiters = this.waiters;
      this.waiters = [];
      for (const w of waiters) w(type);
    };
    this.keepalive = setInterval(() => this.worker.postMessage({ type: "ping" }), KEEPALIVE_MS);
  }

  #next() {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Start a download called `name` of `size` bytes (null: unknown); null if not possible. */
  static async open(name, size) {
    const worker = registration?.active;
    if (!worker) return null;
    const channel = new MessageChannel();
    const id = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
    const download = new StreamedDownload(channel.port1, worker);
    const ready = download.#next();
    worker.postMessage({ type: "open", id, name, size }, [channel.port2]);
    if ((await Promise.race([ready, timeout(READY_TIMEOUT_MS)])) !== "ready") {
      download.close();
      return null;
    }
    // A plain navigation: the worker's attachment response turns it into a download and the
    // page stays. (With the download attribute Chromium cancels a worker-streamed download.)
    const a = document.createElement("a");
    a.href = STREAM_PATH + id;
    a.click();
    return download;
  }

  /** Queue `bytes`; resolves when the download can take more. Bytes are gathered into
   * batches of BATCH_BYTES: one message and one answer from the worker per batch, not per
   * data-channel message (that round trip was paid 16 times per MiB), and up to
   * BATCHES_IN_FLIGHT batches wait for their answers at once (back-pressure without a
   * round trip per batch). */
  async write(bytes) {
    if (this.cancelled) throw new DownloadCancelledError();
    this.batch.push(bytes.slice());
    this.batchBytes += bytes.length;
    if (this.batchBytes < BATCH_BYTES) return;
    this.#post();
    while (this.inFlight >= this.maxInFlight && !this.cancelled) await this.#next();
    if (this.cancelled) throw new DownloadCancelledError();
  }

  #post() {
    if (!this.batchBytes) return;
    const chunk = new Uint8Array(this.batchBytes);
    let at = 0;
    for (const part of this.batch) {
      chunk.set(part, at);
      at += part.length;
    }
    this.batch = [];
    this.batchBytes = 0;
    this.inFlight += 1;
    this.port.postMessage({ type: "data", chunk }, [chunk.buffer]);
  }

  /** Complete the download (the data was verified): the last batch, then the end. */
  end() {
    if (this.closed) return;
    this.#post();
    this.port.postMessage({ type: "end" });
    this.close();
  }

  /** Fail the download: the browser discards what it wrote. Nothing once it was completed. */
  error(message) {
    if (this.closed) return;
    this.batch = [];
    this.batchBytes = 0;
    this.port.postMessage({ type: "error", message });
    this.close();
  }

  close() {
    this.closed = true;
    clearInterval(this.keepalive);
  }
}
