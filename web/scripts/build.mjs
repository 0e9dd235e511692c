// Builds web/dist/ (index.html, app.js, app.css) from web/src/. The output is committed and
// embedded in the signalhub binary, so the build must be deterministic: same sources and
// esbuild version, same bytes. index.html names the assets with a content hash.
import { createHash } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(root, "dist");

const common = {
  absWorkingDir: root,
  bundle: true,
  minify: true,
  write: false,
  legalComments: "none",
  charset: "utf8",
  logLevel: "warning",
};

const js = await esbuild.build({
  ...common,
  entryPoints: ["src/main.ts"],
  outfile: "dist/app.js",
  format: "iife",
  target: ["es2020"],
  platform: "browser",
});
const css = await esbuild.build({
  ...common,
  entryPoints: ["src/app.css"],
  outfile: "dist/app.css",
  target: ["chrome100", "firefox100", "safari15"],
});

const jsText = js.outputFiles[0].text;
const cssText = css.outputFiles[0].text;
const hash = (text) => createHash("sha256").update(text).digest("hex").slice(0, 12);
const html = (await readFile(join(root, "src/index.html"), "utf8"))
  .replace("{{JS_HASH}}", hash(jsText))
  .replace("{{CSS_HASH}}", hash(cssText));

await mkdir(dist, { recursive: true });
await writeFile(join(dist, "app.js"), jsText);
await writeFile(join(dist, "app.css"), cssText);
await writeFile(join(dist, "index.html"), html);
for (const [name, text] of [["index.html", html], ["app.js", jsText], ["app.css", cssText]]) {
  console.log(`dist/${name}  ${Buffer.byteLength(text)} bytes`);
}
