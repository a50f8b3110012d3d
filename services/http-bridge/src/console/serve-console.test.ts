// GET /console without a browser: the page and everything it loads come from
// the bridge itself, under a policy that forbids any other origin, so the
// console works in a cluster with no way out and leaks nothing to a CDN.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { startBridgeFor } from "../../../../test/helpers.js";

const t = suite("http-bridge GET /console");
let url: string;

t.before(async () => {
  // The page needs no query-grpc: nothing listens on this target.
  url = (await startBridgeFor("127.0.0.1:9")).url;
});

/** The URLs the page loads (script src, stylesheet href), resolved against the page's own URL. */
function assetsOf(html: string, pageUrl: string): string[] {
  const refs = [...html.matchAll(/<(?:script|link)\b[^>]*?(?:src|href)="([^"]+)"/g)].map((m) => m[1] ?? "");
  return refs.map((ref) => new URL(ref, pageUrl).toString());
}

t("GET /console is an HTML page under a same-origin-only content security policy", async () => {
  const response = await fetch(`${url}/console`);
  assert.is(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^text\/html; charset=utf-8/);
  const policy = response.headers.get("content-security-policy") ?? "";
  assert.match(policy, /(^|;)\s*default-src 'self'(;|$)/);
  assert.match(policy, /frame-ancestors 'none'/);
  assert.is(response.headers.get("x-content-type-options"), "nosniff");
  const html = await response.text();
  assert.match(html, /<textarea[^>]+id="sql"/);
});

t("everything the page loads is served by the bridge, with its own type and the same policy", async () => {
  const pageUrl = `${url}/console`;
  const assets = assetsOf(await (await fetch(pageUrl)).text(), pageUrl);
  assert.ok(assets.some((a) => a.endsWith(".js")) && assets.some((a) => a.endsWith(".css")), assets.join());
  for (const asset of assets) {
    assert.ok(asset.startsWith(`${url}/console/`), `${asset} is served under /console/`);
    const response = await fetch(asset);
    assert.is(response.status, 200, asset);
    const type = response.headers.get("content-type") ?? "";
    assert.match(type, asset.endsWith(".js") ? /^text\/javascript/ : /^text\/css/);
    assert.match(response.headers.get("content-security-policy") ?? "", /default-src 'self'/);
    assert.ok((await response.text()).length > 100, `${asset} has content`);
  }
});

t("the page's script names no other origin to fetch from", async () => {
  const pageUrl = `${url}/console`;
  const script = assetsOf(await (await fetch(pageUrl)).text(), pageUrl).find((a) => a.endsWith(".js"));
  const text = await (await fetch(script ?? "")).text();
  assert.not.match(text, /(?:fetch|import)\(\s*["'`]https?:/);
});

t("/console/ with a slash redirects to /console, so the page's relative URLs resolve", async () => {
  const response = await fetch(`${url}/console/`, { redirect: "manual" });
  assert.is(response.status, 301);
  assert.is(new URL(response.headers.get("location") ?? "", `${url}/console/`).pathname, "/console");
});

t("an unknown file under /console/ is a 404", async () => {
  const response = await fetch(`${url}/console/nope.js`);
  assert.is(response.status, 404);
});

t.run();
