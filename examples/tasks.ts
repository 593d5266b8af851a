/**
 * An example task module. Run it with the built-ins alongside:
 *
 *   npm start -- --tasks examples/tasks.ts
 *   node bin/pgwake.js enqueue welcome-email '{"userId":1,"email":"ada@example.com"}' \
 *     --tasks examples/tasks.ts     # so that it knows the task (and checks the payload)
 *
 * In your own project import from "pgwake" instead of "../src/index.ts". TypeScript modules load
 * as they are: Node strips the types, no build step.
 */
import { z } from "zod";
import { defineTask, PermanentError } from "../src/index.ts";

/** Sends (here: pretends to send) a welcome email; retried on failure like any task. */
export const welcomeEmail = defineTask({
  name: "welcome-email",
  schema: z.object({ userId: z.int().positive(), email: z.email() }),
  example: { userId: 1, email: "ada@example.com" },
  queue: "default",
  maxAttempts: 5,
  timeoutMs: 30_000,
  handler: async ({ userId, email }, ctx) => {
    if (email.endsWith("@invalid.example")) {
      // Retrying cannot fix an address that does not exist: fail at once.
      throw new PermanentError(`undeliverable address ${email}`);
    }
    ctx.log("rendering template", { userId });
    ctx.logger.info({ userId }, "sending welcome email");
    return { sentTo: email, attempt: ctx.attempt };
  },
});

/** A longer job that reports progress in its timeline and stops when it is cancelled. */
export const buildReport = defineTask({
  name: "build-report",
  schema: z.object({ rows: z.int().min(1).max(1_000_000).default(1_000) }),
  example: { rows: 1_000 },
  handler: async ({ rows }, ctx) => {
    let total = 0;
    for (let done = 0; done < rows; done += 100) {
      ctx.signal.throwIfAborted();
      for (let i = done; i < Math.min(rows, done + 100); i++) total += i;
      if (done % 10_000 === 0) ctx.log("progress", { done, rows });
      await new Promise((resolve) => setImmediate(resolve));
    }
    return { rows, total };
  },
});

export default [welcomeEmail, buildReport];
