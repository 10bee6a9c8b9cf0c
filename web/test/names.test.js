// The name rules of p2pshare/files.py, as web/testlib/names.json records them.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { checkOffer, printable, terminalSafe, UnsafeNameError } from "../src/names.js";

const V = JSON.parse(readFileSync(new URL("../testlib/names.json", import.meta.url), "utf-8"));

for (const c of V.offers) {
  const label = JSON.stringify(c.entries).slice(0, 80);
  test(`names: ${label} ${c.ok ? "accepted" : "refused"}`, () => {
    const files = c.entries.map(([path, kind]) => ({ path, kind, size: kind === "dir" ? 0 : 1 }));
    if (c.ok) {
      assert.deepEqual(checkOffer(files), c.parts);
    } else {
      assert.throws(() => checkOffer(files), (e) => e instanceof UnsafeNameError && e.message === c.message);
    }
  });
}

test("printable escapes what a screen would hide", () => {
  for (const p of V.printable) assert.equal(printable(p.text), p.printable);
});

test("received text is shown with escapes where a screen would mislead", () => {
  for (const t of V.terminal_safe) assert.equal(terminalSafe(t.text), t.safe);
});
