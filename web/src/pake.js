// SPAKE2 on the code, key confirmation, and sealing keys: byte-compatible with p2pshare/pake.py,
// which uses python `spake2` 0.9 (Ed25519 group, SPAKE2_A / SPAKE2_B). No I/O, no DOM.
//
// What python-spake2 0.9 does, reproduced here step by step:
// - password scalar: HKDF-SHA256(ikm=password, salt="", info="SPAKE2 pw", L=48), read as a
//   big-endian integer, mod L (the group order);
// - M and N: "arbitrary elements" from the seeds "M" and "N": HKDF(seed, salt="",
//   info="SPAKE2 arbitrary element", L=48) big-endian mod Q gives y; the first y, y+1, ... whose
//   x (recovered as below, always the even root) is on the curve, times 8 (the cofactor);
// - the random scalar: 64 bytes of entropy, big-endian, mod L;
// - A sends "A" || (x*G + pw*M), B sends "B" || (y*G + pw*N);
// - K = (peer - pw*other_blinding) * own_scalar; key = SHA256(SHA256(pw) || SHA256(idA) ||
//   SHA256(idB) || X_msg || Y_msg || K), where X_msg is A's element and Y_msg is B's.

import { ed25519 } from "@noble/curves/ed25519.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";

import { concatBytes, equalBytes, utf8 } from "./bytes.js";

const Point = ed25519.Point;
const Q = 2n ** 255n - 19n;
const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const EMPTY = new Uint8Array(0);

export const PROTOCOL_ID = utf8("p2pshare.v1");
export const ID_A = utf8("p2pshare.v1/sender");
export const ID_B = utf8("p2pshare.v1/receiver");
export const PAKE_MESSAGE_BYTES = 33;
export const CONFIRM_BYTES = 32;
export const SENDER = "A";
export const RECEIVER = "B";

/** The code was wrong (or someone guessed): key confirmation failed or the PAKE message was bad. */
export class WrongCodeError extends Error {
  constructor(message = "wrong code (or someone tried to guess it): key confirmation failed") {
    super(message);
    this.name = "wrong-code";
  }
}

function mod(a, m) {
  const r = a % m;
  return r >= 0n ? r : r + m;
}

function powMod(base, exp, m) {
  let result = 1n;
  let b = mod(base, m);
  let e = exp;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % m;
    b = (b * b) % m;
    e >>= 1n;
  }
  return result;
}

const inv = (x) => powMod(x, Q - 2n, Q);
const D = mod(-121665n * inv(121666n), Q);
const I = powMod(2n, (Q - 1n) / 4n, Q);

function bytesToNumberBE(bytes) {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  return n;
}

/** python-spake2's xrecover: a square root of (y²-1)/(dy²+1), the even one. */
function xrecover(y) {
  const xx = mod((y * y - 1n) * inv(D * y * y + 1n), Q);
  let x = powMod(xx, (Q + 3n) / 8n, Q);
  if (mod(x * x - xx, Q) !== 0n) x = (x * I) % Q;
  if (x % 2n !== 0n) x = Q - x;
  return x;
}

function isOnCurve(x, y) {
  return mod(-x * x + y * y - 1n - D * x * x * y * y, Q) === 0n;
}

function expand(ikm, info, length) {
  return hkdf(sha256, ikm, EMPTY, utf8(info), length);
}

/** python-spake2's Ed25519 arbitrary_element(seed): a point nobody knows the logarithm of. */
export function arbitraryElement(seed) {
  const y0 = bytesToNumberBE(expand(seed, "SPAKE2 arbitrary element", 48)) % Q;
  for (let plus = 0n; ; plus++) {
    const y = (y0 + plus) % Q;
    const x = xrecover(y);
    if (!isOnCurve(x, y)) continue;
    const p8 = Point.fromAffine({ x, y }).multiplyUnsafe(8n);
    if (p8.is0()) continue;
    return p8;
  }
}

/** The password as a scalar, as python-spake2's password_to_scalar (Ed25519 group). */
export function passwordToScalar(password) {
  return bytesToNumberBE(expand(password, "SPAKE2 pw", 32 + 16)) % L;
}

