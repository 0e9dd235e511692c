// The README's "Install from the repository": its blocks, run as written in a temporary copy
// of clients/js (a stand-in for a clone), then its app.mjs against the real server.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { postSignal, startServer, subscribers, waitFor } from "./helpers.mjs";

const run = promisify(execFile);
const pkg = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const repo = path.resolve(pkg, "../..");

/** The fenced block between `<!-- name:start ... -->` and `<!-- name:end -->`. */
function block(markdown, name) {
  const m = new RegExp(`<!-- ${name}:start[^>]*-->\\n\`\`\`\\w*\\n([\\s\\S]*?)\`\`\`\\n<!-- ${name}:end -->`).exec(markdown);
  assert.ok(m, `README block ${name}`);
  return m[1];
}

const sh = (script, cwd, env = process.env) =>
  run("bash", ["-euo", "pipefail", "-c", script], { cwd, env, maxBuffer: 16 << 20, timeout: 240_000 });

let srv;
let work;
before(async () => {
  srv = await startServer();
  work = fs.mkdtempSync(path.join(os.tmpdir(), "signalhub-install-"));
});
after(async () => {
  await srv?.stop();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

test("the root README shows the same install commands as clients/js/README.md", () => {
  const own = block(fs.readFileSync(path.join(pkg, "README.md"), "utf8"), "install");
  const root = block(fs.readFileSync(path.join(repo, "README.md"), "utf8"), "install");
  assert.equal(root, own);
});

test("the README's install commands install the client into a new project, and its app.mjs receives a signal", { timeout: 300_000 }, async () => {
  const readme = fs.readFileSync(path.join(pkg, "README.md"), "utf8");
  // A clone: the files of clients/js that git tracks (no dist, no node_modules).
  const clone = path.join(work, "signalhub");
  const copy = path.join(clone, "clients/js");
  fs.mkdirSync(copy, { recursive: true });
  for (const name of ["package.json", "package-lock.json", "tsconfig.json", "README.md", "src"]) {
    fs.cpSync(path.join(pkg, name), path.join(copy, name), { recursive: true });
  }
  const npmEnv = { ...process.env, npm_config_audit: "false", npm_config_fund: "false", npm_config_update_notifier: "false" };
  await sh(block(readme, "install"), clone, npmEnv);

  const app = path.join(work, "my-app");
  const installed = JSON.parse(fs.readFileSync(path.join(app, "package.json"), "utf8"));
  assert.match(installed.dependencies["@signalhub/client"], /^file:.*signalhub-client-0\.1\.0\.tgz$/);
  assert.ok(installed.dependencies.ws, "ws is a dependency");
  assert.ok(installed.devDependencies["@types/ws"], "@types/ws is a dev dependency");
  assert.ok(fs.existsSync(path.join(app, "node_modules/@signalhub/client/dist/index.js")), "the built client is installed");
  fs.writeFileSync(path.join(app, "app.mjs"), block(readme, "app"));

  const [typecheck, start] = block(readme, "run")
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => l.replace(/\s+#.*$/, ""));
  assert.equal(start, "node app.mjs");
  await sh(typecheck, app, npmEnv); // tsc exits non-zero on a type error

  const child = spawn("bash", ["-c", start], { cwd: app, env: { ...process.env, SIGNALHUB_URL: srv.url }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (err += d));
  try {
    await waitFor(() => out.includes("state connected"), `app.mjs connected (stdout: ${out} stderr: ${err})`);
    await waitFor(async () => (await subscribers(srv.url, "signals")) === 1, "app.mjs subscribed to signals");
    await postSignal(srv.url, { signal_id: "install_check", pair: "EUR_USD", signal_type: "BUY", confidence_score: 0.5 });
    const line = await waitFor(
      () => out.split("\n").find((l) => l.startsWith("signal ") && l.includes('"install_check"')),
      `the signal on app.mjs's stdout (stdout: ${out} stderr: ${err})`,
    );
    const [, seq, data] = /^signal (\d+) (.*)$/.exec(line);
    assert.equal(Number(seq), 1);
    assert.equal(JSON.parse(data).pair, "EUR_USD");
    assert.equal(err, "");
  } finally {
    child.kill("SIGKILL");
  }
});
