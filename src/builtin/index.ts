import type { AnyTaskDefinition } from "../tasks.ts";
import { demoEcho, demoFail, demoSleep } from "./demo.ts";
import { httpRequest } from "./http-request.ts";

export { demoEcho, demoFail, demoSleep } from "./demo.ts";
export {
  HttpRequestError,
  type HttpRequestPayload,
  type HttpRequestResult,
  httpRequest,
  MAX_BODY_BYTES,
} from "./http-request.ts";

/** The tasks `pgwake start` and `pgwake worker` register unless PGWAKE_BUILTIN_TASKS=off. */
export const BUILTIN_TASKS: readonly AnyTaskDefinition[] = [
  httpRequest,
  demoEcho,
  demoSleep,
  demoFail,
];