export const M = arbitraryElement(utf8("M"));
export const N = arbitraryElement(utf8("N"));

function decodeElement(bytes) {
  // Like python-spake2's bytes_to_element: on the curve, not the identity, in the prime-order
  // subgroup. Any failure is a wrong code to the caller.
  const p = Point.fromBytes(bytes, true);
  if (p.is0() || !p.isTorsionFree()) throw new Error("element not in the group");
  return p;
}

function times(point, scalar) {
  const s = mod(scalar, L);
  return s === 0n ? Point.ZERO : point.multiply(s);
}

function hkdfKey(key, purpose) {
  return hkdf(sha256, key, undefined, concatBytes(PROTOCOL_ID, utf8(" " + purpose)), 32);
}

/**
 * One side of the key agreement ("A": sender, "B": receiver), then a pair of sealing keys.
 * `entropy(n)` returns n random bytes (tests pass fixed bytes).
 */
export class PakeSession {
  constructor(role, password, entropy = randomBytes) {
    if (role !== SENDER && role !== RECEIVER) throw new Error("role must be A or B");
    this.role = role;
    this.peerRole = role === SENDER ? RECEIVER : SENDER;
    this.password = password;
    this.pwScalar = passwordToScalar(password);
    this.entropy = entropy;
    this.key = null;
    this.outbound = null;
  }

  /** The PAKE message to send: the side byte and 32 bytes of element. */
  start() {
    if (this.outbound !== null) throw new Error("start() may only be called once");
    this.xyScalar = bytesToNumberBE(this.entropy(64)) % L;
    const blinding = this.role === SENDER ? M : N;
    const elem = times(Point.BASE, this.xyScalar).add(times(blinding, this.pwScalar));
    this.outbound = elem.toBytes();
    return concatBytes(utf8(this.role), this.outbound);
  }

  /** Derive the shared key from the peer's message; anything malformed is a wrong code. */
  finish(peerMessage) {
    if (this.outbound === null) throw new Error("start() must be called first");
    if (this.key !== null) throw new Error("finish() may only be called once");
    if (
      !(peerMessage instanceof Uint8Array) ||
      peerMessage.length !== PAKE_MESSAGE_BYTES ||
      peerMessage[0] !== this.peerRole.charCodeAt(0)
    ) {
      throw new WrongCodeError();
    }
    const inbound = peerMessage.subarray(1);
    let K;
    try {
      const elem = decodeElement(inbound);
      if (equalBytes(elem.toBytes(), this.outbound)) throw new Error("reflected message");
      const unblinding = this.role === SENDER ? N : M;
      K = times(elem.add(times(unblinding, -this.pwScalar)), this.xyScalar);
    } catch {
      throw new WrongCodeError();
    }
    const [xMsg, yMsg] =
      this.role === SENDER ? [this.outbound, inbound] : [inbound, this.outbound];
    this.key = sha256(
      concatBytes(sha256(this.password), sha256(ID_A), sha256(ID_B), xMsg, yMsg, K.toBytes()),
    );
    this.sealKey = hkdfKey(this.key, "seal " + this.role);
    this.openKey = hkdfKey(this.key, "seal " + this.peerRole);
    return this.key;
  }

  #requireKey() {
    if (this.key === null) throw new Error("finish() must be called first");
    return this.key;
  }

  /** Proof that we hold the key, for the peer. */
  confirmation() {
    return hkdfKey(this.#requireKey(), "confirm " + this.role);
  }

  /** Key material for the words both people may compare aloud (`--verify` on the CLI), under
   * its own label: showing the words reveals nothing about the sealing keys. */
  verificationBytes() {
    return hkdfKey(this.#requireKey(), "verify");
  }

  /** Check the peer's proof; a mismatch is a wrong code. */
  verifyConfirmation(peerConfirmation) {
    const expected = hkdfKey(this.#requireKey(), "confirm " + this.peerRole);
    if (!(peerConfirmation instanceof Uint8Array) || !equalBytes(expected, peerConfirmation)) {
      throw new WrongCodeError();
    }
  }
}

export function randomBytes(n) {
  const out = new Uint8Array(n);
  globalThis.crypto.getRandomValues(out);
  return out;
}
