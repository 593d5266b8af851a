import type { QueueSettings } from "../jobs/control.ts";
import type { JobEvent } from "../jobs/events.ts";
import type { QueueFlow } from "../jobs/flowControl.ts";
import type { QueueStats } from "../jobs/queueStats.ts";
import type { Job } from "../jobs/types.ts";

/** A job as the API shows it: camelCase, dates as ISO strings. */
export function jobJson(job: Job) {
  return {
    id: job.id,
    queue: job.queue,
    task: job.task,
    payload: job.payload,
    status: job.status,
    priority: job.priority,
    attempts: job.attempts,
    maxAttempts: job.maxAttempts,
    timeoutMs: job.timeoutMs,
    runAt: job.runAt.toISOString(),
    createdAt: job.createdAt.toISOString(),
    startedAt: job.startedAt?.toISOString() ?? null,
    finishedAt: job.finishedAt?.toISOString() ?? null,
    updatedAt: job.updatedAt.toISOString(),
    result: job.result ?? null,
    lastError: job.lastError,
    idempotencyKey: job.idempotencyKey,
    concurrencyKey: job.concurrencyKey,
    requestId: job.requestId,
    leaseOwner: job.leaseOwner,
    leaseExpiresAt: job.leaseExpiresAt?.toISOString() ?? null,
  };
}

export function eventJson(event: JobEvent) {
  return {
    id: event.id,
    jobId: event.jobId,
    kind: event.kind,
    attempt: event.attempt,
    workerId: event.workerId,
    message: event.message,
    data: event.data ?? null,
    at: event.at.toISOString(),
  };
}

/**
 * Queue stats as the API shows them. Worker times come from the database as JSON text in
 * Postgres's format (`2026-11-29T12:06:19.371902+00:00`): they are written like every other
 * time of the API, ISO 8601 in UTC with milliseconds.
 */
export function queueJson(queue: QueueStats) {
  return {
    name: queue.name,
    paused: queue.paused,
    counts: queue.counts,
    oldestPendingAgeMs: queue.oldestPendingAgeMs,
    workers: queue.workers.map((worker) => ({
      id: worker.id,
      host: worker.host,
      pid: worker.pid,
      concurrency: worker.concurrency,
      listening: worker.listening,
      lastSeenAt: isoTime(worker.lastSeenAt),
    })),
    flow: queue.flow,
  };
}

/** A queue's limits and their state, as `PUT /queues/:name/limits` and its GET show them. */
export function queueLimitsJson(flow: QueueFlow) {
  return {
    name: flow.name,
    limited: flow.limited,
    flow: {
      concurrency: flow.concurrency,
      keyConcurrency: flow.keyConcurrency,
      rateLimit: flow.rateLimit,
      ratePeriodMs: flow.ratePeriodMs,
      rateBurst: flow.rateBurst,
      keyRateLimit: flow.keyRateLimit,
      keyRatePeriodMs: flow.keyRatePeriodMs,
      keyRateBurst: flow.keyRateBurst,
      fair: flow.fair,
      source: flow.source,
      running: flow.running,
      tokens: flow.tokens,
      throttled: flow.throttled,
    },
    updatedAt: flow.updatedAt.toISOString(),
  };
}

export function queueSettingsJson(settings: QueueSettings) {
  return {
    name: settings.name,
    paused: settings.paused,
    updatedAt: settings.updatedAt.toISOString(),
  };
}

function isoTime(value: string | Date): string {
  return (value instanceof Date ? value : new Date(value)).toISOString();
}
