// Where received bytes go, as p2pshare/sinks.py: Blob parts (everywhere), a streamed download
// (download.js, secure contexts), or one entry of a ZIP streamed to a download. Each hashes
// what it is given (in a Worker, hashing.js); the receiver compares with the sender's SHA-256 before anything is final.

import { StorageError } from "./errors.js";
import { createHash } from "./hashing.js";
import { printable } from "./names.js";
import { Crc32 } from "./zip.js";

const BLOB_BATCH_BYTES = 8 * 1024 * 1024;

/** Holds one entry's bytes as Blob parts (the browser may keep large Blobs on disk). */
export class BlobFile {
  /** `sizeHint`: the declared size (small files are hashed in the page's thread). */
  constructor(sizeHint = null) {
    this.batch = [];
    this.batchBytes = 0;
    this.blobs = [];
    this.size = 0;
    this.hasher = createHash(sizeHint); // in a Worker where possible (hashing.js)
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

/** Read the first and the last byte of `blob`: a Blob the browser could not store fails. */
export async function checkKept(blob, size, path) {
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
export class StreamFile {
  constructor(download) {
    this.download = download;
    this.size = 0;
    this.hasher = createHash(); // in a Worker where possible (hashing.js)
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

/** One entry written into a ZIP that streams to a download (headers, data, descriptor). */
export class ZipStreamFile {
  constructor(download, zip, entry) {
    this.download = download;
    this.zip = zip;
    this.entry = entry;
    this.size = 0;
    this.hasher = createHash(entry.size); // in a Worker where possible (hashing.js)
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
