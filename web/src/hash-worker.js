// The page's SHA-256 off its main thread: the main thread sends data and asks for digests,
// this worker hashes in order. Messages: {op: "update" | "peek" | "digest", id, data?}; a
// reply {id, digest} answers "peek" (the digest so far, hashing goes on) and "digest" (the
// final one; the id is forgotten). No DOM, no network.

import { sha256 } from "@noble/hashes/sha2.js";

import { toHex } from "./bytes.js";

const hashers = new Map();

self.onmessage = (e) => {
  const { op, id, data } = e.data;
  let hasher = hashers.get(id);
  if (!hasher) {
    hasher = sha256.create();
    hashers.set(id, hasher);
  }
  if (op === "update") hasher.update(data);
  else if (op === "peek") self.postMessage({ id, digest: toHex(hasher.clone().digest()) });
  else if (op === "digest") {
    hashers.delete(id);
    self.postMessage({ id, digest: toHex(hasher.digest()) });
  }
};
