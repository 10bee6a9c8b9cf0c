// Sealing of the signalling messages (the SDP offer and answer) after the PAKE: one
// ChaCha20-Poly1305 key per direction, the count of messages already sealed in that direction
// as a 12-byte big-endian nonce, and b"p2pshare.v1" + side as associated data (pake.py).
// No I/O, no DOM.

import { chacha20poly1305 } from "@noble/ciphers/chacha.js";

import { concatBytes, fromUtf8, utf8 } from "./bytes.js";
import { isObject, parse, stringify } from "./json.js";
import { printable } from "./names.js";
import { PROTOCOL_ID } from "./pake.js";

/** A signalling message failed to open: the rendezvous server (or someone) altered it. */
export class TamperingError extends Error {
  constructor() {
    super(
      "a signalling message was altered in transit (the rendezvous server may be tampering)",
    );
    this.name = "protocol";
  }
}

/** An offer or answer with every candidate of a well-connected machine is a few KiB. */
export const MAX_SEALED_JSON_BYTES = 256 * 1024;

/** The error names a peer may report and have mapped to their own meaning (errors.py). */
export const PEER_ERRORS = new Set([
  "declined", "integrity", "protocol", "unsafe-name", "file-error", "disk-full", "interrupted", "peer-lost",
]);

/**
 * The peer stopped and said why. Untrusted, as errors.py's error_from_peer: its Ctrl-C is a
 * peer that left; any name outside PEER_ERRORS (wrong-code, unknown ones) is only "the other
 * side stopped", so a peer cannot choose a local meaning it did not earn.
 */
export class PeerError extends Error {
  constructor(name, message) {
    let ours = PEER_ERRORS.has(name) ? name : "peer-stopped";
    let text = message;
    if (name === "interrupted") {
      ours = "peer-lost";
      text = "the other side cancelled the transfer";
    } else if (name === "unsafe-name") {
      text = `${message}; rename it and send again`;
    }
    super(text);
    this.name = ours;
    this.remote = true;
  }
}

export function nonce(counter) {
  const out = new Uint8Array(12);
  let n = BigInt(counter);
  for (let i = 11; i >= 0 && n > 0n; i--) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return out;
}

/** Both directions of sealing for one side of a finished PakeSession. */
export class Sealer {
  constructor(pake) {
    if (pake.key === null) throw new Error("the PAKE must be finished first");
    this.sealKey = pake.sealKey;
    this.openKey = pake.openKey;
    this.sealAad = concatBytes(PROTOCOL_ID, utf8(pake.role));
    this.openAad = concatBytes(PROTOCOL_ID, utf8(pake.peerRole));
    this.sent = 0;
    this.received = 0;
  }

  seal(plaintext) {
    const cipher = chacha20poly1305(this.sealKey, nonce(this.sent), this.sealAad);
    this.sent += 1;
    return cipher.encrypt(plaintext);
  }

  open(sealed) {
    let plaintext;
    try {
      const cipher = chacha20poly1305(this.openKey, nonce(this.received), this.openAad);
      plaintext = cipher.decrypt(sealed);
    } catch {
      throw new TamperingError();
    }
    this.received += 1;
    return plaintext;
  }

  /** Seal {"type": kind, "sdp": sdp} as UTF-8 JSON, written as Python's json.dumps does. */
  sealSdp(kind, sdp) {
    return this.seal(utf8(stringify({ type: kind, sdp }, false, true)));
  }

  /** Tell the peer, sealed, why we stop before the data channel opened (pairing.py). */
  sealAbort(error) {
    return this.seal(utf8(stringify({ type: "abort", error: error.name, message: error.message }, false, true)));
  }

  /**
   * Open and decode a sealed signalling message (an object; its shape is the caller's to
   * check). A sealed {"type": "abort"} throws the peer's error, by its stable name.
   */
  openSignal(sealed) {
    const plaintext = this.open(sealed);
    if (plaintext.length > MAX_SEALED_JSON_BYTES) {
      throw protocolError("the other side sent an oversized signalling message");
    }
    let obj = null;
    try {
      obj = parse(fromUtf8(plaintext));
    } catch {
      obj = null;
    }
    if (!isObject(obj)) throw protocolError("the other side sent a malformed signalling message");
    if (obj.type === "abort") {
      if (typeof obj.error !== "string" || typeof obj.message !== "string") {
        throw protocolError("the other side stopped, with a malformed reason");
      }
      throw new PeerError([...obj.error].slice(0, 64).join(""), "the other side: " + printable(obj.message));
    }
    return obj;
  }

  /** Open the peer's {"type": kind, "sdp": ...}; anything else is a protocol error. */
  openSdp(kind, sealed) {
    const obj = this.openSignal(sealed);
    if (obj.type !== kind || typeof obj.sdp !== "string") {
      throw protocolError(`the other side sent no valid ${kind}`);
    }
    return obj.sdp;
  }
}

function protocolError(message) {
  const error = new Error(message);
  error.name = "protocol";
  return error;
}
