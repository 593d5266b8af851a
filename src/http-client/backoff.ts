/** How `waitUntilFinished` spaces its polls. */
export interface PollBackoff {
  /** First wait, in ms (default 100). */
  initialDelayMs?: number;
  /** Longest wait, in ms (default 5,000). */
  maxDelayMs?: number;
  /** Growth per poll (default 1.5). */
  factor?: number;
}

/**
 * The wait before poll `n` (0-based): `initial · factor^n`, capped, with ±20 % jitter so that
 * many clients waiting on jobs submitted together do not poll in step.
 */
export function pollDelayMs(n: number, backoff: PollBackoff = {}, random = Math.random): number {
  const initial = backoff.initialDelayMs ?? 100;
  const max = backoff.maxDelayMs ?? 5_000;
  const factor = backoff.factor ?? 1.5;
  const base = Math.min(max, initial * factor ** n);
  return Math.max(0, Math.round(base * (0.8 + 0.4 * random())));
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
