// Errors shared by the I/O modules, with the stable names of p2pshare/errors.py (what an Abort
// carries and what the page explains in words). Errors owned by one module stay there
// (ProtocolError in frames.js, WrongCodeError in pake.js, PeerError in seal.js, ...).

/** The names this side may send in an Abort (anything else goes out as "error"). */
export const KNOWN_NAMES = new Set([
  "bad-code", "server-error", "no-such-code", "crowded", "server-refused", "wrong-code",
  "peer-lost",
  "connect-failed", "declined", "integrity", "protocol", "unsafe-name", "file-error",
  "interrupted", "disk-full",
]);

export class DeclinedError extends Error {
  constructor(message = "declined by the receiver") {
    super(message);
    this.name = "declined";
  }
}

export class InterruptedError extends Error {
  constructor(message = "interrupted") {
    super(message);
    this.name = "interrupted";
  }
}

/** A local file could not be read, or the browser could not keep a received one. */
export class StorageError extends Error {
  constructor(message) {
    super(message);
    this.name = "file-error";
  }
}
