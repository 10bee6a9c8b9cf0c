// A stored (uncompressed) ZIP archive whose entries are assembled after they arrived: each
// file's header is written once its CRC-32 and size are known, so the archive is a list of
// parts (headers and the files' own Blobs) and no file data is copied. ZIP64 fields are added
// where a size, an offset or the entry count needs them. Names are UTF-8 (flag bit 11).
// Sans-I/O: bytes in, byte arrays out; no DOM.

import { utf8 } from "./bytes.js";

const TABLE = new Uint32Array(256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  TABLE[n] = c >>> 0;
}

/** Streaming CRC-32 (the ZIP and PNG one). */
export class Crc32 {
  constructor() {
    this.crc = 0xffffffff;
  }

  update(bytes) {
    let c = this.crc;
    for (let i = 0; i < bytes.length; i++) c = TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
    this.crc = c;
    return this;
  }

  digest() {
    return (this.crc ^ 0xffffffff) >>> 0;
  }
}

const MAX32 = 0xffffffff;
const MAX16 = 0xffff;

function dosTime(mtime) {
  const d = new Date((mtime ?? 315532800) * 1000);
  const year = Math.max(1980, Math.min(2107, d.getFullYear()));
  return {
    time: (d.getHours() << 11) | (d.getMinutes() << 5) | (d.getSeconds() >> 1),
    date: ((year - 1980) << 9) | ((d.getMonth() + 1) << 5) | d.getDate(),
  };
}

/** A local file header (with its ZIP64 extra field when `zip64`); `flags` 0x0800 is UTF-8. */
function localHeader(name, zip64, flags, time, date, crc, size) {
  const local = new Writer(30 + name.length + (zip64 ? 20 : 0));
  local.u32(0x04034b50);
  local.u16(zip64 ? 45 : 20);
  local.u16(flags);
  local.u16(0);
  local.u16(time);
  local.u16(date);
  local.u32(crc);
  local.u32(zip64 ? MAX32 : size);
  local.u32(zip64 ? MAX32 : size);
  local.u16(name.length);
  local.u16(zip64 ? 20 : 0);
  local.raw(name);
  if (zip64) {
    local.u16(0x0001);
    local.u16(16);
    local.u64(size);
    local.u64(size);
  }
  return local;
}

class Writer {
  constructor(size) {
    this.bytes = new Uint8Array(size);
    this.view = new DataView(this.bytes.buffer);
    this.at = 0;
  }
  u16(v) {
    this.view.setUint16(this.at, v, true);
    this.at += 2;
  }
  u32(v) {
    this.view.setUint32(this.at, v >>> 0, true);
    this.at += 4;
  }
  u64(v) {
    this.view.setBigUint64(this.at, BigInt(v), true);
    this.at += 8;
  }
  raw(b) {
    this.bytes.set(b, this.at);
    this.at += b.length;
  }
}

/** Central directory records are gathered into chunks of about this size. */
const CENTRAL_CHUNK_BYTES = 256 * 1024;

/** The central directory record of one entry (ZIP64 extra field where it needs one). */
function centralRecord(e) {
  const bigSize = e.size >= MAX32;
  const bigOffset = e.offset >= MAX32;
  const extra = (bigSize ? 16 : 0) + (bigOffset ? 8 : 0);
  const w = new Writer(46 + e.name.length + (extra ? 4 + extra : 0));
  w.u32(0x02014b50);
  w.u16((3 << 8) | 45);
  w.u16(extra ? 45 : 20);
  w.u16(e.streamed ? 0x0808 : 0x0800);
  w.u16(0);
  w.u16(e.time);
  w.u16(e.date);
  w.u32(e.crc);
  w.u32(bigSize ? MAX32 : e.size);
  w.u32(bigSize ? MAX32 : e.size);
  w.u16(e.name.length);
  w.u16(extra ? 4 + extra : 0);
  w.u16(0);
  w.u16(0);
  w.u16(0);
  const type = e.dir ? 0o040000 : 0o100000;
  w.u32((((type | (e.mode & 0o777)) << 16) | (e.dir ? 0x10 : 0)) >>> 0);
  w.u32(bigOffset ? MAX32 : e.offset);
  w.raw(e.name);
  if (extra) {
    w.u16(0x0001);
    w.u16(extra);
    if (bigSize) {
      w.u64(e.size);
      w.u64(e.size);
    }
    if (bigOffset) w.u64(e.offset);
  }
  return w.bytes;
}

