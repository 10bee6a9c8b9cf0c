// Wires the page to the session: reads the code from the URL fragment (it never reaches the
// server: browsers do not send fragments), runs a send or a receive, renders through ui.js.

import encodeQR from "@paulmillr/qr";

import wordlistText from "../../p2pshare/wordlist.txt";

import { closestWord, parseCode, unknownWords, verificationWords, wordsFrom } from "./codes.js";
import { setUpStreaming } from "./download.js";
import { startHashing } from "./hashing.js";
import { serverUrlFor } from "./rendezvous.js";
import { checkOwnOfferYielding, entriesForYielding } from "./sender.js";
import { abortFrame } from "./transfer.js";
import { receiveFiles, sendFiles } from "./session.js";
import { describeError, formatBytes, receiveCommand, Ui } from "./ui.js";
import { PATH_WORDS } from "./webrtc.js";

const WORDLIST = wordsFrom(wordlistText);
const NOTICE_KEY = "p2pshare-notice";
const ui = new Ui(document);
const server = serverUrlFor(location);
let chosen = [];
let running = null;

function summaryText(s) {
  if (s.isText) return "The sender offers a text message.";
  const parts = [`${s.files} file${s.files === 1 ? "" : "s"}`];
  if (s.dirs) parts.push(`${s.dirs} folder${s.dirs === 1 ? "" : "s"}`);
  return `The sender offers ${parts.join(" and ")}, ${formatBytes(s.totalBytes)} in total:`;
}

async function run(title, body, declined = "You declined: nothing was received, and the sender was told.") {
  if (running) return;
  const abort = { link: null, cancelled: false };
  running = abort;
  ui.start(title);
  try {
    await body(abort);
  } catch (error) {
    if (abort.cancelled) return; // the page is reloading; Cancel said what happened
    if (error?.name === "declined" && !error.remote) {
      ui.ended(declined);
    } else {
      ui.failed(error);
      console.warn("p2pshare:", error);
    }
  } finally {
    running = null;
  }
}

function receive(codeText) {
  return run("Receiving", async (abort) => {
    ui.message("Connecting…");
    let note = "";
    const result = await receiveFiles(codeText, {
      server,
      abort,
      confirm: (summary) => ui.askOffer(summary, summaryText),
      onEvent(e) {
        if (e.type === "verify") ui.verify(verificationWords(e.keyMaterial, WORDLIST));
        else if (e.type === "connected") {
          ui.connected(e.path, PATH_WORDS);
          ui.message("Waiting for the offer…");
        } else if (e.type === "notice") ui.message(e.message);
        else if (e.type === "progress") ui.progress(e.done, e.total, "received");
        else if (e.type === "file") {
          note = e.sha256 ? `${formatBytes(e.size)}, SHA-256 verified` : `${formatBytes(e.size)}, every file SHA-256 verified`;
          if (e.blob) ui.download(e.name, e.blob, note);
          else ui.saved(e.name, `${note}, saved by the browser as it arrived`);
        } else if (e.type === "text") ui.text(e.text);
      },
    });
    ui.finished(`Done: ${formatBytes(result.bytes)} received and verified in ${result.seconds.toFixed(1)} s.`);
  });
}

function send(files) {
  return run("Sending", async (abort) => {
    ui.message("Connecting to the rendezvous server…");
    const result = await sendFiles(files, {
      server,
      wordlist: WORDLIST,
      abort,
      // The page always shows the words, so it always asks before anything is sent.
      async confirmWords() {
        const same = await ui.askWords();
        if (same) ui.message("Waiting for the receiver to accept…");
        return same;
      },
      onEvent(e) {
        if (e.type === "code") showCode(e.code);
        else if (e.type === "verify") ui.verify(verificationWords(e.keyMaterial, WORDLIST));
        else if (e.type === "connected") ui.connected(e.path, PATH_WORDS);
        else if (e.type === "progress") {
          ui.progress(e.done, e.total, "sent");
          ui.message("");
        }
      },
    });
    ui.finished(`Done: ${formatBytes(result.bytes)} sent; the receiver verified every file.`);
  }, "You stopped because the words differ: nothing was sent, and the receiver was told. Someone may be in the middle: send again with a new code, and compare the words again.");
}

function showCode(code) {
  const link = `${location.origin}/#${code}`;
  ui.showCode(code, link, receiveCommand(server, code), encodeQR(link, "raw", { ecc: "medium", border: 2 }));
  // The system share sheet (phones, some desktops); it needs a secure context.
  if (typeof navigator.share === "function" && navigator.canShare?.({ url: link }) !== false) {
    ui.offerShare(() => navigator.share({ title: "p2pshare", text: `p2pshare code ${code}`, url: link }).catch(() => {}));
  }
}

// -- the forms: mistakes are said next to the field, before anything is spent ---------------

const el = ui.el;
let questioned = null; // the code text whose unknown words the user was asked about

/** Check a typed code as the CLI does: a word not in the list is questioned before the code
 * is used (a wrong code burns the sender's), with the nearest word offered. */
function checkedCode(text) {
  let code;
  try {
    code = parseCode(text);
  } catch (error) {
    ui.codeProblem(describeError(error));
    return null;
  }
  const unknown = unknownWords(code, WORDLIST);
  if (unknown.length && questioned !== code.text) {
    questioned = code.text;
    const fixes = new Map(unknown.map((w) => [w, closestWord(w, WORDLIST)]));
    const fixed = unknown.every((w) => fixes.get(w))
      ? [code.nameplate, ...code.words.map((w) => fixes.get(w) ?? w)].join("-")
      : null;
    const w = unknown[0];
    const said =
      unknown.length === 1
        ? `"${w}" is not one of the code words${fixes.get(w) ? `: did you mean "${fixes.get(w)}"?` : "."}`
        : `${unknown.map((u) => (fixes.get(u) ? `"${u}" (did you mean "${fixes.get(u)}"?)` : `"${u}"`)).join(", ")} are not code words.`;
    ui.codeProblem(
      `${said} A wrong code cancels the sender's, so check it before connecting.`,
      fixed,
    );
    return null;
  }
  ui.codeProblem("");
  return code.text;
}

