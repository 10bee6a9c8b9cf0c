// Replays tests/vectors/transfer.json (recorded from p2pshare/transfer.py) against
// src/transfer.js, side by side and step by step; checks the page's copies of the error names
// and words (errors.js, seal.js, ui.js) and of the shared limits against the same file.
import assert from "node:assert/strict";
import { test } from "node:test";

import { fromHex, toHex } from "../src/bytes.js";
import { KNOWN_NAMES } from "../src/errors.js";
import { PEER_ERRORS, PeerError } from "../src/seal.js";
import { abortFrame, pingFrame, ReceiverProtocol, SenderProtocol } from "../src/transfer.js";
import { MESSAGES } from "../src/ui.js";
import { vectors } from "../testlib/vectors.js";

const V = vectors("transfer");

const EVENT_TYPES = {
  offer: "OfferReceived",
  accepted: "Accepted",
  resumed: "Resumed",
  chunk: "ChunkReceived",
  "file-ended": "FileEnded",
  "file-acked": "FileAcked",
  finished: "Finished",
  "peer-aborted": "PeerAborted",
};

const entryJson = (e) => ({ path: e.path, size: e.size, mode: e.mode, mtime: e.mtime, kind: e.kind });

/** Our event in the file's terms (transcripts.py, events_json). */
function eventJson(e) {
  const type = EVENT_TYPES[e.type];
  const fields = {
    offer: () => ({ files: e.files.map(entryJson), compression: e.compression, hashes: e.hashes }),
    accepted: () => ({
      window: e.window,
      have: [...e.have.values()].sort((a, b) => a.index - b.index).map((p) => [p.index, p.offset, p.sha256]),
    }),
    resumed: () => ({ index: e.index, offset: e.offset }),
    chunk: () => ({ index: e.index, payload: toHex(e.payload), raw_len: e.rawLen }),
    "file-ended": () => ({ index: e.index, digest: e.sha256 }),
    "file-acked": () => ({ index: e.index }),
    finished: () => ({}),
    "peer-aborted": () => ({ error: { name: e.error.name, message: e.error.message } }),
  }[e.type]();
  return { type, fields };
}

function stateJson(side) {
  if (side instanceof SenderProtocol) return { credit: side.credit, current: side.current, acked: side.acked };
  return { outstanding: side.outstanding, received_all: side.receivedAll, finished: side.finished };
}

function senderCall(side, method, a) {
  switch (method) {
    case "start":
      return side.start();
    case "resume":
      return [side.resume(a.index, a.offset)];
    case "data":
      return [side.data(fromHex(a.payload))];
    case "data_end":
      return [side.dataEnd(fromHex(a.payload), a.digest)];
    case "end_file":
      return [side.endFile(a.digest)];
  }
  throw new TypeError(`the page's sender has no ${method}: the dialogue should say so`);
}

function receiverCall(side, method, a) {
  switch (method) {
    case "accept":
      assert.equal(a.hash, "sha256", "the page's receiver names no hash: the dialogue should say so");
      return side.accept(a.window, a.compression, a.have.map(([index, offset, sha256]) => ({ index, offset, sha256 })));
    case "consumed": {
      const grant = side.consumed(a.nbytes);
      return grant === null ? [] : [grant];
    }
    case "file_verified":
      return side.fileVerified(a.index);
    case "finish":
      return side.finish();
  }
  throw new TypeError(`no receiver call ${method}`);
}

/** One step on `side`, recorded as transcripts.perform records it (frames as hex only). */
function perform(side, step) {
  let out;
  try {
    if (step.receive) {
      out = { events: side.receive(fromHex(step.receive.hex)).map(eventJson) };
    } else {
      const { call, args } = step;
      let frames;
      if (call === "abort") frames = [abortFrame(args.error, args.message)];
      else if (call === "ping") frames = [pingFrame()];
      else if (side instanceof SenderProtocol) frames = senderCall(side, call, args);
      else frames = receiverCall(side, call, args);
      out = { frames: frames.map(toHex) };
    }
  } catch (e) {
    // A peer's fault carries one of the shared error names; a caller's mistake is an Error.
    out = e.constructor === Error ? { misuse: e.message } : { refused: { name: e.name, message: e.message } };
  }
  out.state = stateJson(side);
  return out;
}

function expected(step) {
  const out = {};
  if (step.events) out.events = step.events;
  if (step.frames) out.frames = step.frames.map((f) => f.hex);
  if (step.refused) out.refused = step.page ? { ...step.refused, message: step.page.message } : step.refused;
  if (step.misuse !== undefined) out.misuse = step.misuse;
  out.state = step.state;
  return out;
}

function newSide(dialogue, which) {
  if (which === "receiver") return new ReceiverProtocol(dialogue.receiver.max_entries, dialogue.receiver.max_offer_bytes);
  const { files, compression, hashes } = dialogue.sender;
  assert.deepEqual(hashes, [], "the page's sender offers no hash: the dialogue should say so");
  return new SenderProtocol(files.map(entryJson), compression);
}

for (const dialogue of V.dialogues) {
  for (const which of ["sender", "receiver"]) {
    const why = dialogue.page?.[which];
    if (why) {
      // A deliberate difference, declared with its reason in the file: not replayed.
      assert.ok(why.length > 20);
      continue;
    }
    test(`dialogue "${dialogue.name}": the ${which}`, () => {
      const side = newSide(dialogue, which);
      dialogue.steps.forEach((step, n) => {
        if (step.side !== which) return;
        assert.deepEqual(perform(side, step), expected(step), `step ${n}: ${JSON.stringify(step).slice(0, 300)}`);
      });
    });
  }
}

test("the window the page grants differs from the CLI's only as declared", async () => {
  const window = V.limits.find((l) => l.python.endsWith(":DEFAULT_WINDOW_BYTES"));
  assert.notEqual(window.page.value, window.value);
  assert.match(window.page.why, /browser memory/);
  const { DEFAULT_WINDOW_BYTES } = await import("../src/transfer.js");
  assert.equal(DEFAULT_WINDOW_BYTES, window.page.value);
});

for (const limit of V.limits) {
  test(`limit: ${limit.name} (${limit.page.module} ${limit.page.export})`, async () => {
    const module = await import(`../src/${limit.page.module}`);
    const ours = module[limit.page.export];
    assert.notEqual(ours, undefined, `${limit.page.module} exports no ${limit.page.export}`);
    if (typeof ours === "bigint") assert.equal(ours, BigInt(limit.page.value));
    else assert.equal(ours, limit.page.value);
  });
}

test("KNOWN_NAMES (errors.js) are the names an Abort may carry", () => {
  assert.deepEqual([...KNOWN_NAMES].sort(), V.errors.abort_names);
});

test("PEER_ERRORS (seal.js) are the names a peer may report", () => {
  const names = V.errors.errors.filter((e) => e.peer_may_report).map((e) => e.name);
  assert.deepEqual([...PEER_ERRORS].sort(), names.sort());
});

test("MESSAGES (ui.js) are errors.py's words, for every error", () => {
  assert.deepEqual(MESSAGES, Object.fromEntries(V.errors.errors.map((e) => [e.name, e.text])));
});

for (const c of V.errors.from_peer) {
  test(`a peer's Abort named ${c.name} becomes ${c.becomes.name}`, () => {
    const error = new PeerError(c.name, c.message);
    assert.deepEqual({ name: error.name, message: error.message }, c.becomes);
    assert.equal(error.remote, true);
  });
}
