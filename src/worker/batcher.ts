import { isTransientError } from "../db/transient.ts";

export interface BatcherOptions<T> {
  /** Writes one batch; throwing a transient error keeps the batch for another try. */
  write: (items: T[]) => Promise<void>;
  /** How long an item may wait for company. */
  delayMs: number;
  /** Flush at once when this many items wait. */
  maxBatch: number;
  onError: (error: unknown, items: T[]) => void;
  /** After each write, successful or not (the worker claims again when outcomes drain). */
  onWritten?: () => void;
}

/**
 * Collects items and writes them in batches: after `delayMs`, or as soon as `maxBatch` wait.
 * One write at a time; a batch that hit a transient database error is retried with backoff
 * (its jobs stay leased meanwhile, so nothing is lost if the process dies).
 */
export class Batcher<T> {
  private queue: T[] = [];
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  private failures = 0;
  private closed = false;
  private backoff: { timer: NodeJS.Timeout; resolve: () => void } | undefined;
  private readonly options: BatcherOptions<T>;

  constructor(options: BatcherOptions<T>) {
    this.options = options;
  }

  get pending(): number {
    return this.queue.length;
  }

  /** The items waiting to be written (for heartbeats). */
  items(): readonly T[] {
    return this.queue;
  }

  /**
   * Drops everything not written: a retry waiting for its backoff gives up. With `close`, it also
   * stops for good (nothing added later is written): for a shutdown, not for a worker that starts
   * over and goes on writing. Returns how many items were dropped.
   */
  clear(options: { close: boolean }): number {
    if (options.close) this.closed = true;
    const dropped = this.queue.length;
    this.queue = [];
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.backoff) {
      clearTimeout(this.backoff.timer);
      this.backoff.resolve();
    }
    return dropped;
  }

  add(item: T): void {
    if (this.closed) return;
    this.queue.push(item);
    if (this.queue.length >= this.options.maxBatch) this.kick(0);
    else this.kick(this.options.delayMs);
  }

  /** Writes everything now; resolves when nothing is left or a non-transient error dropped it. */
  async flush(): Promise<void> {
    while ((this.queue.length > 0 || this.writing) && !this.closed) {
      if (this.timer) {
        clearTimeout(this.timer);
        this.timer = undefined;
      }
      await (this.writing ?? this.writeNext());
    }
  }

  private kick(delayMs: number): void {
    if (this.writing) return; // the running write schedules the next one
    if (this.timer && delayMs > 0) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.writeNext();
    }, delayMs);
  }

  private writeNext(): Promise<void> {
    if (this.writing) return this.writing;
    const batch = this.queue.splice(0, this.options.maxBatch);
    if (batch.length === 0) return Promise.resolve();
    this.writing = (async () => {
      try {
        await this.options.write(batch);
        this.failures = 0;
      } catch (error) {
        if (isTransientError(error)) {
          this.failures++;
          if (!this.closed) this.queue.unshift(...batch);
          this.options.onError(error, batch);
          await new Promise<void>((resolve) => {
            this.backoff = {
              timer: setTimeout(resolve, Math.min(5_000, 50 * 2 ** this.failures)),
              resolve,
            };
          });
          this.backoff = undefined;
        } else if (batch.length > 1) {
          // One bad item (data the database refuses) must not cost the others their outcome:
          // write them one by one, and drop only what fails on its own.
          for (const item of batch) {
            try {
              await this.options.write([item]);
            } catch (itemError) {
              this.options.onError(itemError, [item]);
            }
          }
        } else {
          this.options.onError(error, batch);
        }
      } finally {
        this.writing = undefined;
        this.options.onWritten?.();
      }
      if (this.queue.length > 0 && !this.closed) {
        this.kick(this.queue.length >= this.options.maxBatch ? 0 : this.options.delayMs);
      }
    })();
    return this.writing;
  }
}
