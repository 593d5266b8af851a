import type pg from "pg";

/** Anything that runs a query: a pool, a pooled client, or the caller's own client. */
export type Queryable = Pick<pg.Pool | pg.PoolClient | pg.Client, "query">;
