import { nowMs } from "./stats.ts";

/** Runs `count` calls of `call` with `inFlight` at a time; returns calls per second. */
export async function callsPerSecond(
  count: number,
  inFlight: number,
  call: (i: number, lane: number) => Promise<unknown>,
): Promise<number> {
  let next = 0;
  const started = nowMs();
  await Promise.all(
    Array.from({ length: inFlight }, async (_, lane) => {
      while (next < count) {
        const i = next++;
        await call(i, lane);
      }
    }),
  );
  return count / ((nowMs() - started) / 1_000);
}

/** Runs `lanes` loops of `call` for `seconds`; returns completed calls per second. */
export async function ratePerSecondFor(
  seconds: number,
  lanes: number,
  call: (lane: number) => Promise<unknown>,
): Promise<number> {
  let done = 0;
  const started = nowMs();
  const deadline = started + seconds * 1_000;
  await Promise.all(
    Array.from({ length: lanes }, async (_, lane) => {
      while (nowMs() < deadline) {
        await call(lane);
        done++;
      }
    }),
  );
  return done / ((nowMs() - started) / 1_000);
}
