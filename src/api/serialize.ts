import type { JobEvent } from "../jobs/events.ts";
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
