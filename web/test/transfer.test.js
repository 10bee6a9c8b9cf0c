// The sans-I/O transfer state machines driven against each other (as tests/test_transfer_protocol.py).
import assert from "node:assert/strict";
import { test } from "node:test";

import { sha256 } from "@noble/hashes/sha2.js";

import { toHex, utf8 } from "../src/bytes.js";
import { encode, IntegrityError, offerFrames, ProtocolError } from "../src/frames.js";
import { checkOwnOffer } from "../src/session.js";
import { abortFrame, pingFrame, ReceiverProtocol, SenderProtocol } from "../src/transfer.js";

const hex = (bytes) => toHex(sha256(bytes));

function entries(data) {
  return data.map((blob, i) =>
    blob === null ? { path: `d${i}`, size: 0, mode: 0o755, mtime: null, kind: "dir" } : { path: `f${i}`, size: blob.length, mode: 0o644, mtime: null, kind: "file" },
  );
}

/** Both machines against each other; returns what the receiver got. */
function runTransfer(data, window, chunk, combineEnd = false) {
  const files = entries(data);
  const sender = new SenderProtocol(files);
  const receiver = new ReceiverProtocol();
  const received = sender.start().flatMap((f) => receiver.receive(f));
  assert.equal(received.length, 1);
  assert.equal(received[0].type, "offer");
  assert.deepEqual(received[0].files, files);
  const accepted = sender.receive(receiver.accept(window)[0]);
  assert.equal(accepted[0].type, "accepted");
  const got = data.map((b) => (b === null ? null : new Uint8Array(0)));
  if (data.every((b) => b === null)) {
    assert.ok(receiver.receivedAll);
    assert.deepEqual(sender.receive(receiver.finish()[0]), [{ type: "finished" }]);
    return got;
  }
  data.forEach((blob, index) => {
    if (blob === null) return;
    assert.equal(sender.current, index);
    let pos = 0;
    let ended = false;
    const digest = hex(blob);
    while (pos < blob.length || (combineEnd && !ended)) {
      const n = Math.min(chunk, blob.length - pos, sender.credit);
      let frame;
      if (combineEnd && pos + n === blob.length) {
        frame = sender.dataEnd(blob.subarray(pos, pos + n), digest);
        ended = true;
      } else {
        assert.ok(n > 0, "sender starved");
        frame = sender.data(blob.subarray(pos, pos + n));
      }
      for (const event of receiver.receive(frame)) {
        if (event.type === "file-ended") {
          assert.deepEqual(event, { type: "file-ended", index, sha256: digest });
          continue;
        }
        assert.equal(event.type, "chunk");
        const joined = new Uint8Array(got[event.index].length + event.payload.length);
        joined.set(got[event.index]);
        joined.set(event.payload, got[event.index].length);
        got[event.index] = joined;
        const grant = receiver.consumed(event.payload.length);
        if (grant) assert.deepEqual(sender.receive(grant), []);
      }
      pos += n;
    }
    if (!combineEnd) {
      assert.deepEqual(receiver.receive(sender.endFile(digest)), [{ type: "file-ended", index, sha256: digest }]);
    }
    for (const frame of receiver.fileVerified(index)) {
      for (const event of sender.receive(frame)) assert.equal(event.type, "file-acked");
    }
  });
  assert.ok(receiver.receivedAll);
  assert.throws(() => receiver.finish.call(new ReceiverProtocol()));
  const events = receiver.finish().flatMap((f) => sender.receive(f));
  assert.deepEqual(events.map((e) => e.type), ["file-acked", "finished"]);
  assert.ok(receiver.finished);
  assert.ok(sender.finished);
  return got;
}

const bytes = (n, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * seed + 7) & 0xff);

test("several files with a small window: credit returns in quarter windows", () => {
  const data = [new Uint8Array(0), null, utf8("x"), bytes(76800)];
  assert.deepEqual(runTransfer(data, 4096, 1000), data);
  assert.deepEqual(runTransfer(data, 4096, 1000, true), data);
});

