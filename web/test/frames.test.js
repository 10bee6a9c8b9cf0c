// Every frame of tests/vectors/frames.json encoded and decoded; every invalid frame refused.
import assert from "node:assert/strict";
import { test } from "node:test";

import { fromHex, toHex } from "../src/bytes.js";
import { decode, encode, offerFrames, ProtocolError } from "../src/frames.js";
import { vectors } from "../testlib/vectors.js";

const V = vectors("frames");

const TYPES = {
  Accept: "accept",
  Have: "have",
  Resume: "resume",
  Abort: "abort",
  Credit: "credit",
  FileEnd: "file-end",
  FileAck: "file-ack",
  Done: "done",
  Ping: "ping",
  Data: "data",
  DataEnd: "data-end",
  DataZ: "data-z",
  OfferHead: "offer",
  OfferMore: "offer-more",
};

/** Our decoded message in the vectors' terms (Python dataclass fields, bytes as hex). */
function asFields(msg) {
  const out = {};
  for (const [k, v] of Object.entries(msg)) {
    if (k === "type") continue;
    const key = { rawLen: "raw_len" }[k] ?? k;
    out[key] = v instanceof Uint8Array ? toHex(v) : v;
  }
  return out;
}

function normalise(fields) {
  // Python's mtime is a float: 1700000000.0 and 1700000000 are the same number here.
  return JSON.parse(JSON.stringify(fields));
}

for (const f of V.frames) {
  test(`frame: ${f.name}`, () => {
    const msg = decode(fromHex(f.hex));
    assert.equal(msg.type, TYPES[f.type]);
    assert.deepEqual(normalise(asFields(msg)), normalise(f.fields));
    const again = { type: TYPES[f.type], ...f.fields };
    if (f.fields.payload !== undefined) again.payload = fromHex(f.fields.payload);
    if (f.fields.raw_len !== undefined) again.rawLen = f.fields.raw_len;
    assert.equal(toHex(encode(again)), f.hex);
  });
}

for (const o of V.offers) {
  test(`offer: ${o.name}`, () => {
    const frames = offerFrames(o.fields.files, o.fields.compression, o.fields.hashes);
    assert.deepEqual(frames.map(toHex), o.frames.map((f) => f.hex));
    for (const f of o.frames) {
      const msg = decode(fromHex(f.hex));
      assert.equal(msg.type, TYPES[f.type]);
      assert.deepEqual(normalise(asFields(msg)), normalise(f.fields));
    }
  });
}

test("compressed data frame", () => {
  const c = V.compression.frame;
  const msg = decode(fromHex(c.hex));
  assert.equal(msg.type, "data-z");
  assert.equal(msg.rawLen, V.compression.raw_len);
  assert.equal(toHex(encode(msg)), c.hex);
});

for (const bad of V.invalid) {
  test(`invalid: ${bad.reason}`, () => {
    assert.throws(() => decode(fromHex(bad.hex)), ProtocolError);
  });
}

test("text messages are refused", () => {
  assert.throws(() => decode("\x02{}"), ProtocolError);
});
