/**
 * Errors after which the same statement may succeed if tried again: lost or refused
 * connections, a server shutting down or starting, deadlocks and serialisation failures.
 * One table, so every retry in the library agrees on what is worth retrying.
 */
const TRANSIENT_SQLSTATES = new Set([
  "40001", // serialization_failure
  "40P01", // deadlock_detected
  "53300", // too_many_connections
  "55P03", // lock_not_available
  "57P01", // admin_shutdown (also pg_terminate_backend)
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now (starting up)
  "08000", // connection_exception
  "08001", // sqlclient_unable_to_establish_sqlconnection
  "08003", // connection_does_not_exist
  "08004", // sqlserver_rejected_establishment_of_sqlconnection
  "08006", // connection_failure
]);

const TRANSIENT_NODE_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
]);

const TRANSIENT_MESSAGES = [
  "Connection terminated",
  "Client has encountered a connection error",
  "timeout exceeded when trying to connect",
  "Client was closed and is not queryable",
];

/** True when the error says "the database is (briefly) unreachable or busy", not "you are wrong". */
export function isTransientError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (
    typeof code === "string" &&
    (TRANSIENT_SQLSTATES.has(code) || TRANSIENT_NODE_CODES.has(code))
  ) {
    return true;
  }
  if (TRANSIENT_MESSAGES.some((m) => error.message.includes(m))) return true;
  return error.cause !== undefined && error.cause !== error && isTransientError(error.cause);
}
