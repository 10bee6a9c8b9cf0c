// Builds the page into signal_server/static/ (committed: `pip install .` needs no Node).
// Deterministic: same sources and lock file, same bytes (tests/test_web_build.py checks it).
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2] ?? join(here, "..", "signal_server", "static");
mkdirSync(out, { recursive: true });
const common = {
  bundle: true,
  format: "esm",
  target: ["chrome100", "firefox100", "safari16"],
  minify: true,
  legalComments: "eof",
  charset: "utf8",
  logLevel: "warning",
};
await build({
  ...common,
  entryPoints: [join(here, "src", "main.js")],
  outfile: join(out, "app.js"),
  loader: { ".txt": "text" },
});
// The hashing worker (web/src/hashing.js) is a classic script: module workers are newer than
// the browsers this page targets.
await build({ ...common, format: "iife", entryPoints: [join(here, "src", "hash-worker.js")], outfile: join(out, "hash-worker.js") });
// The service worker is its own script, served at the root so that its scope is the site.
await build({ ...common, entryPoints: [join(here, "src", "sw.js")], outfile: join(out, "sw.js") });
for (const name of ["index.html", "app.css"]) copyFileSync(join(here, "page", name), join(out, name));
