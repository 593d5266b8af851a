import type { OpenAPIHono, RouteConfig } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { z } from "zod";
import type { ApiDeps } from "./context.ts";
import type { ApiError } from "./errors.ts";
import type { Access } from "./middleware/auth.ts";
import { readJson } from "./middleware/body.ts";
import { keyRefusals, methodNotAllowed, unavailable, unexpected } from "./responses.ts";
import type { ApiEnv } from "./types.ts";
import { type Issue, parseOr400, toIssues } from "./validation.ts";

// Each operation is one `createRoute` definition: the OpenAPI document is generated from it, and
// `mountRoute` validates requests with the very same zod schemas, so the two cannot drift.
//
// Why not `app.openapi(route, handler)`: its validators read the body through the web-stream
// adapter (`c.req.json()`, and a body clone for its 415 check). Under @hono/node-server that
// wrapping was measured to cost more CPU than everything else a submission does, so bodies are
// read from Node's stream (middleware/body.ts) and parsed here; failures are thrown as
// `ApiError`s for the one `onError`, in the one error shape.

type Schema<R, K extends "params" | "query" | "headers"> = R extends {
  request: { [P in K]: infer S extends z.ZodType };
}
  ? S
  : undefined;

type BodySchema<R> = R extends {
  request: { body: { content: { "application/json": { schema: infer S extends z.ZodType } } } };
}
  ? S
  : undefined;

type Parsed<S> = S extends z.ZodType ? z.output<S> : undefined;

/** A request's parts as the route's schemas parsed them. */
export interface RouteInput<R> {
  params: Parsed<Schema<R, "params">>;
  query: Parsed<Schema<R, "query">>;
  headers: Parsed<Schema<R, "headers">>;
  body: Parsed<BodySchema<R>>;
}

type SuccessStatus = 200 | 201;

type Successes<R extends RouteConfig> = Extract<keyof R["responses"], SuccessStatus>;

type JsonBodyOf<T> = T extends {
  content: { "application/json": { schema: infer S extends z.ZodType } };
}
  ? z.input<S>
  : never;

/**
 * What a handler answers: one of the route's documented success statuses with a body of a
 * documented success schema (checked by the compiler), or a ready Response for other media
 * types. (Status and body are not paired: the routes that answer 200 or 201 send one schema.)
 */
export type RouteAnswer<R extends RouteConfig> = {
  status: Successes<R>;
  body: JsonBodyOf<R["responses"][Successes<R>]>;
  headers?: Record<string, string>;
};

export type RouteHandler<R extends RouteConfig> = (
  c: Context<ApiEnv>,
  input: RouteInput<R>,
) => Promise<RouteAnswer<R> | Response> | RouteAnswer<R> | Response;

export interface MountOptions {
  /** Who may call it; decides both the check and the operation's `security` in the document. */
  access: Access;
  /** Turns a path parameter failure into the error to answer (default: 400 VALIDATION_FAILED). */
  invalidParams?: (issues: Issue[], raw: Record<string, string>) => ApiError;
  /** The route reads or writes jobs: refused with 503 NOT_READY until the schema is current. */
  database?: boolean;
  /** What the body is, in validation messages ("invalid job: priority"); default "body". */
  bodyName?: string;
  /** A cheap check of the raw body before the schema parses it (a batch's size). */
  beforeParse?: (raw: unknown) => void;
}

/**
 * Documents `route` in the app's OpenAPI registry and serves it with `handler`. The answers every
 * route shares are added to the document here, from the same options that produce them: its
 * `security` and 401/403 from `access`, 503 when it needs the database, 405, and `default`.
 */
export function mountRoute<R extends RouteConfig>(
  app: OpenAPIHono<ApiEnv>,
  deps: ApiDeps,
  route: R,
  handler: RouteHandler<R>,
  options: MountOptions,
): void {
  const request = route.request ?? {};
  const params = request.params as z.ZodType | undefined;
  const query = request.query as z.ZodType | undefined;
  const headers = request.headers as z.ZodObject | undefined;
  const bodyConfig = request.body;
  const media = bodyConfig?.content["application/json"] as { schema?: z.ZodType } | undefined;
  const body = media?.schema;
  const headerNames = headers ? Object.keys(headers.shape) : [];
  const headersOptional = headers?.safeParse({}).success ?? true;
  const honoPath = route.path.replaceAll(/\{([^}]+)\}/g, ":$1");

  // The key was checked before this runs (AccessControl's middleware), unless the route is open.
  const handle = async (c: Context<ApiEnv>) => {
    const input = {
      params: undefined as unknown,
      query: undefined as unknown,
      headers: undefined as unknown,
      body: undefined as unknown,
    };
    if (params) {
      const raw = c.req.param() as Record<string, string>;
      const parsed = params.safeParse(raw);
      if (!parsed.success) {
        const issues = toIssues(parsed.error.issues);
        if (options.invalidParams) throw options.invalidParams(issues, raw);
        parseOr400(params, raw, "path");
      }
      input.params = parsed.data;
    }
    if (query) input.query = parseOr400(query, c.req.query(), "query");
    if (headers) {
      // Only the declared headers: building a record of all of them costs on the hot path.
      const given: Record<string, string> = {};
      let count = 0;
      for (const name of headerNames) {
        const value = c.req.header(name);
        if (value !== undefined) {
          given[name] = value;
          count++;
        }
      }
      // Most requests send none of them; when none is required that needs no parse.
      input.headers =
        count === 0 && headersOptional ? given : parseOr400(headers, given, "headers");
    }
    if (body) {
      const required = bodyConfig?.required ?? false;
      const raw = await readJson(c, deps.bodyLimitBytes, { optional: !required });
      options.beforeParse?.(raw);
      input.body = parseOr400(body, raw ?? {}, options.bodyName ?? "body");
    }
    if (options.database) await deps.readiness.require();
    const answer = await handler(c, input as RouteInput<R>);
    if (answer instanceof Response) return answer;
    return c.json(answer.body, answer.status as ContentfulStatusCode, answer.headers);
  };

  const open = deps.accessControl.allow(options.access, handle);
  app.openAPIRegistry.registerPath({
    ...route,
    security: open ? [] : [{ bearer: [] }],
    responses: {
      ...route.responses,
      ...(open ? {} : keyRefusals),
      ...methodNotAllowed,
      ...(options.database ? unavailable : {}),
      ...unexpected,
    },
  });
  app.on(route.method.toUpperCase(), honoPath, handle);
}
