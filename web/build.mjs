// Bundles the browser engine into one ES module that the generated site loads, with its type
// declarations. `node build.mjs package [directory]` then writes the engine as an npm package
// (default dist/package/; `npm run package` does both); publishing it is the user's step.
import { generateDtsBundle } from "dts-bundle-generator";
import * as esbuild from "esbuild";
import { copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

const [command, packageDirectory = "dist/package"] = process.argv.slice(2);
if (command === "package") {
  await writePackage(packageDirectory);
  process.exit(0);
}

// @mlc-ai/web-tokenizers and @mlc-ai/web-xgrammar ship UMD files (wasm inlined as base64) inside
// "type": "module" packages, so esbuild would read them as ESM and find no exports. Loaded from a
// namespace of their own, they are judged by their content: CommonJS, whose exports the engine
// can import. The wasm is inlined, so the script's own URL is never used; without `document` and
// `location` (Deno) the glue would compute it with require("url").
const UMD_PACKAGES = {
  "@mlc-ai/web-tokenizers": [["new (require('u' + 'rl').URL)('file:' + __filename).href", '""']],
  "@mlc-ai/web-xgrammar": [["require('u' + 'rl').pathToFileURL(__filename).href", '""']],
};

const umdAsCommonJS = {
  name: "umd-as-commonjs",
  setup(build) {
    // The bare name, not the file's path: the bundle names the module and must not depend on
    // where the repository lies.
    build.onResolve({ filter: /^@mlc-ai\/(web-tokenizers|web-xgrammar)$/ }, (args) => ({
      path: args.path,
      namespace: "umd-as-cjs",
    }));
    build.onLoad({ filter: /.*/, namespace: "umd-as-cjs" }, async (args) => ({
      contents: webOnly(await readFile(require.resolve(args.path), "utf8"), args.path, UMD_PACKAGES[args.path]),
      loader: "js",
    }));
  },
};

// The Emscripten glue in tvmjs and web-tokenizers takes its Node path (require("fs"), ...) when
// `process.versions.node` exists. The engine runs only on web APIs (a page, a worker, Deno), and
// Deno defines `process` for Node compatibility, so the check is made false at bundle time. The
// build fails if a pattern is gone, so a dependency update cannot drop this silently.
const NODE_CHECK = 'typeof process=="object"&&typeof process.versions=="object"&&typeof process.versions.node=="string"';

function webOnly(source, name, extra = []) {
  for (const [pattern, replacement] of [[NODE_CHECK, "false"], ...extra]) {
    if (!source.includes(pattern)) throw new Error(`${name}: the glue no longer contains ${pattern}`);
    source = source.split(pattern).join(replacement);
  }
  return source;
}

const tvmjsWebOnly = {
  name: "tvmjs-web-only",
  setup(build) {
    build.onLoad({ filter: /@mlc-ai[\\/]web-runtime[\\/]lib[\\/]index\.js$/ }, async (args) => ({
      contents: webOnly(await readFile(args.path, "utf8"), "@mlc-ai/web-runtime"),
      loader: "js",
    }));
  },
};

const common = {
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  sourcemap: true,
  legalComments: "none",
  logLevel: "warning",
};

// The engine: the page imports it where workers lack WebGPU; otherwise it is the worker script.
await esbuild.build({
  ...common,
  entryPoints: ["src/index.ts"],
  outfile: "dist/webllm_build.js",
  plugins: [umdAsCommonJS, tvmjsWebOnly],
  // tvmjs and web-tokenizers require these only when they run under Node; a browser never
  // reaches those calls.
  external: ["fs", "path", "perf_hooks", "ws", "crypto", "url", "module"],
});

// The page's part: starts the engine's worker and talks to it (a few KB, no tvmjs).
// Minified: the page waits for it before anything shows, and markdown-it with DOMPurify (the
// replies' renderer) is most of it.
await esbuild.build({ ...common, entryPoints: ["src/page.ts"], outfile: "dist/webllm_build-page.js", minify: true });

// The site's service worker (src/sw.ts). A classic script, since not every browser starts module
// service workers; Workbox reads NODE_ENV to leave its development logging out.
await esbuild.build({
  ...common,
  entryPoints: ["src/sw.ts"],
  outfile: "dist/webllm_build-sw.js",
  format: "iife",
  minify: true,
  sourcemap: false,
  define: { "process.env.NODE_ENV": '"production"' },
});
await esbuild.build({ ...common, entryPoints: ["src/sw_retire.ts"], outfile: "dist/webllm_build-sw-retire.js", format: "iife", sourcemap: false });

// The engine's declarations, one self-contained file: dts-bundle-generator inlines every local
// type the API names, where tsc --emitDeclarationOnly would write one file per module for the
// user to keep together. Declarations marked @internal (index.ts: the harness's building blocks,
// whose types reach into tvmjs) are stripped, which needs a tsconfig of its own.
const DECLARATIONS = "dist/webllm_build.d.ts";
const declarationsConfig = "dist/tsconfig.declarations.json";
await writeFile(
  declarationsConfig,
  JSON.stringify({ extends: "../tsconfig.json", compilerOptions: { stripInternal: true }, files: ["../src/index.ts"] }),
);
try {
  const [declarations] = generateDtsBundle(
    [{ filePath: "src/index.ts", output: { noBanner: true, exportReferencedTypes: false } }],
    { preferredConfigPath: declarationsConfig },
  );
  await writeFile(DECLARATIONS, `// Types of the webllm_build engine (webllm_build.js), generated from web/src/index.ts.\n\n${declarations}`);
} finally {
  await rm(declarationsConfig);
}
checkDeclarations(DECLARATIONS);

// A user's project sees only this file, with its own settings: it must compile strictly on its
// own, with no library check skipped and no @webgpu/types.
function checkDeclarations(file) {
  const ts = require("typescript");
  const program = ts.createProgram([file], {
    strict: true,
    noEmit: true,
    skipLibCheck: false,
    target: ts.ScriptTarget.ES2022,
    lib: ["lib.es2022.d.ts", "lib.dom.d.ts", "lib.dom.iterable.d.ts"],
    types: [],
  });
  const diagnostics = ts.getPreEmitDiagnostics(program);
  if (diagnostics.length > 0) {
    const host = { getCanonicalFileName: (f) => f, getCurrentDirectory: () => process.cwd(), getNewLine: () => "\n" };
    throw new Error(`${file} does not compile on its own:\n${ts.formatDiagnostics(diagnostics, host)}`);
  }
}

// The engine as an npm package: the bundle (an ES module, also its own worker script), its
// source map and declarations, a package.json whose `exports` name both, and a README.
async function writePackage(directory) {
  const { version } = JSON.parse(await readFile("package.json", "utf8"));
  const files = ["webllm_build.js", "webllm_build.js.map", "webllm_build.d.ts"];
  await rm(directory, { recursive: true, force: true });
  await mkdir(directory, { recursive: true });
  for (const name of files) await copyFile(`dist/${name}`, `${directory}/${name}`);
  const manifest = {
    name: "webllm-build",
    version,
    description: "The webllm_build chat engine: a compiled language model in the browser on WebGPU, OpenAI-style.",
    type: "module",
    exports: {
      ".": { types: "./webllm_build.d.ts", import: "./webllm_build.js" },
      // The bundle's own URL, for bundlers that hand out asset URLs (createWorkerEngine(url)).
      "./webllm_build.js": "./webllm_build.js",
      "./package.json": "./package.json",
    },
    types: "./webllm_build.d.ts",
    files: [...files, "README.md"],
  };
  await writeFile(`${directory}/package.json`, `${JSON.stringify(manifest, null, 2)}\n`);
  await writeFile(`${directory}/README.md`, packageReadme(version));
}

function packageReadme(version) {
  return `# webllm-build ${version}

The browser engine of webllm_build: a language model compiled by
\`webllm_build site\` runs in the visitor's browser on WebGPU, in a Web Worker, behind an
OpenAI-style chat API. Types included (\`webllm_build.d.ts\`).

\`\`\`js
import { createWorkerEngine } from "webllm-build";

const engine = createWorkerEngine(); // a Web Worker running this very module
await engine.reload("https://chat.example.com/models/<id>/", {
  onProgress: (p) => console.log(\`\${p.phase} \${p.percent.toFixed(0)}%\`),
});
const chunks = await engine.chat.completions.create({
  messages: [{ role: "user", content: "Hello!" }],
  stream: true,
});
for await (const chunk of chunks) console.log(chunk.choices[0].delta.content ?? "");
\`\`\`

A model is a \`models/<id>/\` folder of a site built by \`webllm_build site\` (its \`site.json\`
lists them); a host on another origin than the page must send CORS headers for it. Failures are
\`EngineError\`s whose \`code\` says what went wrong ("no-webgpu", "fetch-failed", ...).
\`createEngine()\` runs the engine in the calling thread instead, for browsers that offer WebGPU
to pages but not to workers (\`(await engine.probe()).available\` tells).

A bundler that merges this module into your own chunks changes its \`import.meta.url\`: serve
\`webllm-build/webllm_build.js\` as a file of its own (Vite: \`?url\`) and pass its URL to
\`createWorkerEngine(url)\`.
`;
}
