// Bundles the browser engine into one ES module that the generated site loads.
import * as esbuild from "esbuild";

await esbuild.build({
  entryPoints: ["src/index.ts"],
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  outfile: "dist/webllm_build.js",
  sourcemap: true,
  // tvmjs requires these only when it runs under Node; a browser never reaches those calls.
  external: ["fs", "path", "perf_hooks", "ws", "crypto"],
  legalComments: "none",
  logLevel: "warning",
});
