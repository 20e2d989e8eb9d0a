#!/usr/bin/env node
// `trellis-js build PLUGIN.ts -o plugin.wasm`: builds a plugin into a
// WebAssembly component. esbuild bundles the plugin (whose default export is
// a Reconciler) with this SDK into one ES module, and componentize-js wraps
// it against the WIT shipped in this package, with the engine's `http` and
// `fetch-event` features left out (the host links no wasi:http). The
// JavaScript engine is pre-initialised with the module at build time
// (Wizer), so each call starts from a ready engine.
import { build } from "esbuild";
import { componentize } from "@bytecodealliance/componentize-js";
import { _setPreopens } from "@bytecodealliance/preview2-shim/filesystem";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const sdk = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const usage = "usage: trellis-js build PLUGIN.ts -o OUTPUT.wasm | trellis-js wit";

async function main(args) {
  if (args[0] === "wit") {
    console.log(join(sdk, "wit"));
    return 0;
  }
  const out = args.indexOf("-o");
  if (args[0] !== "build" || args.length !== 4 || out < 0 || out === args.length - 1) {
    console.error(usage);
    return 2;
  }
  const output = resolve(args[out + 1]);
  const source = resolve(args.find((a, i) => i > 0 && a !== "-o" && i !== out + 1));
  const work = mkdtempSync(join(tmpdir(), "trellis-js-"));
  try {
    const entry = join(work, "entry.ts");
    writeFileSync(
      entry,
      `import plugin from ${JSON.stringify(source)};\n` +
        `import { worldOf } from ${JSON.stringify(join(sdk, "src/world.ts"))};\n` +
        "const world = worldOf(plugin);\n" +
        "export const { info, related, reconcile, validate, defaultRelated } = world;\n" +
        "export default world.default;\n",
    );
    // componentize-js reads the WIT through preview2-shim, which (from
    // 0.26) opens no host folder unless told: give it the SDK's WIT folder.
    _setPreopens({ [join(sdk, "wit")]: join(sdk, "wit") });
    const bundle = join(work, "plugin.js");
    await build({ entryPoints: [entry], bundle: true, format: "esm", platform: "neutral", outfile: bundle, logLevel: "warning" });
    const { component } = await componentize({
      sourcePath: bundle,
      witPath: join(sdk, "wit"),
      worldName: "reconciler",
      disableFeatures: ["http", "fetch-event"],
    });
    writeFileSync(output, component);
    console.error(`trellis-js: wrote ${output} (${component.length} bytes)`);
    return 0;
  } catch (e) {
    console.error(`trellis-js: ${e.message ?? e}`);
    return 1;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

process.exit(await main(process.argv.slice(2)));
