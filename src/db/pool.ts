import { Socket } from "node:net";
import pg from "pg";

// bigint ids fit in a JS number for 2^53 jobs; parse them as numbers, not strings.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));

/**
 * How long pgwake lets a connection be silent, by default. A statement that has had no answer
 * after this long is abandoned and its connection destroyed; an idle connection whose peer went
 * away without a word is found by TCP keepalive within about the same time. See `createPool`.
 */
export const DEFAULT_NETWORK_TIMEOUT_MS = 15_000;

export interface PoolOptions {
  connectionString: string;
  max?: number;
  applicationName?: string;
  /**
   * Fixed plans (the worker's pool), three session settings:
   * - `plan_cache_mode = force_generic_plan`: plan once, run many times. The worker's statements
   *   are written so that their best plan does not depend on their values, and a custom plan per
   *   execution (what a `LIMIT $n` otherwise triggers) costs more than the statement.
   * - `enable_seqscan = off`: a queue table's statistics trail its contents. A generic plan made
   *   while the table was empty scans it whole, and keeps doing so as it grows until the next
   *   ANALYZE. Every worker statement has an index to use; this makes the planner take it.
   * - `jit = off`: the setting above inflates estimated costs past `jit_above_cost`, and JIT
   *   compiling a claim took 200 ms. These statements touch a few rows; JIT never pays off.
   * Ignored in `pooler` mode, which may send no startup parameters.
   */
  fixedPlans?: boolean;
  /**
   * Behind a transaction-mode pooler (PgBouncer): no startup parameters (a pooler refuses
   * `options`) and, through `SchemaSql`, no named prepared statements. Timeouts then rely on the
   * client side and on what the database or role sets (`ALTER ROLE … SET statement_timeout`).
   */
  pooler?: boolean;
  /**
   * The connection fault model (DESIGN.md invariant 9), default 15 s:
   * - every statement is abandoned by the client after this long without an answer and its
   *   connection destroyed (a silent peer never answers, and the connection is out of step);
   * - the server cancels a statement after this long (`statement_timeout`, not in pooler mode);
   * - TCP keepalive starts probing an idle connection after a third of it (libuv then probes
   *   every second, 10 times), so a peer gone silent is found without a statement;
   * - connecting gives up after this long.
   */
  networkTimeoutMs?: number;
}

/**
 * The sockets of a pool or a listener, so that shutdown can end them at a deadline: `end()` on a
 * connection whose peer went silent waits for an answer that never comes, and the open socket
 * would keep the process alive.
 */
export class SocketTracker {
  private readonly sockets = new Set<Socket>();
  private closed = false;

  /** pg's `stream` option: called for each new connection; refuses once closed. */
  readonly factory = (): Socket => {
    if (this.closed) throw new Error("connections are closed");
    const socket = new Socket();
    this.sockets.add(socket);
    socket.once("close", () => this.sockets.delete(socket));
    return socket;
  };

  get size(): number {
    return this.sockets.size;
  }

  /** Destroys every socket still open and refuses new ones. */
  close(): void {
    this.closed = true;
    this.destroyAll();
  }

  /** Destroys every socket still open; pending statements fail with a connection error. */
  destroyAll(): void {
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
  }
}

/** The pg settings of the fault model for one connection (pool members and LISTEN connections). */
export function connectionConfig(options: PoolOptions, sockets?: SocketTracker): pg.ClientConfig {
  const timeout = options.networkTimeoutMs ?? DEFAULT_NETWORK_TIMEOUT_MS;
  const settings = options.pooler
    ? undefined
    : [
        `-c statement_timeout=${timeout}`,
        // The server drops a client that stopped answering, so its locks and backend go too.
        "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=1 -c tcp_keepalives_count=10",
        // pgwake's statements are short: compiling one (JIT) costs more than it ever saves,
        // and the estimates of a large history made every `GET /queues` compile for seconds.
        "-c jit=off",
        ...(options.fixedPlans
          ? ["-c plan_cache_mode=force_generic_plan -c enable_seqscan=off"]
          : []),
      ].join(" ");
  return {
    connectionString: options.connectionString,
    application_name: options.applicationName ?? "pgwake",
    connectionTimeoutMillis: timeout,
    query_timeout: timeout + 1_000,
    keepAlive: true,
    keepAliveInitialDelayMillis: Math.max(1_000, Math.round(timeout / 3)),
    ...(settings ? { options: settings } : {}),
    ...(sockets ? { stream: sockets.factory } : {}),
  };
}

/**
 * A pool that survives its server going away or going silent: idle-client errors are logged, not
 * thrown; statements time out on the client and their connection is destroyed (pg-pool removes a
 * client released with an error, and `end()` destroys a socket with a statement in flight).
 */
export function createPool(
  options: PoolOptions,
  onError?: (error: Error) => void,
  sockets?: SocketTracker,
): pg.Pool {
  const pool = new pg.Pool({
    ...connectionConfig(options, sockets),
    max: options.max ?? 10,
    idleTimeoutMillis: 30_000,
  });
  pool.on("error", (error) => onError?.(error));
  // The pool listens to its idle clients only. A client it is ending (`pool.end()`, an idle
  // timeout) listens to nobody while its Terminate is on the way, and a server shutting down
  // at that moment (57P01) would end the process with an unhandled 'error'. A query in flight
  // fails with the error anyway; this listener only keeps the process alive.
  pool.on("connect", (client) => client.on("error", () => {}));
  return pool;
}

/**
 * Checks a client out of the pool with an error listener attached for as long as it is held: a
 * connection that drops while checked out emits `'error'` on the client, and with no listener
 * that ends the process. The client is released (destroyed after an error) when `use` settles.
 */
export async function withClient<T>(
  pool: pg.Pool,
  use: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  let failure: Error | undefined;
  const onError = (error: Error) => {
    failure = error;
  };
  client.on("error", onError);
  try {
    return await use(client);
  } catch (error) {
    failure ??= error instanceof Error && isConnectionBroken(error) ? error : undefined;
    throw error;
  } finally {
    client.off("error", onError);
    client.release(failure);
  }
}

function isConnectionBroken(error: Error): boolean {
  return (
    error.message.includes("Query read timeout") ||
    error.message.includes("Connection terminated") ||
    (error as { code?: string }).code === "ECONNRESET"
  );
}
