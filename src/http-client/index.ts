/**
 * The typed HTTP client of pgwake (`pgwake/client`): submit and follow jobs from another
 * TypeScript service, over HTTP. Its types are generated from the API's OpenAPI document.
 *
 * @example
 * import { PgwakeClient, PgwakeApiError } from "pgwake/client";
 * const jobs = new PgwakeClient({ baseUrl: "http://localhost:3000", apiKey: process.env.PGWAKE_KEY });
 * const { job } = await jobs.submit({ task: "demo.echo", payload: { hello: "world" } });
 * const done = await jobs.waitUntilFinished(job.id);
 */
export type * from "./api-types.ts";
export { OPERATIONS } from "./api-types.ts";
export { type PollBackoff, pollDelayMs } from "./backoff.ts";
export {
  type CallOptions,
  FINISHED_STATUSES,
  type JobInput,
  PgwakeClient,
  type PgwakeClientOptions,
  type TaskMap,
  type WaitOptions,
} from "./client.ts";
export { PgwakeApiError, type PgwakeErrorCode } from "./errors.ts";
