// The page: renders state and forwards clicks. No protocol logic here; everything the peer
// said is shown with textContent only (never as HTML).

/** What a user reads for each error name: errors.py's words (its docstrings), the same in the
 * CLI and the page; test/transfer_vectors.test.js checks them against tests/vectors/transfer.json. */
export const MESSAGES = {
  error: "Something went wrong.",
  "bad-code": "That is not a p2pshare code: codes look like 7-guitar-ocean.",
  "server-error": "Could not reach the rendezvous server, or it refused the request.",
  "no-such-code": "No such code: nobody is waiting on it (check for typos; codes are single use).",
  crowded: "Crowded: two other people are already using this code.",
  "wrong-code": "Wrong code (or someone tried to guess it): key confirmation failed. Nothing was sent; ask for a new code.",
  "peer-lost": "The other side left or stopped answering.",
  "peer-stopped": "The other side stopped the transfer.",
  "connect-failed": "Could not connect to the other side (no working network path was found).",
  declined: "The transfer was declined.",
  integrity: "Integrity failure: the data received does not match what was sent.",
  protocol: "The other side broke the p2pshare protocol.",
  "unsafe-name": "A file name that is not safe to write on the receiving side (rename it and send again).",
  "file-error": "A local file could not be read or written.",
  "disk-full": "Disk full: not enough free space to receive.",
  interrupted: "Interrupted.",
};

export function formatBytes(n) {
  if (n === null || n === undefined) return "unknown size";
  const units = ["bytes", "KB", "MB", "GB", "TB"];
  let v = n;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return u === 0 ? `${n} ${n === 1 ? "byte" : "bytes"}` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}

/** A sentence for an error: our words for known names, then the detail. */
export function describeError(error) {
  const base = MESSAGES[error?.name];
  const detail = String(error?.message ?? error);
  if (error?.local) return detail.charAt(0).toUpperCase() + detail.slice(1) + ".";
  if (!base) return detail;
  return (error.remote && error.name !== "peer-lost") || ["unsafe-name", "integrity", "protocol", "file-error"].includes(error.name)
    ? `${base} (${detail})`
    : base;
}

export class Ui {
  constructor(doc) {
    this.doc = doc;
    const $ = (id) => doc.getElementById(id);
    this.el = new Proxy({}, { get: (_, id) => $(id) });
    this.speed = { at: 0, bytes: 0, rate: 0 };
  }

  #set(id, text) {
    this.el[id].textContent = text;
  }

  start(title) {
    const el = this.el;
    el.status.hidden = false;
    el.receive.hidden = true;
    el.send.hidden = true;
    this.#set("status-title", title);
    for (const id of ["share", "offer", "progress-box", "text", "again", "verify"]) el[id].hidden = true;
    el.cancel.hidden = false;
    for (const id of ["path", "message", "error", "offer-summary", "progress-text", "verify-words"]) this.#set(id, "");
    el["offer-names"].replaceChildren();
    el.downloads.replaceChildren();
    el["receive-button"].disabled = true;
    el["send-button"].disabled = true;
    this.speed = { at: performance.now(), bytes: 0, rate: 0 };
  }

  message(text) {
    this.#set("message", text);
  }

  showCode(code, link) {
    this.el.share.hidden = false;
    this.#set("code-text", code);
    this.el["share-link"].href = link;
    this.#set("share-link", link);
    this.message("Waiting for the receiver…");
  }

  /** The words both people may compare aloud (the CLI shows them with --verify). */
  verify(words) {
    this.el.verify.hidden = false;
    this.#set("verify-words", words.join(" "));
  }

  connected(path, words) {
    this.el.share.hidden = true;
    this.#set("path", path ? `Connected: ${words[path.kind]}.` : "Connected.");
  }

  /** Show the offer; resolves true (Accept) or false (Decline). */
  askOffer(summary, formatSummary) {
    const el = this.el;
    el.offer.hidden = false;
    this.#set("offer-summary", formatSummary(summary));
    el["offer-names"].replaceChildren(
      ...summary.names.map((name) => {
        const li = this.doc.createElement("li");
        li.textContent = name;
        return li;
      }),
    );
    if (summary.more) {
      const li = this.doc.createElement("li");
      li.textContent = `and ${summary.more} more`;
      el["offer-names"].append(li);
    }
    this.message("");
    el.accept.focus();
    return new Promise((resolve) => {
      const answer = (yes) => {
        el.accept.onclick = el.decline.onclick = null;
        el.offer.hidden = true;
        resolve(yes);
      };
      el.accept.onclick = () => answer(true);
      el.decline.onclick = () => answer(false);
    });
  }

  progress(done, total, verb) {
    const el = this.el;
    el["progress-box"].hidden = false;
    const now = performance.now();
    const dt = (now - this.speed.at) / 1000;
    if (dt >= 0.5) {
      const rate = (done - this.speed.bytes) / dt;
      this.speed = { at: now, bytes: done, rate: this.speed.rate ? 0.5 * this.speed.rate + 0.5 * rate : rate };
    }
    if (total) el.progress.value = done / total;
    const speed = this.speed.rate > 0 ? `, ${formatBytes(this.speed.rate)}/s` : "";
    this.#set("progress-text", `${formatBytes(done)} of ${formatBytes(total)} ${verb}${speed}`);
  }

  download(name, blob, note) {
    const url = URL.createObjectURL(blob);
    const a = this.doc.createElement("a");
    a.href = url;
    a.download = name;
    a.textContent = name;
    const li = this.doc.createElement("li");
    li.append(a, ` (${note})`);
    this.el.downloads.append(li);
    a.click();
  }

  saved(name, note) {
    const li = this.doc.createElement("li");
    li.textContent = `${name} (${note})`;
    this.el.downloads.append(li);
  }

  text(text) {
    this.el.text.hidden = false;
    this.#set("text", text);
  }

  finished(text) {
    this.el.cancel.hidden = true;
    this.el.again.hidden = false;
    this.el.progress.value = 1;
    this.message(text);
    this.el.message.className = "ok";
  }

  failed(error) {
    this.el.cancel.hidden = true;
    this.el.offer.hidden = true;
    this.el.again.hidden = false;
    this.el.share.hidden = true;
    this.message("");
    this.#set("error", describeError(error));
  }

  reset() {
    const el = this.el;
    el.status.hidden = true;
    el.receive.hidden = false;
    el.send.hidden = false;
    el["receive-button"].disabled = false;
    el["send-button"].disabled = false;
    el.message.className = "";
  }

  chosen(files) {
    const total = files.reduce((n, f) => n + f.size, 0);
    this.#set("chosen", files.length ? `${files.length} file${files.length === 1 ? "" : "s"}, ${formatBytes(total)}` : "");
  }
}
