import { randomUUID } from "node:crypto";
import pgListen from "pg-listen";
import { connectionConfig, SocketTracker } from "../db/pool.ts";
import type { Logger } from "../logger.ts";

export interface ListenerOptions {
  connectionString: string;
  channels: readonly string[];
  /**
   * How often the connection is checked with a query, and how long that query (and a connect)
   * may take: a connection that went silent without a reset is found within about twice this.
   */
  livenessMs: number;
  logger: Logger;
  onNotification: (channel: string, payload: string) => void;
  /**
   * After the first connection and after every reconnection, with the listening backend's pid
   * (wake-up tokens carry it, so a token of a dead listener wakes nobody): claim at once.
   */
  onConnected: (backendPid: number) => void;
  onDisconnected: () => void;
}

// pg-listen is CommonJS: under Node's ESM loader its default export sits on `.default`.
const createSubscriber = pgListen.default;
type Subscriber = ReturnType<typeof createSubscriber>;

type ListenerState = "idle" | "connecting" | "listening" | "reconnecting" | "closed";

/**
 * One dedicated LISTEN connection per process (pg-listen). It never gives up reconnecting: a
 * database restart, a terminated backend or a silent network costs wake-ups for a while, never
 * correctness, because the worker polls and claims again as soon as the connection is back.
 *
 * A connection that goes silent (no reset: packets simply stop) is found by pg-listen's periodic
 * check, which fails because every query on this connection has a time limit (`livenessMs`);
 * pg-listen then drops the connection and reconnects, each attempt bounded by the same limit.
 */
export class Listener {
  private state: ListenerState = "idle";
  private subscriber: Subscriber | undefined;
  private retry: NodeJS.Timeout | undefined;
  private readonly sockets = new SocketTracker();
  /**
   * A channel of this listener alone, which it notifies to learn its backend's pid (the
   * notification carries the sender's). Unique: every listener of the server would hear a
   * shared one, and take another's pid for its own.
   */
  private readonly whoAmI = `pgwake_listener_${randomUUID().replaceAll("-", "")}`;
  private readonly options: ListenerOptions;

  constructor(options: ListenerOptions) {
    this.options = options;
  }

  private get closed(): boolean {
    return this.state === "closed";
  }

  /** True while notifications can arrive. */
  get connected(): boolean {
    return this.state === "listening";
  }

  start(): void {
    if (this.state !== "idle") throw new Error(`listener cannot start while ${this.state}`);
    void this.open(0);
  }

  private async open(attempt: number): Promise<void> {
    if (this.closed) return;
    this.state = "connecting";
    const { options } = this;
    const config = connectionConfig(
      {
        connectionString: options.connectionString,
        applicationName: "pgwake-listener",
        networkTimeoutMs: options.livenessMs,
        // No statement on this connection runs for long; LISTEN must not need session options.
        pooler: true,
      },
      this.sockets,
    );
    const subscriber = createSubscriber(config, {
      // Throwing ends pg-listen's reconnection loop, which does not stop on close() by itself.
      retryInterval: (n: number) => {
        if (this.state === "closed") throw new Error("listener closed");
        return Math.min(2_000, 100 * 2 ** n);
      },
      retryLimit: Number.POSITIVE_INFINITY,
      retryTimeout: Number.POSITIVE_INFINITY,
      paranoidChecking: options.livenessMs,
      parse: (text: string) => text,
    });
    subscriber.events.on(
      "notification",
      ({
        channel,
        payload,
        processId,
      }: {
        channel: string;
        payload?: unknown;
        processId: number;
      }) => {
        if (channel === this.whoAmI) {
          if (this.closed) return;
          this.state = "listening";
          options.logger.debug({ backendPid: processId }, "listener connected");
          options.onConnected(processId);
          return;
        }
        options.onNotification(channel, typeof payload === "string" ? payload : "");
      },
    );
    subscriber.events.on("connected", () => {
      // After a reconnection (pg-listen has run LISTEN again): learn the new backend's pid.
      if (this.state === "reconnecting") void this.identify(subscriber);
    });
    subscriber.events.on("reconnect", (n: number) => {
      if (this.state === "listening") {
        this.state = "reconnecting";
        options.onDisconnected();
      }
      if (n === 1 || n % 20 === 0) options.logger.warn({ attempt: n }, "listener reconnecting");
    });
    subscriber.events.on("error", (error: Error) => {
      options.logger.warn({ err: error }, "listener error");
    });
    this.subscriber = subscriber;
    try {
      await subscriber.connect();
      for (const channel of [...options.channels, this.whoAmI]) await subscriber.listenTo(channel);
      this.state = "reconnecting";
      await this.identify(subscriber);
    } catch (error) {
      // pg-listen retries lost connections, but not a first connection that fails.
      this.subscriber = undefined;
      await subscriber.close().catch(() => {});
      if (this.closed) return;
      this.state = "connecting";
      const delay = Math.min(2_000, 100 * 2 ** attempt);
      if (attempt === 0 || attempt % 20 === 0) {
        options.logger.warn({ err: error, delayMs: delay }, "listener could not connect; retrying");
      }
      this.retry = setTimeout(() => void this.open(attempt + 1), delay);
    }
  }

  /** The listener notifies itself; the notification carries its backend's pid. */
  private async identify(subscriber: Subscriber): Promise<void> {
    try {
      await subscriber.notify(this.whoAmI);
    } catch (error) {
      this.options.logger.debug({ err: error }, "listener could not identify itself");
    }
  }

  /** Closes the connection; resolves once it is gone (or after `livenessMs` at most). */
  async close(): Promise<void> {
    this.state = "closed";
    clearTimeout(this.retry);
    const subscriber = this.subscriber;
    this.subscriber = undefined;
    if (!subscriber) {
      this.sockets.close();
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      subscriber.close().catch(() => {}),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.options.livenessMs);
      }),
    ]);
    clearTimeout(timer);
    this.sockets.close();
  }
}
