// Pure helpers: backoff, JWT expiry, bounded de-duplication memory.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Backoff } from "../dist/backoff.js";
import { RecentSet } from "../dist/recent.js";
import { refreshDelay, tokenExpiry } from "../dist/token.js";

test("backoff: full jitter under an exponential cap bounded by the maximum", () => {
  const b = new Backoff(1000, 30000);
  const caps = [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000];
  for (const cap of caps) {
    const d = b.next();
    assert.ok(d >= 0 && d <= cap, `${d} within [0, ${cap}]`);
  }
  b.reset();
  assert.ok(b.next() <= 1000);
});

test("token expiry is read from the JWT payload without verifying", () => {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const token = `${b64({ alg: "HS256" })}.${b64({ sub: "u", exp: 2000000000 })}.sig`;
  assert.equal(tokenExpiry(token), 2000000000 * 1000);
  assert.equal(tokenExpiry("not a jwt"), null);
  assert.equal(tokenExpiry(`${b64({})}.${b64({ sub: "u" })}.x`), null);
  // Refresh 30 s before exp; a short-lived token at half its remaining life.
  assert.equal(refreshDelay(100_000, 0), 70_000);
  assert.equal(refreshDelay(4_000, 0), 2_000);
});

test("the de-duplication memory keeps the most recent keys only", () => {
  const s = new RecentSet(3);
  for (const k of ["a", "b", "c"]) assert.equal(s.add(k), true);
  assert.equal(s.add("a"), false);
  assert.equal(s.add("d"), true); // evicts "a"
  assert.equal(s.add("a"), true);
  assert.equal(s.add("c"), false);
});
