import pg from "pg";

// bigint ids fit in a JS number for 2^53 jobs; parse them as numbers, not strings.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));

export interface PoolOptions {
  connectionString: string;
  max?: number;
  applicationName?: string;
  /**
   * Plan once, run many times: the worker's statements differ only in values, and a custom
   * plan per execution (what `LIMIT $n` otherwise triggers) costs more than the claim itself.
   */
  genericPlans?: boolean;
}

/** A pool that survives its server going away: idle-client errors are logged, not thrown. */
export function createPool(options: PoolOptions, onError?: (error: Error) => void): pg.Pool {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.max ?? 10,
    application_name: options.applicationName ?? "pgwake",
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
    ...(options.genericPlans ? { options: "-c plan_cache_mode=force_generic_plan" } : {}),
  });
  pool.on("error", (error) => onError?.(error));
  return pool;
}
