#!/usr/bin/env node
// Runs the SDK's unit tests: esbuild bundles each `*.test.ts` (Node runs no
// TypeScript itself), then every test it exports runs; any failure exits 1.
import { build } from "esbuild";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const work = mkdtempSync(join(tmpdir(), "trellis-js-test-"));
let failed = 0;
try {
  for (const file of readdirSync(here).filter((f) => f.endsWith(".test.ts")).sort()) {
    const outfile = join(work, file.replace(/\.ts$/, ".mjs"));
    await build({ entryPoints: [join(here, file)], bundle: true, format: "esm", platform: "neutral", outfile, logLevel: "warning" });
    const { tests } = await import(pathToFileURL(outfile).href);
    for (const [name, body] of tests) {
      try {
        body();
        console.log(`ok   ${file}: ${name}`);
      } catch (e) {
        failed += 1;
        console.log(`FAIL ${file}: ${name}\n     ${e.message}`);
      }
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
process.exit(failed > 0 ? 1 : 0);
