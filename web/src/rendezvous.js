// Client side of the rendezvous protocol (docs/protocol.md part 1), over a browser WebSocket.
// Bodies are bytes here and base64url on the wire. Server errors become errors with the same
// stable names as p2pshare/errors.py. No DOM.

import { fromBase64Url, toBase64Url } from "./bytes.js";
import { isObject, parse } from "./json.js";
import { printable } from "./names.js";

export const SUBPROTOCOL = "p2pshare.v1";
export const MAX_BODY_BYTES = 48 * 1024;
export const CONNECT_TIMEOUT_MS = 10_000;

export class SignallingError extends Error {
  constructor(message, name = "server-error") {
    super(message);
    this.name = name;
  }
}

const ERROR_NAMES = { "no-such-code": "no-such-code", expired: "no-such-code", crowded: "crowded" };
const FRIENDLY = {
  "no-such-code": "no such code: nobody is waiting on it (check for typos; codes are single use)",
  crowded: "crowded: two other people are already using this code",
};

export const MAX_FRAME_BYTES = 256 * 1024;
export const MAX_ICE_SERVERS = 8;
export const MAX_ICE_URLS = 8;
export const MAX_ICE_FIELD_CHARS = 512;
const ICE_URL_RE = /^(?:stuns?|(turns?)):[A-Za-z0-9.-]{1,253}(?::([0-9]{1,5}))?(?:\?transport=(udp|tcp))?$/;
const NAMEPLATE_RE = /^[1-9][0-9]{0,5}$/;

/**
 * The `ice_servers` of a welcome, validated as rendezvous.py does: RTCIceServer objects whose
 * `urls` is a STUN/TURN URL or a list of 1 to 8, and string `username`/`credential`. The
 * server is untrusted: anything else is a server error.
 */
export function checkIceServers(value) {
  const bad = () => new SignallingError("the rendezvous server sent invalid ICE servers");
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || value.length > MAX_ICE_SERVERS) throw bad();
  return value.map((entry) => {
    if (entry === null || typeof entry !== "object" || Array.isArray(entry)) throw bad();
    const urls = typeof entry.urls === "string" ? [entry.urls] : entry.urls;
    if (!Array.isArray(urls) || urls.length < 1 || urls.length > MAX_ICE_URLS) throw bad();
    for (const url of urls) {
      const m = typeof url === "string" ? ICE_URL_RE.exec(url) : null;
      if (!m || (m[3] && !m[1]) || (m[2] !== undefined && !(Number(m[2]) >= 1 && Number(m[2]) <= 65535))) {
        throw bad();
      }
    }
    const server = { urls: [...urls] };
    for (const name of ["username", "credential"]) {
      const field = entry[name];
      if (field === undefined || field === null) continue;
      if (typeof field !== "string" || [...field].length > MAX_ICE_FIELD_CHARS) throw bad();
      server[name] = field;
    }
    return server;
  });
}

export function checkNameplate(value) {
  if (typeof value !== "string" || !NAMEPLATE_RE.test(value)) {
    throw new SignallingError("the rendezvous server sent an invalid nameplate");
  }
  return value;
}

/** The server's URL for a page it served: same host and port, ws: or wss:. */
export function serverUrlFor(location) {
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/";
}

export class RendezvousClient {
  constructor(ws) {
    this.ws = ws;
    this.iceServers = [];
    this.paired = false;
    this.queue = [];
    this.waiters = [];
    this.closedError = null;
    ws.binaryType = "arraybuffer";
    ws.onmessage = (e) => this.#push({ data: e.data });
    ws.onclose = (e) => {
      // After pairing the server closes us with 4007 when the peer vanished and 1000 when it
      // said bye; any other close is the server's doing.
      this.closedError ??=
        this.paired && (e.code === 4007 || e.code === 1000)
          ? new SignallingError("the other side left before the connection was set up", "peer-lost")
          : new SignallingError(
              `the rendezvous server closed the connection: ${printable(e.reason || "closed")}`,
            );
      this.#push({ closed: true });
    };
  }