function startReceive(text) {
  const code = checkedCode(text);
  if (code) receive(code);
}

el["receive-form"].addEventListener("submit", (e) => {
  e.preventDefault();
  startReceive(el.code.value);
});
el["code-fix"].addEventListener("click", () => {
  el.code.value = el["code-fix"].textContent.replace(/^Use /, "");
  startReceive(el.code.value);
});
el["code-anyway"].addEventListener("click", () => {
  questioned = parseCode(el.code.value).text;
  startReceive(el.code.value);
});
el.code.addEventListener("input", () => ui.codeProblem(""));

el["send-form"].addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!chosen.length) {
    ui.sendProblem("Choose files (or a folder) to send first.");
    return;
  }
  const files = chosen; // what was checked is what is sent, whatever is chosen meanwhile
  try {
    await checkOwnOfferYielding((await entriesForYielding(files)).map((s) => s.entry));
  } catch (error) {
    ui.sendProblem(describeError(error));
    return;
  }
  ui.sendProblem("");
  send(files);
});
for (const id of ["files", "folder"]) {
  el[id].addEventListener("change", () => {
    chosen = [...el[id].files];
    el[id === "files" ? "folder" : "files"].value = "";
    ui.chosen(chosen);
  });
}
// No folder picker where the browser has none that works, and no "drop here" where there is
// nothing to drag with (phones, tablets: no hover, a coarse pointer). app.css says the same.
const touchOnly = matchMedia("(hover: none) and (pointer: coarse)").matches;
if (touchOnly || !("webkitdirectory" in el.folder)) el["folder-label"].hidden = true;
if (touchOnly) el["drop-hint"].hidden = true;
const drop = el.drop;
drop.addEventListener("dragover", (e) => {
  e.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", async (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  const items = [...(e.dataTransfer?.items ?? [])];
  const entries = items.map((item) => item.webkitGetAsEntry?.()).filter((entry) => entry);
  chosen = entries.length ? await filesFromEntries(entries) : [...(e.dataTransfer?.files ?? [])];
  el.files.value = el.folder.value = "";
  ui.chosen(chosen);
});

/** The files under dropped entries, folders walked, each with its path from the drop. */
async function filesFromEntries(entries) {
  const files = [];
  const walk = async (entry) => {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      file.p2psharePath = entry.fullPath.replace(/^\/+/, "");
      files.push(file);
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (!batch.length) break;
        for (const child of batch) await walk(child);
      }
    }
  };
  for (const entry of entries) await walk(entry);
  return files;
}

for (const button of document.querySelectorAll("button.copy")) {
  button.addEventListener("click", () => ui.copy(button.dataset.copy, button));
}

/** Stop what is running: tell the peer (it reports "the other side cancelled the transfer"),
 * give the message a moment to leave, then start afresh with `notice` shown on top. */
function stopAndReload(notice) {
  const current = running;
  const link = current?.link;
  if (current) current.cancelled = true;
  if (link && !link.lost) {
    try {
      link.send(abortFrame("interrupted", "cancelled in the browser"));
    } catch {
      // gone already
    }
  }
  if (notice) sessionStorage.setItem(NOTICE_KEY, notice);
  setTimeout(() => location.reload(), link ? 500 : 0);
}

/** What Cancel did, said on the fresh page. */
function cancelledText() {
  const connected = Boolean(running?.link);
  if (el["status-title"].textContent !== "Sending") {
    return connected
      ? "Cancelled: receiving stopped and the sender was told; nothing partial was kept."
      : "Cancelled before the two sides connected: nothing was received.";
  }
  // Still asking about the words: nothing has left (sender.js sends nothing before the answer).
  if (!el["words-check"].hidden) {
    return "Cancelled before the words were confirmed: nothing was sent, and the receiver was told. The code no longer works.";
  }
  return connected
    ? "Cancelled: sending stopped and the receiver was told; what they got so far is discarded. The code no longer works."
    : "Cancelled: nothing was sent, and the code no longer works.";
}

el.cancel.addEventListener("click", () => stopAndReload(cancelledText()));
el.again.addEventListener("click", () => ui.reset());

// A second link opened in the same tab (pasted into the address bar) starts a new receive.
window.addEventListener("hashchange", () => {
  if (location.hash.length > 1) stopAndReload(running ? "The transfer in progress was cancelled for the new link." : "");
});

const previous = sessionStorage.getItem(NOTICE_KEY);
if (previous) {
  sessionStorage.removeItem(NOTICE_KEY);
  ui.notice(previous);
}

// A link like http://host:port/#7-guitar-ocean starts receiving at once. The fragment is
// removed from the address bar (and history): the code is single use and secret.
const fragment = decodeURIComponent(location.hash.slice(1));
if (fragment) {
  history.replaceState(null, "", location.pathname + location.search);
  el.code.value = fragment;
}
// Streamed downloads need the service worker (secure contexts only); without it, Blobs.
// Hashing runs in its worker once that answered; in this thread otherwise.
Promise.allSettled([setUpStreaming(), startHashing()]).finally(() => {
  if (fragment) startReceive(fragment);
});
