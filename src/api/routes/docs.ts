import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps } from "../context.ts";
import { systemRouteDefinitions } from "../definitions/system.ts";
import { ApiError } from "../errors.ts";
import { mountRoute } from "../route.ts";
import type { ApiEnv } from "../types.ts";

// Swagger UI comes from the installed swagger-ui-dist package, never a CDN: the docs work on a
// machine with no internet. Only these files are served, so the route cannot read anything else.
const ASSETS: Record<string, string> = {
  "swagger-ui.css": "text/css; charset=utf-8",
  "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
  "favicon-32x32.png": "image/png",
  "favicon-16x16.png": "image/png",
};

// In a file of its own rather than inline, so a strict Content-Security-Policy holds. When the
// document needs a key (API keys set, docs not public) the page asks for one, keeps it for the
// tab's session, sends it for the document, and pre-fills Swagger's Authorize with it.
const INIT_JS = `window.addEventListener("load", function () {
  var specUrl = new URL("openapi.json", window.location.href).href;
  var storageKey = "pgwake.apiKey";
  var form = document.getElementById("pgwake-key");
  var key = sessionStorage.getItem(storageKey);
  function bearer(value) {
    return value ? { Authorization: "Bearer " + value } : {};
  }
  function start() {
    form.hidden = true;
    window.ui = SwaggerUIBundle({
      url: specUrl,
      dom_id: "#swagger-ui",
      deepLinking: true,
      validatorUrl: null,
      persistAuthorization: true,
      requestInterceptor: function (request) {
        if (key && request.url === specUrl) request.headers.Authorization = "Bearer " + key;
        return request;
      },
      onComplete: function () {
        if (key) window.ui.preauthorizeApiKey("bearer", key);
      }
    });
  }
  function load() {
    fetch(specUrl, { headers: bearer(key) }).then(function (response) {
      if (response.status === 401 || response.status === 403) {
        document.getElementById("pgwake-key-wrong").hidden = !key;
        form.hidden = false;
        document.getElementById("pgwake-key-input").focus();
        return;
      }
      start();
    }, start);
  }
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    key = document.getElementById("pgwake-key-input").value.trim();
    sessionStorage.setItem(storageKey, key);
    load();
  });
  load();
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
  <form id="pgwake-key" hidden style="max-width:36em;margin:3em auto;font-family:sans-serif">
    <h1 style="font-size:1.4em">pgwake API</h1>
    <p>This server needs an API key to show its documentation: one of the keys in
      <code>PGWAKE_API_KEYS</code>. It is kept in this tab only, and sent as
      <code>Authorization: Bearer &lt;key&gt;</code>.</p>
    <p>To show the documentation without a key, start the server with the docs made public.</p>
    <p id="pgwake-key-wrong" hidden style="color:#b00">That key was refused.</p>
    <label for="pgwake-key-input">API key</label>
    <input id="pgwake-key-input" type="password" autocomplete="off" style="width:100%;margin:.5em 0">
    <button type="submit">Show the documentation</button>
  </form>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js"></script>
  <script src="docs/init.js"></script>
</body>
</html>
`;

const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; font-src 'self' data:; form-action 'none'";

/**
 * `GET /docs`: Swagger UI over `/openapi.json`, from local files only. The page and its files are
 * public whatever the settings: they say nothing about this server; the document itself follows
 * `docsPublic`, and the page asks for a key when the document needs one.
 */
export function docsRoutes(deps: ApiDeps): OpenAPIHono<ApiEnv> {
  const app = new OpenAPIHono<ApiEnv>();
  const routes = systemRouteDefinitions();
  const dist = dirname(createRequire(import.meta.url).resolve("swagger-ui-dist/package.json"));
  const cache = new Map<string, Promise<Buffer>>();
  const options = { access: "public" } as const;

  mountRoute(
    app,
    deps,
    routes.docs,
    (c) => {
      // The page's relative links resolve against /docs, so /docs/ would point one level too deep.
      if (c.req.path.endsWith("/")) return c.redirect("/docs", 301);
      return c.html(PAGE, 200, { "Content-Security-Policy": CSP });
    },
    options,
  );

  mountRoute(
    app,
    deps,
    routes.docsFile,
    async (c, { params }) => {
      const { file } = params;
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
    },
    options,
  );
  return app;
}
