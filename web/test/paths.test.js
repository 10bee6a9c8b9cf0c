// The path the page reports for a candidate pair, as web/testlib/paths.json records it (the
// CLI reads the same cases: tests/test_cli_edges.py).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { pathKind } from "../src/webrtc.js";

const V = JSON.parse(readFileSync(new URL("../testlib/paths.json", import.meta.url), "utf-8"));

for (const c of V.cases) {
  test(`path: ${c.local.join(" ")} / ${c.remote.join(" ")} is ${c.kind}`, () => {
    assert.equal(pathKind(c.local[0], c.remote[0], c.local[1], c.remote[1]), c.kind);
  });
}
