// Writes a ZIP with zip.js for tests/test_web_build.py to read with Python's zipfile: small
// entries, a directory, and (sparse on disk) an entry of 5 GiB that needs ZIP64 fields, and a
// small entry after it at an offset past 4 GiB.
import { openSync, writeSync, closeSync } from "node:fs";

import { utf8 } from "../src/bytes.js";
import { Crc32, ZipBuilder } from "../src/zip.js";

const out = openSync(process.argv[2], "w");
const zip = new ZipBuilder();
let at = 0;
const put = (bytes) => {
  writeSync(out, bytes, 0, bytes.length, at);
  at += bytes.length;
};
const file = (path, bytes, mtime = 1700000000) => {
  put(zip.add({ path, size: bytes.length, crc: new Crc32().update(bytes).digest(), mode: 0o640, mtime }));
  put(bytes);
};
file("album/a.txt", utf8("hello\n"));
put(zip.add({ path: "album/empty", size: 0, crc: 0, mode: 0o755, mtime: null, dir: true }));
file("album/été.txt", utf8("unicode name\n"));
const big = 5 * 1024 ** 3;
put(zip.add({ path: "album/big.bin", size: big, crc: 0x12345678, mode: 0o644, mtime: 1700000000 }));
at += big; // a hole: zeros nobody wrote
file("album/after.txt", utf8("after the big one\n"));
// Streamed entries: header first, data, then the data descriptor (CRC and size).
const streamed = utf8("streamed after the fact\n");
put(zip.begin({ path: "album/streamed.txt", sizeHint: streamed.length, mode: 0o600, mtime: 1700000000 }));
put(streamed);
put(zip.descriptor(new Crc32().update(streamed).digest(), streamed.length));
const unknown = utf8("a stream of unknown size\n");
put(zip.begin({ path: "album/stdin", sizeHint: null }));
put(unknown);
put(zip.descriptor(new Crc32().update(unknown).digest(), unknown.length));
for (const part of zip.finish()) put(part);
closeSync(out);
