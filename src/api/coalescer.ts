import type { Pgwake } from "../client.ts";
import { isTransientError } from "../db/transient.ts";
import type { EnqueuedJob, NewJob } from "../jobs/enqueue.ts";

interface Waiting {
  job: NewJob;
  /** Queue and idempotency key after task defaults, for a stable insert order. */
  sortKey: string;
  resolve: (result: EnqueuedJob) => void;
  reject: (error: unknown) => void;
}

/**
 * Group commit for single submissions. Submissions read in the same turn of the event loop go
 * together in one `enqueueMany` statement, and while `maxInFlight` inserts are running, new ones
 * wait and then go together. With no load a submission goes alone at the end of the turn it
 * arrived in, so batching never waits for a timer: it only replaces waiting for a connection,
 * and saves a statement, a commit and their system calls for every submission it joins.
 * Each caller is answered after the statement holding its row has committed.
 *
 * Jobs are validated by the caller (`pgwake.prepare`) before they get here, so one bad job does
 * not fail its neighbours; should the database still refuse a batch for its data, every job of
 * that batch is tried alone and only the guilty one fails. Keyed jobs are inserted in
 * (queue, key) order so that two batches racing on the same keys wait for each other rather
 * than deadlock.
 */
export class SubmissionCoalescer {
  private readonly queue: Waiting[] = [];
  private inFlight = 0;
  private flushScheduled = false;
  private readonly pgwake: Pgwake;
  private readonly options: { maxInFlight: number; maxBatch: number };

  constructor(pgwake: Pgwake, options: { maxInFlight: number; maxBatch: number }) {
    this.pgwake = pgwake;
    this.options = options;
  }

  /** Adds one (already validated) job; resolves after its row (or the original) is committed. */
  submit(job: NewJob, resolvedQueue: string): Promise<EnqueuedJob> {
    return new Promise<EnqueuedJob>((resolve, reject) => {
      const sortKey =
        job.idempotencyKey === undefined ? "" : `${resolvedQueue}\u0000${job.idempotencyKey}`;
      this.queue.push({ job, sortKey, resolve, reject });
      if (this.inFlight < this.options.maxInFlight && !this.flushScheduled) {
        // Requests read in the same turn of the event loop go together: the flush waits for
        // the rest of this turn's I/O, not for a timer.
        this.flushScheduled = true;
        setImmediate(() => {
          this.flushScheduled = false;
          if (this.inFlight < this.options.maxInFlight) this.flush();
        });
      }
    });
  }

  private flush(): void {
    const batch = this.queue.splice(0, this.options.maxBatch);
    if (batch.length === 0) return;
    this.inFlight++;
    void this.insert(batch).finally(() => {
      this.inFlight--;
      if (this.queue.length > 0) this.flush();
    });
  }

  private async insert(batch: Waiting[]): Promise<void> {
    if (batch.length > 1)
      batch.sort((a, b) => (a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0));
    try {
      const results = await this.pgwake.enqueueMany(batch.map((w) => w.job));
      for (const [i, w] of batch.entries()) w.resolve(results[i]!);
    } catch (error) {
      if (batch.length === 1 || isTransientError(error)) {
        for (const w of batch) w.reject(error);
        return;
      }
      // A data error names no row: find it by trying each job alone.
      await Promise.all(
        batch.map((w) =>
          this.pgwake.enqueueMany([w.job]).then(
            (results) => w.resolve(results[0]!),
            (alone) => w.reject(alone),
          ),
        ),
      );
    }
  }
}
