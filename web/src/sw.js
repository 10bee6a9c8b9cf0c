// The page's service worker: it turns a file the page is receiving into an ordinary browser
// download that is written to disk as it arrives, so a large file never has to fit in memory.
// Only in a secure context (https://, http://127.0.0.1); elsewhere the page keeps Blobs.
//
// The page opens a download with {type: "open", id, name, size} and a MessagePort, then
// navigates to /p2pshare-download/<id>; this worker answers that navigation with a streamed
// response (Content-Disposition: attachment). Chunks come through the port, in order, each
// answered with "more" once queued below the high-water mark (or, above it, once the download
// has read enough); "end" closes the stream (the page sends it only after the SHA-256
// matched), "error" fails it, and the browser then deletes the partial download.

const PREFIX = "/p2pshare-download/";
const QUEUE_BYTES = 4 * 1024 * 1024;
const pending = new Map();

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("message", (event) => {
  const data = event.data ?? {};
  const port = event.ports[0];
  if (data.type !== "open" || !port || typeof data.id !== "string") return; // keep-alive pings
  let controller;
  let owed = 0; // chunks queued past the high-water mark, answered once the download reads
  const stream = new ReadableStream(
    {
      start(c) {
        controller = c;
      },
      pull() {
        for (; owed > 0; owed--) port.postMessage({ type: "more" });
      },
      cancel() {
        port.postMessage({ type: "cancelled" });
      },
    },
    new ByteLengthQueuingStrategy({ highWaterMark: QUEUE_BYTES }),
  );
  port.onmessage = (message) => {
    const m = message.data ?? {};
    try {
      if (m.type === "data") {
        controller.enqueue(m.chunk);
        if (controller.desiredSize > 0) port.postMessage({ type: "more" });
        else owed++;
      } else if (m.type === "end") {
        controller.close();
      } else if (m.type === "error") {
        controller.error(new Error(String(m.message)));
      }
    } catch {
      port.postMessage({ type: "cancelled" });
    }
  };
  pending.set(data.id, { stream, name: String(data.name), size: data.size });
  // "pipelined": every chunk gets its own "more", so the page may keep several in flight
  // (a page of this version talking to an older worker waits for each answer instead).
  port.postMessage({ type: "ready", pipelined: true });
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (url.origin !== self.location.origin || !url.pathname.startsWith(PREFIX)) return;
  const id = url.pathname.slice(PREFIX.length);
  const entry = pending.get(id);
  pending.delete(id);
  if (!entry) {
    event.respondWith(new Response("not found\n", { status: 404 }));
    return;
  }
  const headers = new Headers({
    "Content-Type": "application/octet-stream",
    "Content-Disposition": `attachment; filename*=UTF-8''${encodeURIComponent(entry.name)}`,
    "X-Content-Type-Options": "nosniff",
  });
  if (Number.isSafeInteger(entry.size)) headers.set("Content-Length", String(entry.size));
  event.respondWith(new Response(entry.stream, { headers }));
});
