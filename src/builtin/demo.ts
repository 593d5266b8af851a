import { z } from "zod";
import { defineTask } from "../tasks.ts";

/** `demo.echo`: completes with its payload, to see a job go through. */
export const demoEcho = defineTask({
  name: "demo.echo",
  schema: z.json(),
  example: { hello: "world" },
  handler: (payload) => payload,
});

const sleepPayload = z.object({
  ms: z.int().min(0).max(3_600_000),
});

/** `demo.sleep`: waits `ms`, and stops at once when the job is cancelled, times out or the worker shuts down. */
export const demoSleep = defineTask({
  name: "demo.sleep",
  schema: sleepPayload,
  example: { ms: 2_000 },
  handler: ({ ms }, ctx) =>
    new Promise<{ sleptMs: number }>((resolve, reject) => {
      const { signal } = ctx;
      if (signal.aborted) {
        reject(signal.reason);
        return;
      }
      const timer = setTimeout(() => {
        signal.removeEventListener("abort", onAbort);
        resolve({ sleptMs: ms });
      }, ms);
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal.reason);
      };
      signal.addEventListener("abort", onAbort, { once: true });
    }),
});

const failPayload = z.object({
  /** Fail this many attempts, then succeed; absent: fail every attempt. */
  failTimes: z.int().min(0).max(1_000).optional(),
  message: z.string().max(1_000).optional(),
});

/**
 * `demo.fail`: fails its first `failTimes` attempts, then completes; without `failTimes` it
 * always fails. Three attempts and a short backoff, so a retry and a dead job show up in seconds.
 */
export const demoFail = defineTask({
  name: "demo.fail",
  schema: failPayload,
  example: { failTimes: 2 },
  maxAttempts: 3,
  backoff: { baseMs: 500, factor: 2, maxMs: 5_000 },
  handler: ({ failTimes, message }, ctx) => {
    if (failTimes === undefined || ctx.attempt <= failTimes) {
      const of = failTimes === undefined ? "always fails" : `fails ${failTimes} time(s)`;
      throw new Error(message ?? `demo.fail: attempt ${ctx.attempt} failed on purpose (${of})`);
    }
    return { succeededOnAttempt: ctx.attempt };
  },
});
