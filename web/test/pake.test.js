// SPAKE2, key confirmation and sealing against tests/vectors/pake.json (made by Python).
import assert from "node:assert/strict";
import { test } from "node:test";

import { readFileSync } from "node:fs";

import { fromHex, toHex, toBase64Url, fromBase64Url, utf8 } from "../src/bytes.js";
import { verificationWords, wordsFrom } from "../src/codes.js";
import { M, N, PakeSession, passwordToScalar, WrongCodeError } from "../src/pake.js";
import { Sealer, TamperingError } from "../src/seal.js";
import { vectors } from "../testlib/vectors.js";

const V = vectors("pake");
const WORDLIST = wordsFrom(readFileSync(new URL("../../p2pshare/wordlist.txt", import.meta.url), "utf-8"));

function sessions(exchange) {
  const a = new PakeSession("A", fromHex(exchange.sender_password.hex), () => fromHex(exchange.sender.entropy_hex));
  const b = new PakeSession("B", fromHex(exchange.receiver_password.hex), () => fromHex(exchange.receiver.entropy_hex));
  return [a, b];
}

test("M and N are python-spake2's arbitrary elements", () => {
  assert.equal(toHex(M.toBytes()), V.construction.M.element_hex);
  assert.equal(toHex(N.toBytes()), V.construction.N.element_hex);
});

for (const ex of V.exchanges) {
  test(`exchange: ${ex.name}`, () => {
    assert.equal(passwordToScalar(fromHex(ex.sender_password.hex)).toString(), ex.sender_password.scalar);
    assert.equal(passwordToScalar(fromHex(ex.receiver_password.hex)).toString(), ex.receiver_password.scalar);
    const [a, b] = sessions(ex);
    const ma = a.start();
    const mb = b.start();
    assert.equal(toHex(ma), ex.sender.message_hex);
    assert.equal(toHex(mb), ex.receiver.message_hex);
    assert.equal(a.xyScalar.toString(), ex.sender.scalar);
    assert.equal(toHex(a.finish(mb)), ex.sender.key_hex);
    assert.equal(toHex(b.finish(ma)), ex.receiver.key_hex);
    for (const [side, s] of [[ex.sender, a], [ex.receiver, b]]) {
      const okm = Object.fromEntries(side.hkdf.map((h) => [h.info_ascii, h.okm_hex]));
      assert.equal(toHex(s.confirmation()), okm[`p2pshare.v1 confirm ${s.role}`]);
      assert.equal(toHex(s.sealKey), okm[`p2pshare.v1 seal ${s.role}`]);
      assert.equal(toHex(s.openKey), okm[`p2pshare.v1 seal ${s.peerRole}`]);
      assert.equal(toHex(s.verificationBytes()), okm["p2pshare.v1 verify"]);
      assert.deepEqual(verificationWords(s.verificationBytes(), WORDLIST), side.verification_words);
    }
    if (ex.keys_match) {
      a.verifyConfirmation(b.confirmation());
      b.verifyConfirmation(a.confirmation());
    } else {
      assert.throws(() => a.verifyConfirmation(b.confirmation()), WrongCodeError);
      assert.throws(() => b.verifyConfirmation(a.confirmation()), WrongCodeError);
    }
  });
}

test("sealed signalling messages, byte for byte, in both directions", () => {
  const ex = V.exchanges.find((e) => e.keys_match);
  const [a, b] = sessions(ex);
  const ma = a.start();
  const mb = b.start();
  a.finish(mb);
  b.finish(ma);
  const sealers = { A: new Sealer(a), B: new Sealer(b) };
  const openers = { A: new Sealer(b), B: new Sealer(a) };
  for (const s of V.sealed) {
    const side = s.sealed_by === "sender" ? "A" : "B";
    assert.equal(sealers[side].sent, s.counter);
    const sealed = sealers[side].seal(fromHex(s.plaintext_hex));
    assert.equal(toHex(sealed), s.sealed_hex);
    assert.equal(toBase64Url(sealed), s.rendezvous_body);
    assert.deepEqual(fromBase64Url(s.rendezvous_body), sealed);
    assert.equal(toHex(openers[side].open(sealed)), s.plaintext_hex);
  }
});

test("tampered sealed messages do not open", () => {
  const ex = V.exchanges.find((e) => e.keys_match);
  for (const t of V.tampered) {
    const [a, b] = sessions(ex);
    const ma = a.start();
    const mb = b.start();
    a.finish(mb);
    b.finish(ma);
    const opener = new Sealer(t.opened_by === "receiver" ? b : a);
    if (t.counter !== undefined) opener.received = t.counter;
    assert.throws(() => opener.open(fromHex(t.sealed_hex)), TamperingError, t.reason);
  }
});

test("invalid peer PAKE messages are a wrong code", () => {
  const ex = V.exchanges.find((e) => e.keys_match);
  for (const bad of V.invalid_peer_messages) {
    const [a] = sessions(ex);
    a.start();
    assert.throws(() => a.finish(fromHex(bad.peer_message_hex)), WrongCodeError, bad.reason);
  }
});

test("base64url as Python writes it", () => {
  for (let n = 0; n < 40; n++) {
    const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 37 + n) & 0xff);
    assert.deepEqual(fromBase64Url(toBase64Url(bytes)), bytes);
  }
  assert.equal(toBase64Url(utf8("\xfb\xff")), "w7vDvw==");
});

test("a sealed abort carries the peer's error; malformed signalling is a protocol error", () => {
  const ex = V.exchanges.find((e) => e.keys_match);
  const [a, b] = sessions(ex);
  const ma = a.start();
  const mb = b.start();
  a.finish(mb);
  b.finish(ma);
  const [sa, sb] = [new Sealer(a), new Sealer(b)];
  const unusable = Object.assign(new Error("cannot use that offer"), { name: "protocol" });
  assert.throws(() => sb.openSignal(sa.sealAbort(unusable)), (e) => e.name === "protocol" && e.remote && e.message === "the other side: cannot use that offer");
  // A peer claiming a wrong code after a correct PAKE is not believed (errors.py).
  const claim = Object.assign(new Error("ha"), { name: "wrong-code" });
  assert.throws(() => sb.openSignal(sa.sealAbort(claim)), (e) => e.name === "peer-stopped");
  assert.throws(() => sb.openSignal(sa.seal(utf8("[".repeat(5000) + "]".repeat(5000)))), (e) => e.name === "protocol");
  assert.throws(() => sb.openSignal(sa.seal(utf8('"just a string"'))), (e) => e.name === "protocol");
  assert.throws(() => sb.openSignal(sa.seal(new Uint8Array(256 * 1024 + 1))), (e) => e.name === "protocol");
  assert.throws(() => sb.openSignal(sa.seal(utf8('{"type":"abort","error":1,"message":"x"}'))), (e) => e.name === "protocol");
  assert.equal(sb.openSdp("offer", sa.sealSdp("offer", "v=0\r\n")), "v=0\r\n");
});
