// GET /console: the SQL console's page and the two files it loads, all from
// the bridge. The policy allows nothing but this origin (no CDN, no inline
// script): the page talks to POST /query and /queries beside it and to nothing else.
import { type Context, Hono } from "hono";
import { consoleAssets } from "./assets.js";

const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy":
    "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  // Revalidated on every load (the ETag makes that a 304), so a new bridge's page is seen at once.
  "cache-control": "no-cache",
};

/** The page's URLs are relative, so the bridge may sit under any path prefix. */
export function consoleRoutes(): Hono {
  const routes = new Hono();
  routes.get("/console", (c) => serve(c, "index.html"));
  // Relative URLs resolved from /console/ would miss: send the browser to /console.
  routes.get("/console/", (c) => c.redirect("../console", 301));
  routes.get("/console/:file", (c) => serve(c, c.req.param("file")));
  return routes;
}

async function serve(c: Context, name: string): Promise<Response> {
  const asset = (await consoleAssets()).get(name);
  if (!asset) return c.notFound();
  const headers = { ...SECURITY_HEADERS, etag: asset.etag, "content-type": asset.type };
  if (c.req.header("if-none-match") === asset.etag) return c.body(null, 304, headers);
  return c.body(asset.body as Uint8Array<ArrayBuffer>, 200, headers);
}
