// The rendezvous transcript of tests/vectors/rendezvous.json replayed by our client, with the
// PAKE and sealing of pake.json: the same bodies, in the same order.
import assert from "node:assert/strict";
import { test } from "node:test";

import { fromHex } from "../src/bytes.js";
import { parseCode, BadCodeError } from "../src/codes.js";
import { PakeSession } from "../src/pake.js";
import { checkIceServers, checkNameplate, RendezvousClient, serverUrlFor } from "../src/rendezvous.js";
import { Sealer } from "../src/seal.js";
import { vectors } from "../testlib/vectors.js";

const R = vectors("rendezvous");
const P = vectors("pake");

/** A WebSocket stand-in: the test plays the server. */
class FakeSocket {
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 1;
    this.sent = [];
    FakeSocket.last = this;
    setTimeout(() => this.onopen?.(), 0);
  }
  send(text) {
    this.sent.push(text);
  }
  close() {
    this.readyState = 3;
  }
  deliver(text) {
    this.onmessage?.({ data: text });
  }
}

function serverFrames(to) {
  return R.transcript.filter((t) => t.from === "server" && t.to === to).map((t) => t.text);
}

function clientObjects(from) {
  return R.transcript.filter((t) => t.from === from).map((t) => JSON.parse(t.text));
}

async function replay(role) {
  const name = role === "A" ? "sender" : "receiver";
  const ex = P.exchanges.find((e) => e.keys_match);
  const side = role === "A" ? ex.sender : ex.receiver;
  const password = fromHex(role === "A" ? ex.sender_password.hex : ex.receiver_password.hex);
  const connecting = RendezvousClient.connect("ws://example/", FakeSocket);
  const ws = FakeSocket.last;
  for (const text of serverFrames(name)) ws.deliver(text);
  const rv = await connecting;
  assert.deepEqual(ws.protocols, ["p2pshare.v1"]);
  assert.deepEqual(rv.iceServers, [{ urls: ["stun:stun.example.net:3478"] }]);
  const pake = new PakeSession(role, password, () => fromHex(side.entropy_hex));
  if (role === "A") assert.equal(await rv.allocate(), "7");
  else await rv.claim("7");
  rv.send(pake.start());
  await rv.waitPaired(1000);
  pake.finish(await rv.receive(1000));
  rv.send(pake.confirmation());
  pake.verifyConfirmation(await rv.receive(1000));
  const sealer = new Sealer(pake);
  const offer = P.sealed.find((s) => s.sealed_by === "sender");
  const answer = P.sealed.find((s) => s.sealed_by === "receiver");
  const sdpOf = (s) => JSON.parse(s.plaintext_utf8).sdp;
  if (role === "A") {
    rv.send(sealer.sealSdp("offer", sdpOf(offer)));
    assert.equal(sealer.openSdp("answer", await rv.receive(1000)), sdpOf(answer));
  } else {
    assert.equal(sealer.openSdp("offer", await rv.receive(1000)), sdpOf(offer));
    rv.send(sealer.sealSdp("answer", sdpOf(answer)));
  }
  rv.close();
  assert.deepEqual(ws.sent.map((t) => JSON.parse(t)), clientObjects(name));
}

test("the sender's side of the transcript, byte for byte in every body", () => replay("A"));
test("the receiver's side of the transcript", () => replay("B"));

test("server errors become named errors", async () => {
  const connecting = RendezvousClient.connect("ws://example/", FakeSocket);
  const ws = FakeSocket.last;
  ws.deliver(serverFrames("receiver")[0]);
  const rv = await connecting;
  const claiming = rv.claim("8");
  ws.deliver('{"type":"error","code":"no-such-code","message":"no such code"}');
  await assert.rejects(claiming, (e) => e.name === "no-such-code");
});

test("codes are normalised as the CLI does", () => {
  assert.equal(parseCode("  7 Guitar-OCEAN ").text, "7-guitar-ocean");
  assert.deepEqual([...parseCode("7-guitar-ocean").password], [...new TextEncoder().encode("7-guitar-ocean")]);
  for (const bad of ["", "7", "guitar-ocean", "0-a-b", "1234567-a-b", "7-gu!tar"]) {
    assert.throws(() => parseCode(bad), BadCodeError, bad);
  }
  assert.equal(serverUrlFor({ protocol: "https:", host: "example.net:8443" }), "wss://example.net:8443/");
  assert.equal(serverUrlFor({ protocol: "http:", host: "192.168.1.5:4000" }), "ws://192.168.1.5:4000/");
});

test("what the server sends is checked: ICE servers, nameplates, frames", async () => {
  const welcome = R.server_messages.find((m) => m.name === "welcome with TURN").object;
  assert.deepEqual(checkIceServers(welcome.ice_servers), welcome.ice_servers);
  assert.deepEqual(checkIceServers(null), []);
  assert.deepEqual(checkIceServers([{ urls: "stun:example.net" }]), [{ urls: ["stun:example.net"] }]);
  for (const bad of [
    "x",
    [{ urls: [] }],
    [{ urls: "http://example.net" }],
    [{ urls: "stun:example.net?transport=udp" }],
    [{ urls: "turn:example.net:70000" }],
    [{ urls: "turn:exämple.net" }],
    [{ urls: "turn:example.net", username: 5 }],
    [{ urls: "turn:example.net", credential: "x".repeat(513) }],
    Array.from({ length: 9 }, () => ({ urls: "stun:a" })),
  ]) {
    assert.throws(() => checkIceServers(bad), (e) => e.name === "server-error", JSON.stringify(bad));
  }
  for (const bad of ["0", "1234567", "²", "٣", 7, "07"]) {
    assert.throws(() => checkNameplate(bad), (e) => e.name === "server-error");
  }
  assert.equal(checkNameplate("999999"), "999999");
  const connecting = RendezvousClient.connect("ws://example/", FakeSocket);
  const ws = FakeSocket.last;
  ws.deliver(serverFrames("receiver")[0]);
  const rv = await connecting;
  const claiming = rv.claim("7");
  ws.deliver('{"type":"claimed","nameplate":"8"}');
  await assert.rejects(claiming, (e) => e.name === "server-error");
  const deep = RendezvousClient.connect("ws://example/", FakeSocket);
  FakeSocket.last.deliver("[".repeat(2000) + "]".repeat(2000));
  await assert.rejects(deep, (e) => e.name === "server-error");
});
