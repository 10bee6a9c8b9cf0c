// One RTCPeerConnection with one reliable, ordered data channel labelled "p2pshare", as
// p2pshare/webrtc.py: the whole SDP with its candidates (no trickle), messages at most the
// peer's a=max-message-size and never above 256 KiB, back-pressure on bufferedAmount, and the
// path ICE chose read from getStats. Browser APIs only; no DOM.

export const CHANNEL_LABEL = "p2pshare";
export const PREFERRED_MESSAGE_BYTES = 64 * 1024;
export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024;
export const LARGEST_MESSAGE_BYTES = 256 * 1024;
const BUFFER_HIGH_BYTES = 1024 * 1024;
const BUFFER_LOW_BYTES = 256 * 1024;
const GATHER_TIMEOUT_MS = 10_000;

export class ConnectError extends Error {
  constructor(message = "could not connect to the other side (no working network path was found)") {
    super(message);
    this.name = "connect-failed";
  }
}

export class PeerLostError extends Error {
  constructor(message = "the other side left or stopped answering") {
    super(message);
    this.name = "peer-lost";
  }
}

export const MIN_PEER_MESSAGE_BYTES = 64 * 1024;
const SDP_REQUIRED = ["m=application ", "a=fingerprint:", "a=ice-ufrag:", "a=ice-pwd:"];

function protocolError(message) {
  return Object.assign(new Error(message), { name: "protocol" });
}

/**
 * Check a peer's description before the browser parses it (webrtc.py's check_remote_sdp);
 * returns the largest message we may send: its a=max-message-size (RFC 8841: 64 KiB when
 * absent; 0 means any size, and we send 64 KiB), at most 256 KiB (what Chromium and the CLI
 * advertise: fewer, larger messages cost the page less per byte), and refused below 64 KiB.
 */
export function checkRemoteSdp(sdp, kind) {
  const missing = SDP_REQUIRED.find((field) => !sdp.includes(field));
  if (missing) {
    throw protocolError(`the other side sent an unusable ${kind}: no ${missing.replace(/[ :]+$/, "")} line`);
  }
  const m = /^a=max-message-size:(\d+)\s*$/m.exec(sdp);
  if (!m) return DEFAULT_MAX_MESSAGE_BYTES;
  const n = Number(m[1].slice(0, 12));
  if (n === 0) return PREFERRED_MESSAGE_BYTES;
  if (n < MIN_PEER_MESSAGE_BYTES) {
    throw protocolError(
      `the other side's ${kind} allows messages of only ${n} bytes (p2pshare needs ${MIN_PEER_MESSAGE_BYTES})`,
    );
  }
  return Math.min(n, LARGEST_MESSAGE_BYTES);
}

/**
 * True for an address that never leaves a site: RFC 1918, link-local, loopback, IPv6 ULA and
 * link-local (as p2pshare/webrtc.py's _NEAR).
 */
export function isNearAddress(address) {
  const a = String(address ?? "").toLowerCase().split("%")[0];
  const v4 = a.match(/^(\d+)\.(\d+)\.\d+\.\d+$/);
  if (v4) {
    const [x, y] = [Number(v4[1]), Number(v4[2])];
    return x === 10 || x === 127 || (x === 172 && y >= 16 && y <= 31) || (x === 192 && y === 168) || (x === 169 && y === 254);
  }
  if (!a.includes(":")) return false; // an mDNS name, or nothing
  return a === "::1" || /^f[cd][0-9a-f]{0,2}:/.test(a) || /^fe[89ab][0-9a-f]?:/.test(a);
}

/**
 * "lan", "nat" or "relay" for the selected pair, as p2pshare/webrtc.py's path_kind: a
 * peer-reflexive candidate on a local address is a peer on this machine or LAN (learned from
 * its checks), not a NAT.
 */
export function pathKind(localType, remoteType, localAddress = null, remoteAddress = null) {
  if (localType === "relay" || remoteType === "relay") return "relay";
  for (const [type, address] of [[localType, localAddress], [remoteType, remoteAddress]]) {
    if (type === "srflx" || (type === "prflx" && !isNearAddress(address))) return "nat";
  }
  return "lan";
}

export const PATH_WORDS = {
  lan: "direct, on the local network",
  nat: "direct, through NAT",
  relay: "relayed through TURN",
};

export class PeerLink {
  constructor(iceServers, RTC = globalThis.RTCPeerConnection) {
    // Only the servers the rendezvous server named: no default STUN, no other host.
    this.pc = new RTC({ iceServers });
    this.channel = null;
    this.incoming = [];
    this.waiter = null;
    this.lost = false;
    this.maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES;
    this.onChange = () => {};
  }

