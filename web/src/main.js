// Wires the page to the session: reads the code from the URL fragment (it never reaches the
// server: browsers do not send fragments), runs a send or a receive, renders through ui.js.

import wordlistText from "../../p2pshare/wordlist.txt";

import { verificationWords, wordsFrom } from "./codes.js";
import { setUpStreaming } from "./download.js";
import { serverUrlFor } from "./rendezvous.js";
import { abortFrame } from "./transfer.js";
import { receiveFiles, sendFiles } from "./session.js";
import { formatBytes, Ui } from "./ui.js";
import { PATH_WORDS } from "./webrtc.js";

const WORDLIST = wordsFrom(wordlistText);
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

async function run(title, body) {
  if (running) return;
  const abort = { link: null };
  running = abort;
  ui.start(title);
  try {
    await body(abort);
  } catch (error) {
    ui.failed(error);
    console.warn("p2pshare:", error);
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
      onEvent(e) {
        if (e.type === "code") ui.showCode(e.code, `${location.origin}/#${e.code}`);
        else if (e.type === "verify") ui.verify(verificationWords(e.keyMaterial, WORDLIST));
        else if (e.type === "connected") {
          ui.connected(e.path, PATH_WORDS);
          ui.message("Waiting for the receiver to accept…");
        } else if (e.type === "progress") {
          ui.progress(e.done, e.total, "sent");
          ui.message("");
        }
      },
    });
    ui.finished(`Done: ${formatBytes(result.bytes)} sent; the receiver verified every file.`);
  });
}

const el = ui.el;
el["receive-form"].addEventListener("submit", (e) => {
  e.preventDefault();
  receive(el.code.value);
});
el["send-form"].addEventListener("submit", (e) => {
  e.preventDefault();
  if (!chosen.length) {
    ui.start("Sending");
    ui.failed(new Error("Choose files (or a folder) to send first."));
    return;
  }
  send(chosen);
});
for (const id of ["files", "folder"]) {
  el[id].addEventListener("change", () => {
    chosen = [...el[id].files];
    el[id === "files" ? "folder" : "files"].value = "";
    ui.chosen(chosen);
  });
}
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
el.cancel.addEventListener("click", () => {
  // Tell the peer (it reports "the other side cancelled the transfer"), give the message a
  // moment to leave, then start afresh.
  const link = running?.link;
  if (link && !link.lost) {
    try {
      link.send(abortFrame("interrupted", "cancelled in the browser"));
    } catch {
      // gone already
    }
  }
  setTimeout(() => location.reload(), link ? 500 : 0);
});
el.again.addEventListener("click", () => ui.reset());

// A link like http://host:port/#7-guitar-ocean starts receiving at once. The fragment is
// removed from the address bar (and history): the code is single use and secret.
const fragment = decodeURIComponent(location.hash.slice(1));
if (fragment) {
  history.replaceState(null, "", location.pathname + location.search);
  el.code.value = fragment;
}
// Streamed downloads need the service worker (secure contexts only); without it, Blobs.
setUpStreaming().finally(() => {
  if (fragment) receive(fragment);
});
