// The per-minute counts of GET /stats/minutes, turned into series for the charts: one value per
// minute of the last hour, in the database's minutes.

import { api } from "./api.js";

/**
 * @typedef {{ queue: string, minute: string, completed: number, failed: number, cancelled: number, retried: number, runMs: number, waitMs: number }} Minute
 * @typedef {{ now: string, from: string, minutes: Minute[] }} Minutes
 */

/**
 * The last `count` minutes, of every queue or one.
 * @param {number} count
 * @param {string} [queue]
 * @returns {Promise<{ minutes: Date[], byQueue: Map<string, Minute[]> }>}
 */
export async function readMinutes(count, queue) {
  /** @type {Minutes} */
  const data = await api("stats/minutes", { query: { minutes: count, queue } });
  const from = Date.parse(data.from);
  const minutes = Array.from({ length: count }, (_, i) => new Date(from + i * 60_000));
  /** @type {Map<string, Minute[]>} */
  const byQueue = new Map();
  for (const row of data.minutes) {
    let slots = byQueue.get(row.queue);
    if (!slots) {
      slots = Array.from({ length: count }, (_, i) => ({
        queue: row.queue,
        minute: minutes[i].toISOString(),
        completed: 0,
        failed: 0,
        cancelled: 0,
        retried: 0,
        runMs: 0,
        waitMs: 0,
      }));
      byQueue.set(row.queue, slots);
    }
    const i = Math.round((Date.parse(row.minute) - from) / 60_000);
    if (i >= 0 && i < count) slots[i] = row;
  }
  return { minutes, byQueue };
}

/**
 * Attempts that ended in a minute (what wait and run times are summed over).
 * @param {Minute} m
 */
export function ended(m) {
  return m.completed + m.failed + m.retried;
}

/**
 * The mean wait before start in a minute, or null when nothing ended.
 * @param {Minute} m
 */
export function meanWait(m) {
  const n = ended(m);
  return n === 0 ? null : m.waitMs / n;
}

/**
 * The mean run time in a minute, or null when nothing ended.
 * @param {Minute} m
 */
export function meanRun(m) {
  const n = ended(m);
  return n === 0 ? null : m.runMs / n;
}
