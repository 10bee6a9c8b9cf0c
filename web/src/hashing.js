// Streaming SHA-256 for the page, in a Worker (hash-worker.js) where the browser allows one,
// so that hashing does not share the main thread with the data channel; in this thread
// otherwise (Node's tests, a worker that cannot start). Same results either way.

import { sha256 } from "@noble/hashes/sha2.js";

import { toHex } from "./bytes.js";

export const WORKER_URL = "hash-worker.js";
/** Files up to this size are hashed in this thread: a worker round trip per file cost more
 * than hashing it (a tree of 10,000 small files went at 440 files/s, bench/page_tree.py). */
export const LOCAL_HASH_BYTES = 64 * 1024;

/** Hashes in this thread, behind the same asynchronous interface as the worker's. */
class LocalHash {
  constructor() {
    this.hasher = sha256.create();
  }

  update(bytes) {
    this.hasher.update(bytes);
  }

  async peek() {
    return toHex(this.hasher.clone().digest());
  }

  async digest() {
    return toHex(this.hasher.digest());
  }
}

/** One file's hash in the shared worker: updates are posted in order, digests awaited. */
class WorkerHash {
  constructor(pool, id) {
    this.pool = pool;
    this.id = id;
  }

  /** Hash `bytes` (a copy goes to the worker: the caller keeps and sends its own). */
  update(bytes) {
    const copy = bytes.slice();
    this.pool.worker.postMessage({ op: "update", id: this.id, data: copy }, [copy.buffer]);
  }

  peek() {
    return this.pool.ask("peek", this.id);
  }

  digest() {
    return this.pool.ask("digest", this.id);
  }
}

class WorkerPool {
  constructor(worker) {
    this.worker = worker;
    this.next = 0;
    this.waiting = new Map();
    this.failed = null;
    worker.onmessage = (e) => {
      const { id, digest } = e.data;
      const waiter = this.waiting.get(id);
      this.waiting.delete(id);
      waiter?.resolve(digest);
    };
    worker.onerror = (e) => {
      this.failed = new Error(`the hashing worker failed: ${e.message ?? "unknown error"}`);
      for (const waiter of this.waiting.values()) waiter.reject(this.failed);
      this.waiting.clear();
    };
  }

  ask(op, id) {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ op, id });
    });
  }

  create() {
    return new WorkerHash(this, this.next++);
  }
}

let pool;

function startPool() {
  pool = null;
  if (typeof Worker === "function" && typeof location !== "undefined") {
    try {
      pool = new WorkerPool(new Worker(WORKER_URL));
    } catch {
      pool = null;
    }
  }
}

/** Start the worker and check that it answers (a page served from a folder without
 * hash-worker.js, a browser that refuses it): if not within `timeoutMs`, hash in this thread.
 * Resolves true when the worker is in use. */
export async function startHashing(timeoutMs = 3000) {
  if (pool === undefined) startPool();
  if (!pool) return false;
  const probe = pool.create();
  const answered = await Promise.race([
    probe.digest().then(() => true, () => false),
    new Promise((resolve) => setTimeout(() => resolve(false), timeoutMs)),
  ]);
  if (!answered) pool = null;
  return answered;
}

/** A new streaming SHA-256: {update(bytes), peek(), digest()} (the last two are promises).
 * `sizeHint`: the bytes it will hash when known; small files are hashed in this thread. */
export function createHash(sizeHint = null) {
  if (pool === undefined) startPool();
  const small = sizeHint !== null && sizeHint !== undefined && sizeHint <= LOCAL_HASH_BYTES;
  return pool && !small ? pool.create() : new LocalHash();
}
