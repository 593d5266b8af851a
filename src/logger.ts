import { type Logger, type LoggerOptions, pino } from "pino";

export type { Logger } from "pino";

/** The root logger: JSON lines on stdout; secrets in connection strings are redacted. */
export function createLogger(
  options: LoggerOptions = {},
  destination?: pino.DestinationStream,
): Logger {
  const settings: LoggerOptions = {
    level: process.env.PGWAKE_LOG_LEVEL ?? "info",
    base: { service: "pgwake" },
    redact: {
      paths: ["connectionString", "databaseUrl", "*.connectionString", "*.databaseUrl", "apiKeys"],
      censor: "[redacted]",
    },
    ...options,
  };
  return destination ? pino(settings, destination) : pino(settings);
}

/** A logger that drops everything: the default for library use when none is given. */
export const silentLogger: Logger = pino({ level: "silent" });