test("directories only finish without data", () => {
  assert.deepEqual(runTransfer([null, null], 10, 10), [null, null]);
});

test("many sizes, windows and chunks", () => {
  for (const window of [1, 7, 64, 1000]) {
    for (const chunk of [1, 3, 100]) {
      const data = [bytes(0), bytes(5, 3), null, bytes(301, 5)];
      assert.deepEqual(runTransfer(data, window, chunk, chunk === 3), data);
    }
  }
});

function accepted(files, window = 100) {
  const sender = new SenderProtocol(files);
  const receiver = new ReceiverProtocol();
  for (const f of sender.start()) receiver.receive(f);
  for (const f of receiver.accept(window)) sender.receive(f);
  return [sender, receiver];
}

test("more bytes than declared is an integrity error", () => {
  const [, receiver] = accepted(entries([bytes(3)]));
  assert.throws(() => receiver.receive(encode({ type: "data", payload: bytes(4) })), IntegrityError);
});

test("fewer bytes than declared is an integrity error", () => {
  const [, receiver] = accepted(entries([bytes(3)]));
  receiver.receive(encode({ type: "data", payload: bytes(2) }));
  assert.throws(() => receiver.receive(encode({ type: "file-end", index: 0, size: 2, sha256: hex(bytes(2)) })), IntegrityError);
});

test("data beyond the credit is refused", () => {
  const [, receiver] = accepted(entries([bytes(300)]), 100);
  receiver.receive(encode({ type: "data", payload: bytes(100) }));
  assert.throws(() => receiver.receive(encode({ type: "data", payload: bytes(1) })), ProtocolError);
});

test("nothing but an offer before accepting; a second offer is refused", () => {
  const receiver = new ReceiverProtocol();
  assert.throws(() => receiver.receive(encode({ type: "data", payload: bytes(1) })), ProtocolError);
  assert.throws(() => receiver.receive(encode({ type: "done" })), ProtocolError);
  const frames = offerFrames(entries([bytes(1)]));
  receiver.receive(frames[0]);
  assert.throws(() => receiver.receive(frames[0]), ProtocolError);
});

test("the offer's total must match, and no more entries than declared", () => {
  const bad = new Uint8Array([1, ...utf8('{"v":1,"count":1,"total":9,"files":[{"path":"a","size":1,"mode":420}]}')]);
  assert.throws(() => new ReceiverProtocol().receive(bad), ProtocolError);
  const more = new ReceiverProtocol();
  more.receive(new Uint8Array([1, ...utf8('{"v":1,"count":1,"total":1,"files":[]}')]));
  assert.throws(
    () => more.receive(new Uint8Array([9, ...utf8('{"files":[{"path":"a","size":1,"mode":420},{"path":"b","size":0,"mode":420}]}')])),
    ProtocolError,
  );
});

test("file end for the wrong file is refused", () => {
  const [, receiver] = accepted(entries([bytes(0), bytes(0)]));
  assert.throws(() => receiver.receive(encode({ type: "file-end", index: 1, size: 0, sha256: hex(bytes(0)) })), ProtocolError);
});

test("the sender refuses Done before the acks and acks of unsent files", () => {
  const [sender] = accepted(entries([bytes(1)]));
  assert.throws(() => sender.receive(encode({ type: "done" })), ProtocolError);
  const [sender2] = accepted(entries([bytes(1)]));
  assert.throws(() => sender2.receive(encode({ type: "file-ack", index: 0 })), ProtocolError);
});

test("an abort from the peer becomes its error; interrupted means the peer left", () => {
  const receiver = new ReceiverProtocol();
  const [event] = receiver.receive(abortFrame("declined", "no thanks\x1b[2J"));
  assert.equal(event.type, "peer-aborted");
  assert.equal(event.error.name, "declined");
  assert.equal(event.error.message, "the other side: no thanks\\x1b[2J");
  const [left] = new SenderProtocol(entries([bytes(1)])).receive(abortFrame("interrupted", "^C"));
  assert.equal(left.error.name, "peer-lost");
  assert.equal(left.error.message, "the other side cancelled the transfer");
  assert.deepEqual(new ReceiverProtocol().receive(pingFrame()), []);
});

