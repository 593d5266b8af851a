import pgListen from "pg-listen";
import type { Logger } from "../logger.ts";

export interface ListenerOptions {
  connectionString: string;
  channels: readonly string[];
  /** How often the connection is checked with a query (a silent drop is found this way). */
  livenessMs: number;
  logger: Logger;
  onNotification: (channel: string, payload: string) => void;
  /** After the first connection and after every reconnection: the worker claims at once. */
  onConnected: () => void;
  onDisconnected: () => void;
}

// pg-listen is CommonJS: under Node's ESM loader its default export sits on `.default`.
const createSubscriber = pgListen.default;
type Subscriber = ReturnType<typeof createSubscriber>;

/**
 * One dedicated LISTEN connection per process. It never gives up reconnecting: a database
 * restart or a terminated backend costs wake-ups for a while, never correctness, because the
 * worker polls and claims again as soon as the connection is back.
 */
export class Listener {
  private subscriber: Subscriber | undefined;
  private closed = false;
  private retry: NodeJS.Timeout | undefined;
  connected = false;
  private readonly options: ListenerOptions;

  constructor(options: ListenerOptions) {
    this.options = options;
  }

  start(): void {
    void this.open(0);
  }

  private async open(attempt: number): Promise<void> {
    if (this.closed) return;
    const { options } = this;
    const subscriber = createSubscriber(
      { connectionString: options.connectionString, application_name: "pgwake-listener" },
      {
        retryInterval: (n: number) => Math.min(2_000, 100 * 2 ** n),
        retryLimit: Number.POSITIVE_INFINITY,
        retryTimeout: Number.POSITIVE_INFINITY,
        paranoidChecking: options.livenessMs,
        parse: (text: string) => text,
      },
    );
    subscriber.events.on(
      "notification",
      ({ channel, payload }: { channel: string; payload?: unknown }) => {
        options.onNotification(channel, typeof payload === "string" ? payload : "");
      },
    );
    let listening = false;
    subscriber.events.on("connected", () => {
      // The first "connected" comes before LISTEN ran; reconnects come after re-LISTEN.
      if (this.closed || !listening) return;
      this.connected = true;
      options.logger.debug("listener connected");
      options.onConnected();
    });
    subscriber.events.on("reconnect", (n: number) => {
      if (this.connected) {
        this.connected = false;
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
      await Promise.all(options.channels.map((channel) => subscriber.listenTo(channel)));
      listening = true;
      if (this.closed) return;
      this.connected = true;
      options.onConnected();
    } catch (error) {
      // pg-listen retries lost connections, but not a first connection that fails.
      this.subscriber = undefined;
      this.connected = false;
      await subscriber.close().catch(() => {});
      if (this.closed) return;
      const delay = Math.min(2_000, 100 * 2 ** attempt);
      if (attempt === 0 || attempt % 20 === 0) {
        options.logger.warn({ err: error, delayMs: delay }, "listener could not connect; retrying");
      }
      this.retry = setTimeout(() => void this.open(attempt + 1), delay);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.connected = false;
    if (this.retry) clearTimeout(this.retry);
    const subscriber = this.subscriber;
    this.subscriber = undefined;
    if (subscriber) await subscriber.close().catch(() => {});
  }
}
