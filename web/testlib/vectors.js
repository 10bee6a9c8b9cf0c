// Loads the JSON test vectors shared with the Python suite (tests/vectors/*.json).
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const DIR = process.env.P2PSHARE_VECTORS ?? fileURLToPath(new URL("../../tests/vectors/", import.meta.url));

export function vectors(name) {
  return JSON.parse(readFileSync(`${DIR}/${name}.json`, "utf-8"));
}
