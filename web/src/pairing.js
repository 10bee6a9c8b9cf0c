// Pairing two peers by their code, as p2pshare/pairing.py: PAKE and key confirmation through
// the rendezvous server, the sealed offer and answer, then ICE and DTLS until the data channel
// is open; a side that cannot go on tells the other with a sealed abort. Browser APIs only.

import { KNOWN_NAMES } from "./errors.js";
import { PakeSession, SENDER } from "./pake.js";
import { Sealer } from "./seal.js";
import { PeerLink } from "./webrtc.js";

export const CONNECT_TIMEOUT_MS = 30_000;

async function pake(rv, role, code) {
  const session = new PakeSession(role, code.password);
  rv.send(session.start());
  // The sender waits as long as the server keeps its code (the room's TTL).
  await rv.waitPaired(role === SENDER ? null : 10_000);
  session.finish(await rv.receive(CONNECT_TIMEOUT_MS));
  rv.send(session.confirmation());
  session.verifyConfirmation(await rv.receive(CONNECT_TIMEOUT_MS));
  return session;
}

/** While ICE and DTLS run: throw the peer's sealed abort if one comes. Anything else on the
 * rendezvous (the peer leaving once its side is open, a closed server) is not a failure. */
async function watchForAbort(rv, sealer) {
  let sealed;
  try {
    sealed = await rv.receive(null);
  } catch {
    return new Promise(() => {}); // the link's own outcome decides
  }
  sealer.openSignal(sealed);
  throw Object.assign(new Error("the other side sent an unexpected signalling message"), { name: "protocol" });
}

/** The sealed offer; before it, a sender serving many receivers (send --many) may say we wait
 * our turn: then no deadline (the server tells us if the sender leaves), as pairing.py does. */
async function receiveOffer(rv, sealer, onEvent) {
  let timeout = CONNECT_TIMEOUT_MS;
  for (;;) {
    const obj = sealer.openSignal(await rv.receive(timeout));
    if (obj.type !== "wait") {
      if (obj.type !== "offer" || typeof obj.sdp !== "string") {
        throw Object.assign(new Error("the other side sent no valid offer"), { name: "protocol" });
      }
      return obj.sdp;
    }
    if (typeof obj.message !== "string") {
      throw Object.assign(new Error("the other side sent a malformed signalling message"), { name: "protocol" });
    }
    onEvent({ type: "notice", message: [...obj.message].slice(0, 200).join("") });
    timeout = null;
  }
}

export async function pairAndConnect(rv, role, code, onEvent) {
  const session = await pake(rv, role, code);
  onEvent({ type: "verify", keyMaterial: session.verificationBytes() });
  const sealer = new Sealer(session);
  const link = new PeerLink(rv.iceServers);
  try {
    try {
      if (role === SENDER) {
        rv.send(sealer.sealSdp("offer", await link.createOffer()));
        await link.acceptAnswer(sealer.openSdp("answer", await rv.receive(CONNECT_TIMEOUT_MS)));
      } else {
        const offer = await receiveOffer(rv, sealer, onEvent);
        rv.send(sealer.sealSdp("answer", await link.acceptOffer(offer)));
      }
    } catch (e) {
      if (!e.remote) {
        try {
          rv.send(sealer.sealAbort(KNOWN_NAMES.has(e.name) ? e : Object.assign(new Error(e.message), { name: "connect-failed" })));
        } catch {
          // the server or the peer is gone: nothing to tell
        }
      }
      throw e;
    }
    await Promise.race([link.waitOpen(CONNECT_TIMEOUT_MS), watchForAbort(rv, sealer)]);
  } catch (e) {
    link.close();
    throw e;
  }
  rv.close();
  onEvent({ type: "connected", path: await link.path() });
  return link;
}
