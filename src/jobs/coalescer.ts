import { isTransientError } from "../db/transient.ts";
import {
  compareLockOrder,
  DEFAULT_QUEUE,
  type EnqueuedJob,
  lockOrderKey,
  type NewJob,
} from "./enqueue.ts";

interface Waiting {
  job: NewJob;
  lockOrder: string;
  resolve: (result: EnqueuedJob) => void;
  reject: (error: unknown) => void;
}

/**
 * Group commit for single submissions (`Pgwake.enqueue` without a caller's transaction).
 * Submissions read in the same turn of the event loop go together in one insert statement, and
 * while `maxInFlight` inserts are running, new ones wait and then go together. With no load a
 * submission goes alone at the end of the turn it arrived in, so batching never waits for a
 * timer: it only replaces waiting for a connection, and saves a statement, a commit and their
 * system calls for every submission it joins. Each caller is answered after the statement
 * holding its row has committed.
 *
 * Jobs are validated and given their task's defaults (`Pgwake.prepare`) before they get here,
 * so one bad job does not fail its neighbours; should the database still refuse a batch for its
 * data, every job of that batch is tried alone and only the guilty one fails. Keyed jobs are
 * inserted in lock order (`lockOrderKey`).
 */
export class SubmissionCoalescer {
  private readonly queue: Waiting[] = [];
  private inFlight = 0;
  private flushScheduled = false;
  /** Callers of `drain()`, resolved when nothing is queued or in flight. */
  private drained: (() => void)[] = [];
  private readonly insert: (jobs: NewJob[]) => Promise<EnqueuedJob[]>;
  private readonly options: { maxInFlight: number; maxBatch: number };

  /** `insert` writes one batch in one statement, results in input order (`insertJobs`). */
  constructor(
    insert: (jobs: NewJob[]) => Promise<EnqueuedJob[]>,
    options: { maxInFlight: number; maxBatch: number },
  ) {
    this.insert = insert;
    this.options = options;
  }

  /** Adds one prepared job; resolves after its row (or the original) is committed. */
  submit(job: NewJob): Promise<EnqueuedJob> {
    return new Promise<EnqueuedJob>((resolve, reject) => {
      const lockOrder = lockOrderKey(job.queue ?? DEFAULT_QUEUE, job.idempotencyKey);
      this.queue.push({ job, lockOrder, resolve, reject });
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

  /** Resolves once every submission so far is written (or has failed). */
  drain(): Promise<void> {
    if (this.queue.length === 0 && this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.drained.push(resolve));
  }

  private flush(): void {
    const batch = this.queue.splice(0, this.options.maxBatch);
    if (batch.length === 0) return;
    this.inFlight++;
    void this.write(batch).finally(() => {
      this.inFlight--;
      if (this.queue.length > 0) this.flush();
      else if (this.inFlight === 0) for (const resolve of this.drained.splice(0)) resolve();
    });
  }

  private async write(batch: Waiting[]): Promise<void> {
    if (batch.length > 1) batch.sort(compareLockOrder);
    try {
      const results = await this.insert(batch.map((w) => w.job));
      for (const [i, w] of batch.entries()) w.resolve(results[i]!);
    } catch (error) {
      if (batch.length === 1 || isTransientError(error)) {
        for (const w of batch) w.reject(error);
        return;
      }
      // A data error names no row: find it by trying each job alone.
      await Promise.all(
        batch.map((w) =>
          this.insert([w.job]).then(
            (results) => w.resolve(results[0]!),
            (alone) => w.reject(alone),
          ),
        ),
      );
    }
  }
}
