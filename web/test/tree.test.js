// Large trees in the page (issue 31, item 4): the checks and the offer built in slices give
// what the one-task versions give, the event loop runs between slices, and the ZIP's central
// directory is gathered as entries are added (a few parts, records that point at their headers).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { offerFrames, offerFramesYielding } from "../src/frames.js";
import { checkOffer, checkOfferYielding, UnsafeNameError } from "../src/names.js";
import { summarise } from "../src/receiver.js";
import { Crc32, ZipBuilder } from "../src/zip.js";

const V = JSON.parse(readFileSync(new URL("../testlib/names.json", import.meta.url), "utf-8"));

function tree(files, perDir = 1000) {
  const entries = [{ path: "tree", size: 0, mode: 0o755, mtime: null, kind: "dir" }];
  for (let i = 0; i < files; i++) {
    if (i % perDir === 0) entries.push({ path: `tree/d${i / perDir}`, size: 0, mode: 0o755, mtime: null, kind: "dir" });
    entries.push({ path: `tree/d${Math.floor(i / perDir)}/f${i}.bin`, size: 100, mode: 0o644, mtime: 1700000000, kind: "file" });
  }
  return entries;
}

test("checkOfferYielding accepts and refuses exactly what checkOffer does (names.json)", async () => {
  for (const c of V.offers) {
    const files = c.entries.map(([path, kind]) => ({ path, kind, size: kind === "dir" ? 0 : 1 }));
    if (c.ok) await checkOfferYielding(files, 0);
    else await assert.rejects(checkOfferYielding(files, 0), (e) => e instanceof UnsafeNameError && e.message === c.message);
  }
});

test("a tree's repeated folder names are checked once and still refuse a file under a file", () => {
  const entries = tree(3000);
  assert.equal(checkOffer(entries).length, entries.length);
  entries.push({ path: "tree/d1/f1000.bin/x", size: 1, kind: "file" });
  assert.throws(() => checkOffer(entries), /needs 'tree\/d1\/f1000.bin' to be a directory/);
  entries.pop();
  entries.push({ path: "TREE/D2/F2000.BIN", size: 1, kind: "file" });
  assert.throws(() => checkOffer(entries), /name the same file/);
});

test("the slices let the event loop run: a timer set before a large check fires before it ends", async () => {
  let fired = false;
  setTimeout(() => {
    fired = true;
  }, 0);
  let firedBeforeEnd = null;
  await checkOfferYielding(tree(300), 0).then(() => {
    firedBeforeEnd = fired;
  });
  assert.equal(firedBeforeEnd, true);
});

test("offerFramesYielding builds the same frames as offerFrames", async () => {
  const entries = tree(2000);
  const one = offerFrames(entries);
  const sliced = await offerFramesYielding(entries, [], [], 1);
  assert.ok(one.length > 1);
  assert.deepEqual(sliced, one);
});

test("summarise lists 10 top-level names (escaped, folders with a slash) and counts the rest", () => {
  const entries = [];
  for (let t = 0; t < 30; t++) {
    entries.push({ path: `top${t}\u202e`, size: 0, kind: "dir" });
    for (let i = 0; i < 5; i++) entries.push({ path: `top${t}\u202e/f${i}`, size: 2, kind: "file" });
  }
  entries.push({ path: "loose.txt", size: 1, kind: "file" });
  const s = summarise(entries);
  assert.equal(s.names.length, 10);
  assert.equal(s.names[0], "top0\\u202e/");
  assert.equal(s.more, 21);
  assert.equal(s.files, 151);
  assert.equal(s.totalBytes, 301);
});

/** The central directory's records, parsed: [name, local header offset, size]. */
function centralRecords(bytes, count, cdOffset) {
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  const out = [];
  let at = cdOffset;
  for (let i = 0; i < count; i++) {
    assert.equal(view.getUint32(at, true), 0x02014b50);
    const nameLength = view.getUint16(at + 28, true);
    const extra = view.getUint16(at + 30, true);
    const name = new TextDecoder().decode(bytes.subarray(at + 46, at + 46 + nameLength));
    out.push([name, view.getUint32(at + 42, true), view.getUint32(at + 24, true)]);
    at += 46 + nameLength + extra;
  }
  return out;
}

test("the central directory comes in a few parts whose records point at their local headers", () => {
  const zip = new ZipBuilder();
  const parts = [];
  const n = 5000;
  for (let i = 0; i < n; i++) {
    const data = new TextEncoder().encode(`file ${i}\n`);
    if (i % 2) {
      parts.push(zip.add({ path: `t/f${i}`, size: data.length, crc: new Crc32().update(data).digest() }), data);
    } else {
      parts.push(zip.begin({ path: `t/f${i}`, sizeHint: data.length }), data);
      parts.push(zip.descriptor(new Crc32().update(data).digest(), data.length));
    }
  }
  const cdOffset = zip.offset;
  const tail = zip.finish();
  assert.ok(tail.length <= 4, `${tail.length} parts`); // 5,000 records in about 300 KiB
  const bytes = new Uint8Array(Buffer.concat([...parts, ...tail]));
  const end = new DataView(bytes.buffer, bytes.byteOffset + bytes.length - 22);
  assert.equal(end.getUint32(0, true), 0x06054b50);
  assert.equal(end.getUint16(10, true), n);
  assert.equal(end.getUint32(16, true), cdOffset);
  assert.equal(cdOffset + end.getUint32(12, true), bytes.length - 22);
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  centralRecords(bytes, n, cdOffset).forEach(([name, offset, size], i) => {
    assert.equal(name, `t/f${i}`);
    assert.equal(size, `file ${i}\n`.length);
    assert.equal(view.getUint32(offset, true), 0x04034b50);
  });
});
