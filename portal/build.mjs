// Build the portal into bitnet_sdk/server/portal_static/ (committed, served by the API server),
// or into the folder given as the first argument (the tests compare that with the committed one).
// The SDK is the generated TypeScript client, imported from its source as "bitnet-client".
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, resolve } from "node:path";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? resolve(here, "../bitnet_sdk/server/portal_static"));
const sdk = resolve(here, "../tests/generators/golden/typescript/src/index.ts");
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [resolve(here, "src/main.ts")],
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  legalComments: "none",
  alias: { "bitnet-client": sdk },
  outfile: resolve(out, "app.js"),
  logLevel: "warning",
});
copyFileSync(resolve(here, "index.html"), resolve(out, "index.html"));
copyFileSync(resolve(here, "app.css"), resolve(out, "app.css"));
