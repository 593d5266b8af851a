import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type BackoffOptions, DEFAULT_BACKOFF, retryDelayMs } from "../../src/index.ts";

const opts: BackoffOptions = { baseMs: 1_000, factor: 2, maxMs: 60_000 };
/** Just below 1: the largest draw Math.random can give. */
const top = () => 1 - Number.EPSILON;

describe("retryDelayMs", () => {
  it("draws from [0, baseMs] after the first attempt", () => {
    expect(retryDelayMs(1, opts, () => 0)).toBe(0);
    expect(retryDelayMs(1, opts, () => 0.5)).toBe(500);
    expect(retryDelayMs(1, opts, top)).toBe(999);
  });

  it("doubles the window per attempt", () => {
    expect(retryDelayMs(2, opts, () => 0.5)).toBe(1_000);
    expect(retryDelayMs(3, opts, () => 0.5)).toBe(2_000);
    expect(retryDelayMs(4, opts, () => 0.5)).toBe(4_000);
  });

  it("never exceeds the cap, however many attempts", () => {
    expect(retryDelayMs(7, opts, top)).toBe(59_999);
    expect(retryDelayMs(1_000, opts, top)).toBe(59_999);
    // factor^attempt overflows to Infinity: the cap still holds.
    expect(retryDelayMs(100_000, opts, top)).toBe(59_999);
  });

  it("treats attempt 0 and negative attempts like the first", () => {
    expect(retryDelayMs(0, opts, () => 0.5)).toBe(500);
    expect(retryDelayMs(-3, opts, () => 0.5)).toBe(500);
  });

  it("uses the defaults and Math.random when given nothing", () => {
    for (let i = 0; i < 100; i++) {
      const delay = retryDelayMs(1);
      expect(delay).toBeGreaterThanOrEqual(0);
      expect(delay).toBeLessThan(DEFAULT_BACKOFF.baseMs);
    }
  });

  it("is jittered: repeated draws differ", () => {
    const draws = new Set(Array.from({ length: 50 }, () => retryDelayMs(5, opts)));
    expect(draws.size).toBeGreaterThan(10);
  });

  it("always returns an integer in [0, min(maxMs, baseMs * factor^(attempt-1)))", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 200 }),
        fc.integer({ min: 1, max: 100_000 }),
        fc.double({ min: 1, max: 10, noNaN: true }),
        fc.integer({ min: 1, max: 10_000_000 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (attempt, baseMs, factor, maxMs, r) => {
          const delay = retryDelayMs(attempt, { baseMs, factor, maxMs }, () => r);
          const ceiling = Math.min(maxMs, baseMs * factor ** (attempt - 1));
          expect(Number.isInteger(delay)).toBe(true);
          expect(delay).toBeGreaterThanOrEqual(0);
          expect(delay).toBeLessThanOrEqual(Math.max(0, ceiling));
          if (ceiling >= 1) expect(delay).toBeLessThan(ceiling);
        },
      ),
    );
  });

  it("is monotone in the attempt for a fixed draw", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 60 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (attempt, r) => {
          expect(retryDelayMs(attempt + 1, opts, () => r)).toBeGreaterThanOrEqual(
            retryDelayMs(attempt, opts, () => r),
          );
        },
      ),
    );
  });
});