  #adopt(channel) {
    this.channel = channel;
    channel.binaryType = "arraybuffer";
    channel.bufferedAmountLowThreshold = BUFFER_LOW_BYTES;
    channel.onmessage = (e) => {
      this.#push(typeof e.data === "string" ? e.data : new Uint8Array(e.data));
    };
    channel.onclose = () => {
      this.lost = true;
      this.#push(null);
    };
  }

  #push(item) {
    this.incoming.push(item);
    const w = this.waiter;
    this.waiter = null;
    if (w) w();
    this.onChange();
  }

  /** Wait for the next incoming frame (null: the channel closed). */
  async nextFrame(timeoutMs) {
    while (!this.incoming.length) {
      const arrived = new Promise((resolve) => {
        this.waiter = resolve;
      });
      let timer;
      const timeout = new Promise((resolve) => {
        timer = setTimeout(() => resolve("timeout"), timeoutMs);
      });
      const result = await Promise.race([arrived, timeout]);
      clearTimeout(timer);
      if (result === "timeout" && !this.incoming.length) {
        throw new PeerLostError(`the other side stopped answering (nothing for ${timeoutMs / 1000} s)`);
      }
    }
    return this.incoming.shift();
  }

  async #gathered() {
    const pc = this.pc;
    if (pc.iceGatheringState === "complete") return;
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, GATHER_TIMEOUT_MS);
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  }

  async createOffer() {
    this.#adopt(this.pc.createDataChannel(CHANNEL_LABEL, { ordered: true }));
    await this.pc.setLocalDescription(await this.pc.createOffer());
    await this.#gathered();
    return this.pc.localDescription.sdp;
  }

  async acceptOffer(sdp) {
    this.channelArrived = new Promise((resolve) => {
      this.pc.ondatachannel = (e) => {
        if (e.channel.label === CHANNEL_LABEL && this.channel === null) {
          this.#adopt(e.channel);
          resolve();
        }
      };
    });
    this.maxMessageBytes = checkRemoteSdp(sdp, "offer");
    await this.#setRemote("offer", sdp);
    await this.pc.setLocalDescription(await this.pc.createAnswer());
    await this.#gathered();
    return this.pc.localDescription.sdp;
  }

  async acceptAnswer(sdp) {
    this.maxMessageBytes = checkRemoteSdp(sdp, "answer");
    await this.#setRemote("answer", sdp);
  }

  async #setRemote(type, sdp) {
    try {
      await this.pc.setRemoteDescription({ type, sdp });
    } catch (e) {
      throw protocolError(`the other side sent an unusable ${type}: ${String(e?.message ?? e).slice(0, 80)}`);
    }
  }

  /** Wait until the data channel is open; say which step failed on timeout. */
  async waitOpen(timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    const left = () => Math.max(0, deadline - Date.now());
    const failed = new Promise((_, reject) => {
      this.pc.addEventListener("connectionstatechange", () => {
        if (this.pc.connectionState === "failed") reject(new ConnectError());
      });
    });
    const timeout = (what) =>
      new Promise((_, reject) => setTimeout(() => reject(new ConnectError(`could not connect to the other side: ${what}`)), left()));
    if (this.channel === null) {
      await Promise.race([this.channelArrived, failed, timeout("no data channel in time")]);
    }
    if (this.channel.readyState !== "open") {
      const opened = new Promise((resolve) => this.channel.addEventListener("open", resolve));
      const state = this.pc.iceConnectionState;
      await Promise.race([opened, failed, timeout(`ICE ${state}, no working network path in time`)]);
    }
  }

  send(frame) {
    if (this.channel === null || this.channel.readyState !== "open") {
      throw new PeerLostError("the connection to the other side was lost");
    }
    this.channel.send(frame);
  }

  /** Wait while more than BUFFER_HIGH_BYTES are queued, until BUFFER_LOW_BYTES. */
  async drain() {
    const ch = this.channel;
    if (ch.bufferedAmount <= BUFFER_HIGH_BYTES) return;
    await new Promise((resolve) => {
      const done = () => {
        ch.removeEventListener("bufferedamountlow", done);
        ch.removeEventListener("close", done);
        resolve();
      };
      ch.addEventListener("bufferedamountlow", done);
      ch.addEventListener("close", done);
    });
  }

  /** Wait up to `timeoutMs` for the peer to close the channel. */
  async waitLost(timeoutMs) {
    const until = Date.now() + timeoutMs;
    while (!this.lost && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** The candidate pair ICE chose: {kind, local, remote} or null. */
  async path() {
    try {
      const stats = await this.pc.getStats();
      let pair = null;
      stats.forEach((s) => {
        if (s.type === "transport" && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
      });
      if (pair === null) {
        stats.forEach((s) => {
          if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair ??= s;
        });
      }
      if (pair === null) return null;
      const local = stats.get(pair.localCandidateId);
      const remote = stats.get(pair.remoteCandidateId);
      return {
        kind: pathKind(local?.candidateType, remote?.candidateType, local?.address, remote?.address),
        local: `${local?.address ?? "?"}:${local?.port ?? "?"}`,
        remote: `${remote?.address ?? "?"}:${remote?.port ?? "?"}`,
      };
    } catch {
      return null;
    }
  }

  close() {
    try {
      this.channel?.close();
      this.pc.close();
    } catch {
      // already closed
    }
    this.lost = true;
  }
}
