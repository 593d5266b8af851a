import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { Hono } from "hono";
import { ApiError } from "../errors.ts";
import type { ApiEnv } from "../types.ts";

// Swagger UI comes from the installed swagger-ui-dist package, never a CDN: the docs work on a
// machine with no internet. Only these files are served, so the route cannot read anything else.
const ASSETS: Record<string, string> = {
  "swagger-ui.css": "text/css; charset=utf-8",
  "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
  "favicon-32x32.png": "image/png",
  "favicon-16x16.png": "image/png",
};

// Kept in a file of its own rather than inline, so a strict Content-Security-Policy holds.
const INIT_JS = `window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: new URL("openapi.json", window.location.href).href,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    tryItOutEnabled: false,
    persistAuthorization: true
  });
});
`;

const PAGE = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>pgwake API</title>
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <link rel="icon" type="image/png" href="docs/favicon-32x32.png">
  <link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js"></script>
  <script src="docs/init.js"></script>
</body>
</html>
`;

const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; font-src 'self' data:";

/** `GET /docs`: Swagger UI over `/openapi.json`, from local files only. */
export function docsRoutes(): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  const dist = dirname(createRequire(import.meta.url).resolve("swagger-ui-dist/package.json"));
  const cache = new Map<string, Promise<Buffer>>();

  app.get("/docs", (c) => {
    // The page's relative links resolve against /docs, so /docs/ would point one level too deep.
    if (c.req.path.endsWith("/")) return c.redirect("/docs", 301);
    return c.html(PAGE, 200, { "Content-Security-Policy": CSP });
  });

  app.get("/docs/:file", async (c) => {
    const file = c.req.param("file");
    if (file === "init.js") {
      return c.body(INIT_JS, 200, {
        "Content-Type": ASSETS["swagger-ui-bundle.js"]!,
        "Cache-Control": "no-cache",
      });
    }
    const type = Object.hasOwn(ASSETS, file) ? ASSETS[file] : undefined;
    if (!type) throw new ApiError(404, "NOT_FOUND", "no such file");
    let content = cache.get(file);
    if (!content) {
      content = readFile(join(dist, file));
      cache.set(file, content);
      content.catch(() => cache.delete(file));
    }
    const bytes = await content;
    return c.body(new Uint8Array(bytes), 200, {
      "Content-Type": type,
      "Cache-Control": "public, max-age=86400",
    });
  });
  return app;
}
