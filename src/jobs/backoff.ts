/** How long to wait before the next attempt: exponential, capped, with full jitter. */
export interface BackoffOptions {
  /** Delay ceiling of the first retry. */
  baseMs: number;
  /** Growth per attempt. */
  factor: number;
  /** No retry waits longer than this. */
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 1_000, factor: 2, maxMs: 3_600_000 };

/**
 * The delay before retrying after failed attempt number `attempt` (1-based): a uniform draw
 * from [0, min(maxMs, baseMs * factor^(attempt-1))]. Full jitter spreads a burst of failures
 * (a downstream outage) over the whole window instead of retrying them in lockstep.
 */
export function retryDelayMs(
  attempt: number,
  options: BackoffOptions = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const exponent = Math.max(0, attempt - 1);
  const ceiling = Math.min(options.maxMs, options.baseMs * options.factor ** exponent);
  return Math.floor(random() * ceiling);
}