  /** Connect and read the welcome (with the ICE servers to use). */
  static async connect(url, WebSocketImpl = globalThis.WebSocket) {
    let ws;
    try {
      ws = new WebSocketImpl(url, [SUBPROTOCOL]);
    } catch {
      throw new SignallingError(`not a rendezvous server address: ${printable(url)}`);
    }
    const client = new RendezvousClient(ws);
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new SignallingError("the rendezvous server did not answer")), CONNECT_TIMEOUT_MS);
      ws.onopen = () => {
        clearTimeout(timer);
        resolve();
      };
      ws.onerror = () => {
        clearTimeout(timer);
        reject(new SignallingError(`cannot reach the rendezvous server at ${printable(url)}`));
      };
    });
    const welcome = await client.next(CONNECT_TIMEOUT_MS);
    if (welcome.type !== "welcome") {
      throw new SignallingError("the rendezvous server did not greet us; is it p2pshare-signal?");
    }
    client.iceServers = checkIceServers(welcome.ice_servers);
    return client;
  }

  #push(item) {
    const waiter = this.waiters.shift();
    if (waiter) waiter(item);
    else this.queue.push(item);
  }

  #take(timeoutMs) {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    return new Promise((resolve, reject) => {
      let timer = null;
      const waiter = (item) => {
        if (timer !== null) clearTimeout(timer);
        resolve(item);
      };
      this.waiters.push(waiter);
      if (timeoutMs != null) {
        timer = setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          reject(new SignallingError("the other side did not answer in time", "peer-lost"));
        }, timeoutMs);
      }
    });
  }

  /** The next server message; errors and closes become exceptions. */
  async next(timeoutMs = null) {
    const item = await this.#take(timeoutMs);
    if (item.closed) {
      this.queue.unshift(item); // every later read fails the same way
      throw this.closedError;
    }
    let obj = null;
    try {
      obj = typeof item.data === "string" && item.data.length <= MAX_FRAME_BYTES ? parse(item.data) : null;
    } catch {
      obj = null;
    }
    if (!isObject(obj)) throw new SignallingError("the rendezvous server sent something unexpected");
    if (obj.type === "error") {
      const name = ERROR_NAMES[obj.code] ?? "server-error";
      this.closedError = new SignallingError(
        FRIENDLY[name] ?? `rendezvous server: ${printable(String(obj.message ?? ""))}`,
        name,
      );
      throw this.closedError;
    }
    if (obj.type === "peer-left") {
      this.closedError = new SignallingError("the other side left before the connection was set up", "peer-lost");
      throw this.closedError;
    }
    return obj;
  }

  #send(obj) {
    if (this.ws.readyState !== 1) throw this.closedError ?? new SignallingError("the rendezvous connection is closed");
    this.ws.send(JSON.stringify(obj));
  }

  async #request(obj, expect) {
    this.#send(obj);
    const reply = await this.next(CONNECT_TIMEOUT_MS);
    if (reply.type !== expect) throw new SignallingError("the rendezvous server sent something unexpected");
    return reply;
  }

  async allocate() {
    const reply = await this.#request({ type: "allocate" }, "allocated");
    return checkNameplate(reply.nameplate);
  }

  async claim(nameplate, create = false) {
    const msg = { type: "claim", nameplate };
    if (create) msg.create = true;
    const reply = await this.#request(msg, "claimed");
    if (reply.nameplate !== nameplate) throw new SignallingError("the rendezvous server claimed another nameplate");
  }

  /** Wait for `paired`: the sender as long as the room lives; a claimer is owed it at once,
   * so a server that does not send it within the timeout is a server error. */
  async waitPaired(timeoutMs = null) {
    if (this.paired) return;
    let reply;
    try {
      reply = await this.next(timeoutMs);
    } catch (e) {
      if (e.name === "peer-lost" && timeoutMs !== null) {
        throw new SignallingError("the rendezvous server did not pair us in time");
      }
      throw e;
    }
    if (reply.type !== "paired") throw new SignallingError("the rendezvous server sent something unexpected");
    this.paired = true;
  }

  send(body) {
    if (body.length > MAX_BODY_BYTES) throw new SignallingError("signalling message too large for the rendezvous server");
    this.#send({ type: "send", body: toBase64Url(body) });
  }

  async receive(timeoutMs) {
    const reply = await this.next(timeoutMs);
    if (reply.type !== "message" || typeof reply.body !== "string") {
      throw new SignallingError("the rendezvous server sent something unexpected");
    }
    try {
      return fromBase64Url(reply.body);
    } catch {
      throw new SignallingError("a relayed message was not valid base64");
    }
  }

  /** Say bye and close: the server drops the room. */
  close() {
    try {
      if (this.ws.readyState === 1) this.ws.send('{"type":"bye"}');
      this.ws.close(1000);
    } catch {
      // already closed
    }
  }
}
