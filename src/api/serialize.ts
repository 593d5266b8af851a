import type { QueueSettings } from "../jobs/control.ts";
import type { JobEvent } from "../jobs/events.ts";
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
