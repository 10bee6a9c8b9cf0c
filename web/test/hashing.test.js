// The page's hashing (web/src/hashing.js, hash-worker.js): the same SHA-256 whether bytes
// arrive whole or in pieces, a peek that does not end the hash, and the worker's messages.
import assert from "node:assert/strict";
import { createHash as nodeHash } from "node:crypto";
import { test } from "node:test";

import { createHash } from "../src/hashing.js";

function pieces(total, seed) {
  const data = new Uint8Array(total);
  for (let i = 0; i < total; i++) data[i] = (i * 31 + seed) & 0xff;
  return data;
}

function reference(data) {
  return nodeHash("sha256").update(data).digest("hex");
}

test("in this thread: pieces of any size hash as the whole", async () => {
  const data = pieces(300_001, 7);
  const hash = createHash();
  for (let at = 0; at < data.length; at += 65_536) hash.update(data.subarray(at, at + 65_536));
  assert.equal(await hash.digest(), reference(data));
});

test("peek gives the digest so far and hashing goes on", async () => {
  const data = pieces(10_000, 3);
  const hash = createHash();
  hash.update(data.subarray(0, 4000));
  assert.equal(await hash.peek(), reference(data.subarray(0, 4000)));
  hash.update(data.subarray(4000));
  assert.equal(await hash.digest(), reference(data));
});

test("the worker script: update, peek and digest per id, ids kept apart", async () => {
  const replies = [];
  globalThis.self = { postMessage: (m) => replies.push(m) };
  await import("../src/hash-worker.js");
  const a = pieces(5000, 1);
  const b = pieces(7000, 2);
  self.onmessage({ data: { op: "update", id: 1, data: a.subarray(0, 2000) } });
  self.onmessage({ data: { op: "update", id: 2, data: b } });
  self.onmessage({ data: { op: "peek", id: 1 } });
  self.onmessage({ data: { op: "update", id: 1, data: a.subarray(2000) } });
  self.onmessage({ data: { op: "digest", id: 1 } });
  self.onmessage({ data: { op: "digest", id: 2 } });
  assert.deepEqual(replies, [
    { id: 1, digest: reference(a.subarray(0, 2000)) },
    { id: 1, digest: reference(a) },
    { id: 2, digest: reference(b) },
  ]);
  // A digest forgets its id: the same id starts afresh.
  self.onmessage({ data: { op: "digest", id: 1 } });
  assert.equal(replies.at(-1).digest, reference(new Uint8Array(0)));
});

test("without a worker (Node), startHashing says so and hashing stays in this thread", async () => {
  const { startHashing } = await import("../src/hashing.js");
  assert.equal(await startHashing(100), false);
  const hash = createHash();
  hash.update(new Uint8Array([1, 2, 3]));
  assert.equal(await hash.digest(), reference(new Uint8Array([1, 2, 3])));
});
