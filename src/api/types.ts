/** Context variables every route can read. */
export interface ApiVariables {
  requestId: string;
}

/** The Hono environment of the pgwake API. */
export interface ApiEnv {
  Variables: ApiVariables;
}
