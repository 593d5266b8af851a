import pg from "pg";

// bigint ids fit in a JS number for 2^53 jobs; parse them as numbers, not strings.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));

export interface PoolOptions {
  connectionString: string;
  max?: number;
  applicationName?: string;
  /**
   * `force_generic_plan` (the worker's pool): plan once, run many times. The worker's statements
   * are written so that their best plan does not depend on their values, and a custom plan per
   * execution (what the claim's `LIMIT $n` otherwise triggers) costs more than the claim itself.
   */
  planCacheMode?: "force_generic_plan";
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
    ...(options.planCacheMode ? { options: `-c plan_cache_mode=${options.planCacheMode}` } : {}),
  });
  pool.on("error", (error) => onError?.(error));
  return pool;
}
