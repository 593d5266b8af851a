/** Exit codes of the `pgwake` command. */
export const EXIT = {
  ok: 0,
  /** The command ran and failed (database down, port taken, a task module that throws). */
  failure: 1,
  /** The command line or the configuration is wrong; nothing was started. */
  usage: 2,
} as const;

/** A mistake on the command line or in the configuration: reported without a stack, exit 2. */
export class UsageError extends Error {
  readonly code = "USAGE";
  readonly exitCode: number = EXIT.usage;

  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.name = "UsageError";
  }
}

/** The command failed for a reason the user can act on: message only, exit 1. */
export class CommandError extends Error {
  readonly code = "COMMAND_FAILED";
  readonly exitCode: number = EXIT.failure;

  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.name = "CommandError";
  }
}