/**
 * Builds the archive. add() returns the header to put before the entry's data; finish()
 * returns the central directory. Parts in order: header, data, header, data, ..., directory.
 * The central directory is written as entries are added, into chunks of CENTRAL_CHUNK_BYTES:
 * per entry only its record's bytes are kept (no object per entry), and finish() has only
 * the end records left to write (a tree of 50,000 files no longer ends with one long task).
 */
export class ZipBuilder {
  constructor() {
    this.offset = 0;
    this.count = 0;
    this.centralBytes = 0;
    this.chunks = []; // full chunks of central directory records
    this.pending = []; // records not yet gathered into a chunk
    this.pendingBytes = 0;
  }

  #central(e) {
    const record = centralRecord(e);
    this.count += 1;
    this.centralBytes += record.length;
    this.pending.push(record);
    this.pendingBytes += record.length;
    if (this.pendingBytes >= CENTRAL_CHUNK_BYTES) this.#gather();
  }

  #gather() {
    if (!this.pending.length) return;
    const chunk = new Uint8Array(this.pendingBytes);
    let at = 0;
    for (const record of this.pending) {
      chunk.set(record, at);
      at += record.length;
    }
    this.chunks.push(chunk);
    this.pending = [];
    this.pendingBytes = 0;
  }

  /** An entry: `path` (directories end in "/"), its size, CRC-32, mode and mtime (seconds). */
  add({ path, size, crc, mode = 0o644, mtime = null, dir = false }) {
    const name = utf8(dir ? path.replace(/\/?$/, "/") : path);
    const zip64 = size >= MAX32 || this.offset >= MAX32;
    const { time, date } = dosTime(mtime);
    const local = localHeader(name, zip64, 0x0800, time, date, crc, size);
    this.#central({ name, size, crc, mode, dir, time, date, offset: this.offset });
    this.offset += local.bytes.length + size;
    return local.bytes;
  }

  /**
   * Streaming: the header of a file whose CRC-32 and size are not known yet (flag bit 3);
   * its data follows, then descriptor(). ZIP64 fields are used when `sizeHint` (the declared
   * size, or null when unknown) may reach 4 GiB or the entry starts past 4 GiB.
   */
  begin({ path, sizeHint, mode = 0o644, mtime = null }) {
    const name = utf8(path);
    const zip64 = sizeHint === null || sizeHint >= MAX32 || this.offset >= MAX32;
    const { time, date } = dosTime(mtime);
    // Flag bit 3: CRC-32 and sizes are zero here and follow in the data descriptor.
    const local = localHeader(name, zip64, 0x0808, time, date, 0, 0);
    this.open = { name, mode, dir: false, time, date, offset: this.offset, zip64, streamed: true };
    this.offset += local.bytes.length;
    return local.bytes;
  }

  /** Streaming: after the data of the entry begin() opened, its data descriptor. */
  descriptor(crc, size) {
    const e = this.open;
    this.open = null;
    const w = new Writer(e.zip64 ? 24 : 16);
    w.u32(0x08074b50);
    w.u32(crc);
    if (e.zip64) {
      w.u64(size);
      w.u64(size);
    } else {
      w.u32(size);
      w.u32(size);
    }
    this.#central({ ...e, size, crc });
    this.offset += size + w.bytes.length;
    return w.bytes;
  }

  /** The central directory (a few chunks) and the end records. */
  finish() {
    this.#gather();
    const parts = this.chunks;
    this.chunks = [];
    const cdSize = this.centralBytes;
    const cdOffset = this.offset;
    const count = this.count;
    if (count >= MAX16 || cdOffset >= MAX32 || cdSize >= MAX32) {
      const z = new Writer(56 + 20);
      z.u32(0x06064b50);
      z.u64(44);
      z.u16((3 << 8) | 45);
      z.u16(45);
      z.u32(0);
      z.u32(0);
      z.u64(count);
      z.u64(count);
      z.u64(cdSize);
      z.u64(cdOffset);
      z.u32(0x07064b50);
      z.u32(0);
      z.u64(cdOffset + cdSize);
      z.u32(1);
      parts.push(z.bytes);
    }
    const end = new Writer(22);
    end.u32(0x06054b50);
    end.u16(0);
    end.u16(0);
    end.u16(Math.min(count, MAX16));
    end.u16(Math.min(count, MAX16));
    end.u32(Math.min(cdSize, MAX32));
    end.u32(Math.min(cdOffset, MAX32));
    end.u16(0);
    parts.push(end.bytes);
    return parts;
  }
}
