import { fileURLToPath } from "node:url";
import type { Config } from "../config.ts";
import { createLogger, type Logger } from "../logger.ts";

/**
 * The command's root logger: JSON lines, or pino-pretty when asked for (or on a terminal when it
 * is installed; it is a dev dependency, so production images log JSON). `toStderr` keeps stdout
 * free for a command's output (`pgwake enqueue` prints the job there).
 */
export function createCliLogger(
  config: Pick<Config, "logLevel" | "logFormat">,
  options: { toStderr?: boolean } = {},
): Logger {
  const fd = options.toStderr ? 2 : 1;
  const stream = options.toStderr ? process.stderr : process.stdout;
  const pretty =
    config.logFormat === "pretty" || (config.logFormat === "auto" && stream.isTTY === true)
      ? prettyTarget()
      : undefined;
  if (config.logFormat === "pretty" && !pretty) {
    process.stderr.write("pino-pretty is not installed: logging JSON\n");
  }
  if (pretty) {
    return createLogger({
      level: config.logLevel,
      transport: {
        target: pretty,
        options: {
          destination: fd,
          colorize: stream.isTTY === true,
          translateTime: "SYS:HH:MM:ss.l",
        },
      },
    });
  }
  if (options.toStderr) {
    return createLogger({
      level: config.logLevel,
      transport: { target: "pino/file", options: { destination: 2 } },
    });
  }
  return createLogger({ level: config.logLevel });
}

function prettyTarget(): string | undefined {
  try {
    return fileURLToPath(import.meta.resolve("pino-pretty"));
  } catch {
    return undefined;
  }
}

/** Waits until buffered log lines are written (before process.exit). */
export function flushLogger(logger: Logger): Promise<void> {
  return new Promise((resolve) => {
    try {
      logger.flush(() => resolve());
    } catch {
      resolve();
    }
  });
}