test("compression is used only when both agree", () => {
  const files = entries([bytes(10)]);
  const sender = new SenderProtocol(files, ["zstd"]);
  const receiver = new ReceiverProtocol();
  for (const f of sender.start()) receiver.receive(f);
  sender.receive(receiver.accept(100, null)[0]);
  assert.equal(sender.compression, null);
  assert.throws(() => receiver.receive(encode({ type: "data-z", rawLen: 10, payload: bytes(3) })), ProtocolError);
});

test("the page hashes with SHA-256 only: it offers no other hash and refuses an Accept naming one", () => {
  const files = entries([bytes(10)]);
  const [head] = new SenderProtocol(files).start();
  assert.ok(!new TextDecoder().decode(head.subarray(1)).includes('"hash"'));
  const sender = new SenderProtocol(files);
  sender.start();
  const accept = encode({ type: "accept", window: 100, compression: null, have: 0, hash: "blake3" });
  assert.throws(() => sender.receive(accept), /hash we did not offer/);
  const receiver = new ReceiverProtocol(); // a CLI's offer, BLAKE3 included
  let events = [];
  for (const f of offerFrames(files, [], ["blake3"])) events = events.concat(receiver.receive(f));
  assert.equal(events[0].type, "offer");
  const [answer] = receiver.accept(100, null);
  assert.ok(!new TextDecoder().decode(answer.subarray(1)).includes('"hash"'));
});

test("resume: the sender answers every prefix before data, and only the rest is sent", () => {
  const blob = bytes(1000);
  const files = entries([blob, bytes(10)]);
  const sender = new SenderProtocol(files);
  const receiver = new ReceiverProtocol();
  for (const f of sender.start()) receiver.receive(f);
  const have = [{ index: 0, offset: 600, sha256: hex(blob.subarray(0, 600)) }];
  let events = [];
  for (const f of receiver.accept(1000, null, have)) events = events.concat(sender.receive(f));
  assert.equal(events[0].type, "accepted");
  assert.deepEqual([...events[0].have.keys()], [0]);
  assert.throws(() => sender.data(blob.subarray(0, 1)));
  assert.deepEqual(receiver.receive(sender.resume(0, 600)), [{ type: "resumed", index: 0, offset: 600 }]);
  receiver.receive(sender.data(blob.subarray(600)));
  assert.equal(receiver.receive(sender.endFile(hex(blob)))[0].type, "file-ended");
});

test("a resume the receiver did not offer is refused", () => {
  const receiver = new ReceiverProtocol();
  const files = entries([bytes(1000)]);
  for (const f of offerFrames(files)) receiver.receive(f);
  receiver.accept(1000, null, [{ index: 0, offset: 10, sha256: hex(bytes(10)) }]);
  assert.throws(() => receiver.receive(encode({ type: "resume", index: 0, offset: 11 })), ProtocolError);
});

test("offers are bounded before they are collected", () => {
  const many = new ReceiverProtocol(3);
  const head = new Uint8Array([1, ...utf8('{"v":1,"count":4,"total":0,"files":[]}')]);
  assert.throws(() => many.receive(head), (e) => e.name === "declined");
  const big = new ReceiverProtocol(50_000, 100);
  const frames = offerFrames(entries(Array.from({ length: 5 }, () => bytes(1))));
  assert.throws(() => big.receive(frames[0]), (e) => e.name === "declined");
});

test("a sender refuses, before any code, names every receiver would refuse", () => {
  assert.throws(
    () => checkOwnOffer([{ path: "CON.txt", size: 1, kind: "file" }]),
    (e) => e.name === "unsafe-name" && e.message.startsWith("cannot send: unsafe name 'CON.txt'"),
  );
  checkOwnOffer([{ path: "fine.txt", size: 1, kind: "file" }]);
});
