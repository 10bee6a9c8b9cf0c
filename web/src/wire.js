// Running the data channel, as p2pshare/wire.py: frames in order to a handler, a Ping every
// 2 s, 20 s of silence means the peer is gone; stopping early tells the peer why (Abort) and
// gives it time to read that. Browser APIs only.

import { KNOWN_NAMES } from "./errors.js";
import { ProtocolError } from "./frames.js";
import { abortFrame, pingFrame } from "./transfer.js";
import { PeerLostError } from "./webrtc.js";

export const PEER_TIMEOUT_MS = 20_000;
export const PING_INTERVAL_MS = 2_000;
export const GOODBYE_WAIT_MS = 3_000;
const PROGRESS_EVERY_MS = 100;

/** Progress events at most every PROGRESS_EVERY_MS (and always the last one). */
export function throttled(onEvent) {
  let last = 0;
  return (done, total, force = false) => {
    const now = performance.now();
    if (force || now - last >= PROGRESS_EVERY_MS) {
      last = now;
      onEvent({ type: "progress", done, total });
    }
  };
}

/** Feeds incoming frames to `handle`, pings, notices a silent peer; `until` waits on state. */
export class Wire {
  constructor(link, handle) {
    this.link = link;
    this.handle = handle;
    this.closing = false;
    this.failure = null;
    this.wakers = [];
    this.stopped = false;
  }

  #wake() {
    const w = this.wakers;
    this.wakers = [];
    for (const f of w) f();
  }

  async #read() {
    while (!this.stopped) {
      const frame = await this.link.nextFrame(PEER_TIMEOUT_MS);
      if (frame === null) {
        if (this.closing) return;
        throw new PeerLostError("the connection to the other side was lost");
      }
      if (typeof frame === "string") throw new ProtocolError("expected a non-empty binary message");
      await this.handle(frame);
      this.#wake();
    }
  }

  /** Wait until `condition()` holds (re-checked after every frame); fails with the wire. */
  async until(condition) {
    while (!condition()) {
      if (this.failure) throw this.failure;
      await new Promise((resolve) => this.wakers.push(resolve));
    }
    if (this.failure) throw this.failure;
  }

  /** Run `main` while reading and pinging; the first failure wins. */
  async run(main) {
    const pinger = setInterval(() => {
      if (!this.closing && !this.link.lost) {
        try {
          this.link.send(pingFrame());
        } catch {
          // the reader reports the loss
        }
      }
    }, PING_INTERVAL_MS);
    const reader = this.#read().catch((e) => {
      this.failure = e;
      this.#wake();
      throw e;
    });
    try {
      return await Promise.race([main(), reader.then(() => new Promise(() => {}))]);
    } finally {
      this.stopped = true;
      clearInterval(pinger);
      reader.catch(() => {});
    }
  }
}

/** Tell the peer why we stop (unless it told us, or is gone), and let it read that. */
async function stopWith(link, error) {
  if (error.remote || error instanceof PeerLostError || error.name === "peer-lost" || link.lost) return;
  try {
    link.send(abortFrame(KNOWN_NAMES.has(error.name) ? error.name : "error", error.message));
  } catch {
    return;
  }
  await link.waitLost(GOODBYE_WAIT_MS);
}

export async function withPeer(link, body) {
  try {
    return await body();
  } catch (e) {
    await stopWith(link, e);
    throw e;
  } finally {
    link.close();
  }
}
