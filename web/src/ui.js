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
  "server-refused":
    "The rendezvous server refuses service; its operator's message says why. Try again later, use another server (--server), or stay on the local network (P2PSHARE_PUBLIC=0).",
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

const IEC_UNITS = ["KiB", "MiB", "GiB", "TiB"];

/** `512 bytes`, `1.0 KiB`, `38.1 MiB`: IEC units, one decimal, as the CLI's format_size. */
export function formatBytes(n) {
  if (n === null || n === undefined) return "size unknown";
  if (n < 1024) return `${Math.floor(n)} ${Math.floor(n) === 1 ? "byte" : "bytes"}`;
  let v = n;
  for (const unit of IEC_UNITS) {
    v /= 1024;
    if (v < 1024 || unit === IEC_UNITS[IEC_UNITS.length - 1]) return `${v.toFixed(1)} ${unit}`;
  }
  return `${n} bytes`;
}

/** `3.2 MiB/s`, as the CLI's format_rate. */
export function formatRate(bytesPerSecond) {
  return formatBytes(bytesPerSecond).replace("bytes", "B").replace("byte", "B") + "/s";
}

/** `45 s`, `2 min 10 s`, `1 h 5 min`: a time left, rounded up. */
export function formatDuration(seconds) {
  const s = Math.max(1, Math.ceil(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min${s % 60 ? ` ${s % 60} s` : ""}`;
  const m = Math.round(s / 60);
  return `${Math.floor(m / 60)} h${m % 60 ? ` ${m % 60} min` : ""}`;
}

/** A sentence for an error: our words for known names, then the detail. */
export function describeError(error) {
  const base = MESSAGES[error?.name];
  const detail = String(error?.message ?? error);
  if (error?.local) return detail.charAt(0).toUpperCase() + detail.slice(1) + ".";
  if (error?.name === "server-error" && /^cannot reach|did not answer/.test(detail)) return unreachable(detail);
  if (!base) return detail;
  return (error.remote && error.name !== "peer-lost") || ["unsafe-name", "integrity", "protocol", "file-error"].includes(error.name)
    ? `${base} (${detail})`
    : base;
}

/** The rendezvous server is gone: in a link from `p2pshare send` it is the sender's own. */
function unreachable(detail) {
  const at = detail.match(/ at (\S+)$/);
  return (
    `Could not reach the rendezvous server${at ? ` at ${at[1]}` : ""}. If the link came from ` +
    "someone's p2pshare command, their computer has stopped sharing (the command ended, or " +
    "the computer went to sleep or changed network): ask them to send again and use the new " +
    "link. Otherwise check this device's network connection."
  );
}

/** The command a p2pshare user runs to receive from this page. */
export function receiveCommand(server, code) {
  return `p2pshare receive --server ${server.replace(/\/$/, "")} ${code}`;
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
    el.notice.hidden = true;
    this.#set("status-title", title);
    for (const id of ["share", "offer", "progress-box", "text-box", "again", "verify", "words-check", "offer-zip"]) el[id].hidden = true;
    el.cancel.hidden = false;
    for (const id of ["path", "message", "error", "offer-summary", "progress-text", "verify-words", "offer-zip"]) this.#set(id, "");
    el["offer-names"].replaceChildren();
    el.downloads.replaceChildren();
    el["receive-button"].disabled = true;
    el["send-button"].disabled = true;
    el.message.className = "";
    this.speed = { at: performance.now(), bytes: 0, rate: 0 };
  }

  message(text) {
    this.#set("message", text);
  }

  /** A line at the top of the start page (what happened before a reload). */
  notice(text) {
    this.el.notice.hidden = !text;
    this.#set("notice", text);
  }

  /** A mistake in the code field, said next to it; `fix` offers a corrected code. */
  codeProblem(text, fix = null) {
    const el = this.el;
    el["code-problem"].hidden = !text;
    this.#set("code-problem-text", text);
    el.code.setAttribute("aria-invalid", text ? "true" : "false");
    el["code-choices"].hidden = !fix;
    if (fix) this.#set("code-fix", `Use ${fix}`);
    if (text) el.code.focus();
  }

  /** A mistake in the send form (nothing chosen, a name receivers refuse), next to Send. */
  sendProblem(text) {
    this.el["send-problem"].hidden = !text;
    this.#set("send-problem", text);
  }

  /** The code, the link (wrapping after its host, never inside the code), its QR code and
   * the command for a p2pshare user. `qr`: rows of booleans with their border. */
  showCode(code, link, command, qr) {
    const el = this.el;
    el.share.hidden = false;
    this.#set("code-text", code);
    const a = el["share-link"];
    a.href = link;
    const split = link.lastIndexOf("#");
    const tail = this.doc.createElement("span");
    tail.className = "nowrap";
    tail.textContent = link.slice(split);
    a.replaceChildren(link.slice(0, split), this.doc.createElement("wbr"), tail);
    // The command breaks between its words and inside the long address, never in the code.
    const words = command.split(" ");
    const codeSpan = this.doc.createElement("span");
    codeSpan.className = "nowrap";
    codeSpan.textContent = words.pop();
    this.el["cli-command"].replaceChildren(`${words.join(" ")} `, codeSpan);
    this.#drawQr(qr);
    this.message("Waiting for the receiver…");
  }

  #drawQr(rows) {
    const svg = this.el["qr-image"];
    svg.setAttribute("viewBox", `0 0 ${rows.length} ${rows.length}`);
    svg.setAttribute("shape-rendering", "crispEdges");
    let d = "";
    rows.forEach((row, y) => {
      row.forEach((dark, x) => {
        if (dark) d += `M${x} ${y}h1v1h-1z`;
      });
    });
    const path = this.doc.createElementNS("http://www.w3.org/2000/svg", "path");
    path.setAttribute("d", d);
    svg.replaceChildren(path);
  }

  /** The system share sheet's button, where the browser has one. */
  offerShare(onShare) {
    const button = this.el["share-button"];
    button.hidden = false;
    button.onclick = onShare;
  }

  /** Copy the text of element `id`; say so on the button and to screen readers. */
  async copy(id, button) {
    const text = this.el[id].textContent;
    let ok = false;
    try {
      await navigator.clipboard.writeText(text);
      ok = true;
    } catch {
      ok = this.#copyBySelection(id);
    }
    const before = button.dataset.label ?? button.textContent;
    button.dataset.label = before;
    button.textContent = ok ? "Copied" : "Select and copy";
    this.#set("copied", ok ? "Copied to the clipboard." : "Copying was refused: select the text and copy it.");
    setTimeout(() => {
      button.textContent = before;
    }, 2000);
  }

  /** Plain-http pages (a LAN address) have no clipboard API: select and copy. */
  #copyBySelection(id) {
    const range = this.doc.createRange();
    range.selectNodeContents(this.el[id]);
    const selection = this.doc.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    try {
      return this.doc.execCommand("copy");
    } catch {
      return false;
    }
  }

  /** The words both people may compare aloud (the CLI shows them with --verify). */
  verify(words) {
    this.el.verify.hidden = false;
    this.#set("verify-words", words.join(" "));
  }

  /** The sender's question once the channel is open: does the other side show the same
   * words? Resolves true (send) or false (stop). The focus goes to the question, not to a
   * button: a stray Enter never confirms (as the CLI's [y/N] defaults to no). */
  askWords() {
    const el = this.el;
    el["words-check"].hidden = false;
    this.message("");
    el["words-question"].focus();
    return new Promise((resolve) => {
      const answer = (same) => {
        el["words-same"].onclick = el["words-differ"].onclick = null;
        el["words-check"].hidden = true;
        resolve(same);
      };
      el["words-same"].onclick = () => answer(true);
      el["words-differ"].onclick = () => answer(false);
    });
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
    el["offer-zip"].hidden = !summary.asZip;
    const kept = summary.dirs ? ", folders and all" : "";
    this.#set("offer-zip", summary.asZip ? `They arrive as one ZIP file, ${summary.zipName}${kept}.` : "");
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
    const parts = [`${formatBytes(done)} of ${formatBytes(total)} ${verb}`];
    if (this.speed.rate > 0) {
      parts.push(formatRate(this.speed.rate));
      if (total && done < total) parts.push(`${formatDuration((total - done) / this.speed.rate)} left`);
    }
    this.#set("progress-text", parts.join(", "));
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
    this.el["text-box"].hidden = false;
    this.#set("text", text);
  }

  finished(text) {
    this.el.cancel.hidden = true;
    this.el.again.hidden = false;
    this.el.progress.value = 1;
    this.message(text);
    this.el.message.className = "ok";
  }

  /** The end of a transfer that is nobody's failure (this side declined): said plainly. */
  ended(text) {
    const el = this.el;
    el.cancel.hidden = true;
    el.offer.hidden = true;
    el["words-check"].hidden = true;
    el.share.hidden = true;
    el.again.hidden = false;
    this.message(text);
  }

  failed(error) {
    this.el.cancel.hidden = true;
    this.el.offer.hidden = true;
    this.el["words-check"].hidden = true;
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

  /** What is chosen: "3 files" at once, then their total size. A File's first `size` is a
   * synchronous call to the browser (seconds for a folder of 10,000 files in one task), so the
   * total is summed in slices with the event loop run in between. */
  async chosen(files) {
    const token = {};
    this.choosing = token;
    if (files.length !== 1) this.#set("chosen", files.length ? `${files.length} files` : "");
    if (files.length) this.sendProblem("");
    let total = 0;
    let since = performance.now();
    for (const f of files) {
      total += f.size;
      if (performance.now() - since >= 10) {
        await new Promise((resolve) => setTimeout(resolve, 0));
        if (this.choosing !== token) return; // chosen again meanwhile
        since = performance.now();
      }
    }
    if (files.length === 1) this.#set("chosen", `${files[0].p2psharePath ?? (files[0].webkitRelativePath || files[0].name)}, ${formatBytes(total)}`);
    else if (files.length) this.#set("chosen", `${files.length} files, ${formatBytes(total)}`);
  }
}
