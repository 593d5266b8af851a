// Short polling of the API, the dashboard's only way of staying live: each poll is one request to
// an endpoint whose cost does not grow with history (GET /queues, /workers, /stats/minutes, a job
// by id and its events after a cursor). A poll waits for the previous one to end, and a slow one
// spaces the next out (a tab keeps the server busy at most a fifth of the time); a hidden tab
// does not poll and catches up when shown; a failing poll backs off and is shown as offline.

/** The next poll waits at least this many times as long as the last one took. */
const SPACING = 4;

/** @type {Set<Poller>} */
const pollers = new Set();

/** @type {(ok: boolean, message?: string) => void} */
let report = () => {};

/**
 * Where every poll's outcome is shown (the "live" mark of the header).
 * @param {(ok: boolean, message?: string) => void} listener
 */
export function onPollReport(listener) {
  report = listener;
}

class Poller {
  /**
   * @param {() => Promise<void>} task
   * @param {number} everyMs
   */
  constructor(task, everyMs) {
    this.task = task;
    this.everyMs = everyMs;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.timer = undefined;
    this.running = false;
    this.stopped = false;
    this.again = false;
    this.failures = 0;
    this.tookMs = 0;
  }

  /** Runs now (after the poll in flight, if any), then on the interval. */
  async now() {
    clearTimeout(this.timer);
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    const started = performance.now();
    try {
      await this.task();
      this.tookMs = performance.now() - started;
      this.failures = 0;
      report(true);
    } catch (error) {
      this.failures++;
      if (/** @type {{ status?: number }} */ (error).status === 401) return;
      if (/** @type {{ status?: number }} */ (error).status === 403) return;
      report(false, error instanceof Error ? error.message : String(error));
    } finally {
      this.running = false;
    }
    if (this.again) {
      this.again = false;
      void this.now();
      return;
    }
    this.schedule();
  }

  schedule() {
    if (this.stopped || document.hidden) return;
    const backoff = Math.min(30_000, this.everyMs * 2 ** Math.min(this.failures, 4));
    const spaced = Math.max(this.everyMs, SPACING * this.tookMs);
    this.timer = setTimeout(() => void this.now(), this.failures > 0 ? backoff : spaced);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    pollers.delete(this);
  }
}

/**
 * Runs `task` now and then every `everyMs` while the tab is visible.
 * @param {() => Promise<void>} task
 * @param {number} everyMs
 * @returns {{ now: () => Promise<void>, stop: () => void, every: (ms: number) => void }}
 */
export function poll(task, everyMs) {
  const poller = new Poller(task, everyMs);
  pollers.add(poller);
  void poller.now();
  return {
    now: () => poller.now(),
    stop: () => poller.stop(),
    every: (ms) => {
      poller.everyMs = ms;
    },
  };
}

/** Stops every poll (signed out, or the key was refused). */
export function stopPolls() {
  for (const poller of [...pollers]) poller.stop();
}

document.addEventListener("visibilitychange", () => {
  if (document.hidden) return;
  for (const poller of pollers) void poller.now();
});
