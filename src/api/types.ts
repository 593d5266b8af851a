import type { Logger } from "../logger.ts";

/** Context variables every route can read. */
export interface ApiVariables {
  requestId: string;
  logger: Logger;
}

/** The Hono environment of the pgwake API. */
export interface ApiEnv {
  Variables: ApiVariables;
}
