/**
 * A fault-injection TCP proxy for the fault tests: it sits between a client (a pgwake worker, the
 * API, node-pg) and a server (Postgres, or any TCP server) on real sockets and breaks the path the
 * way real networks break it — a silent NAT or load balancer (blackhole), a peer that stops
 * reading (stall), resets, refused connections — for the whole proxy, for one connection, or at
 * the exact byte where a chosen Postgres message passes. See test/faults/PROXY.md.
 *
 * Each connection is two pipes, client → server (`toServer`) and server → client (`toClient`).
 * A pipe frames the Postgres protocol as it goes (startup packet, then typed messages) so that
 * triggers can cut on message boundaries and the startup parameters tell connections apart; for
 * any other protocol the framer gives up and the pipe forwards bytes as they are.
 */
import { EventEmitter } from "node:events";
import { connect, createServer, type Server, type Socket } from "node:net";

/** Which way bytes travel: client → server or server → client. */
export type Direction = "toServer" | "toClient";
/** The directions a silence applies to. */
export type SilenceDirection = Direction | "both";
/**
 * `blackhole`: keep reading and drop (the sender's kernel sees its bytes acknowledged);
 * `stall`: stop reading (buffers fill, the sender's writes eventually block).
 */
export type Silence = "blackhole" | "stall";
/**
 * What one connection does. A string silence applies to both directions; the object form silences
 * one direction and lets the other pass. `reset` sends an RST to both peers now. Modes are
 * absolute: setting a mode replaces the previous one in both directions.
 */
export type ConnectionMode =
  | "pass"
  | "reset"
  | Silence
  | { silence: Silence; direction: SilenceDirection };
/**
 * What the whole proxy does. `refuse` resets new connections at once and leaves existing ones
 * alone; `reset` resets every existing connection now and leaves the mode for new connections as
 * it was; the others apply to every existing connection and to every new one.
 */
export type ProxyMode = ConnectionMode | "refuse";
/** What one direction of one connection does. */
export type PipeMode = "pass" | Silence;

/** The first packet a Postgres client sends, as the proxy read it. */
export type PgStartupPacket =
  | { kind: "startup"; protocol: string; parameters: Readonly<Record<string, string>> }
  | { kind: "cancel"; processId: number }
  | { kind: "sslRequest" }
  | { kind: "gssEncRequest" };

/**
 * When a trigger fires, in the bytes of one direction (stream offsets count from the first byte
 * the source sent on that connection):
 * - `bytes`: a raw pattern of at most 1,024 bytes;
 * - `message`: a Postgres message of the given type(s) (`"Q"`, `"P"`, `"B"`, `"C"`, …) whose
 *   body, read as UTF-8, contains the text or matches the expression;
 * - `query`: shorthand for a Query or Parse message whose text (or statement name) contains it;
 * - `afterBytes`: once the stream reaches this offset (the cut is exactly there).
 */
export type TriggerCondition =
  | { bytes: string | Uint8Array }
  | { message: string | readonly string[]; contains?: string | RegExp }
  | { query: string | RegExp }
  | { afterBytes: number };

export interface TriggerOptions {
  direction: Direction;
  when: TriggerCondition;
  /** The mode to switch to. */
  switchTo: ProxyMode;
  /**
   * `before` (default): the mode changes before the matching bytes are forwarded, so they are
   * subject to it; `after`: the matching bytes are forwarded first, then the mode changes.
   */
  cut?: "before" | "after";
  /** `connection` (default): the mode applies to the connection where the bytes passed; `proxy`: to the whole proxy. */
  scope?: "connection" | "proxy";
  /** Which connections the trigger watches (default all). A predicate that throws counts as no. */
  where?: (connection: ProxyConnection) => boolean;
  /** How many times it may fire (default 1; `Infinity` for every match). */
  times?: number;
  name?: string;
}

/** One firing of a trigger. */
export interface TriggerFiring {
  trigger: FaultTrigger;
  connection: ProxyConnection;
  direction: Direction;
  /** The stream offset where the mode changed: bytes before it were forwarded under the old mode. */
  cut: number;
  /** The stream offsets of the matched bytes (or message). */
  matchStart: number;
  matchEnd: number;
  mode: ProxyMode;
}

export interface FaultProxyStats {
  /** Connections proxied (refused ones not counted). */
  accepted: number;
  refused: number;
  open: number;
  closed: number;
  /** Bytes written on to the other peer, over all connections, live or closed. */
  forwarded: Record<Direction, number>;
  /** Bytes read and discarded (blackholed, or the other peer was gone). */
  dropped: Record<Direction, number>;
  /** Bytes of live connections read from a peer but not yet forwarded (stalled or buffered). */
  held: Record<Direction, number>;
  triggered: number;
}

export interface FaultProxyEvents {
  open: [connection: ProxyConnection];
  /** The client's startup packet was read (`connection.startup` is set). */
  startup: [connection: ProxyConnection];
  close: [connection: ProxyConnection];
  refused: [client: { address: string | undefined; port: number | undefined }];
  trigger: [firing: TriggerFiring];
}

export interface FaultProxyOptions {
  target: { host: string; port: number };
  host?: string;
  port?: number;
}

const EMPTY = Buffer.alloc(0);
const FIRST_BYTES_KEPT = 1_024;
const PATTERN_WINDOW = 1_024;
const MAX_STARTUP_PACKET = 10_000;
const MAX_MESSAGE = 1 << 30;
const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;

/** Starts a proxy listening on `host:port` (default 127.0.0.1 and a free port) that forwards to `target`. */
export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const server = createServer({ allowHalfOpen: true, noDelay: true });
  const host = options.host ?? "127.0.0.1";
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  if (!address || typeof address === "string") throw new Error("the proxy has no TCP address");
  return new FaultProxy(server, host, address.port, options.target);
}

/** True for a connection whose startup packet carries this `application_name`. */
export const applicationNameIs =
  (name: string) =>
  (connection: ProxyConnection): boolean =>
    connection.startup?.kind === "startup" &&
    connection.startup.parameters["application_name"] === name;

/** Reads a Postgres startup-phase packet (length-prefixed, no type byte). */
export function parseStartupPacket(packet: Buffer): PgStartupPacket | undefined {
  if (packet.length < 8 || packet.readInt32BE(0) !== packet.length) return undefined;
  const code = packet.readInt32BE(4);
  if (code === SSL_REQUEST) return { kind: "sslRequest" };
  if (code === GSSENC_REQUEST) return { kind: "gssEncRequest" };
  if (code === CANCEL_REQUEST) {
    return packet.length >= 12 ? { kind: "cancel", processId: packet.readInt32BE(8) } : undefined;
  }
  const major = code >>> 16;
  if (major !== 3) return undefined;
  const parameters: Record<string, string> = Object.create(null);
  let at = 8;
  for (;;) {
    const nameEnd = packet.indexOf(0, at);
    if (nameEnd < 0) return undefined;
    if (nameEnd === at) break;
    const valueEnd = packet.indexOf(0, nameEnd + 1);
    if (valueEnd < 0) return undefined;
    parameters[packet.toString("utf8", at, nameEnd)] = packet.toString(
      "utf8",
      nameEnd + 1,
      valueEnd,
    );
    at = valueEnd + 1;
  }
  return { kind: "startup", protocol: `${major}.${code & 0xffff}`, parameters };
}

/** A running proxy. Emits `open`, `startup`, `close`, `refused` and `trigger`. */
export class FaultProxy extends EventEmitter<FaultProxyEvents> {
  readonly host: string;
  readonly port: number;
  readonly target: { host: string; port: number };
  private readonly server: Server;
  private readonly live = new Map<number, ProxyConnection>();
  private readonly triggers: FaultTrigger[] = [];
  private readonly counters = {
    accepted: 0,
    refused: 0,
    closed: 0,
    triggered: 0,
    forwarded: { toServer: 0, toClient: 0 },
    dropped: { toServer: 0, toClient: 0 },
  };
  private currentMode: Exclude<ProxyMode, "reset"> = "pass";
  private nextConnectionId = 1;
  private nextTriggerId = 1;
  private closing: Promise<void> | undefined;
  private readonly core: ProxyCore;

  /** Use {@link startFaultProxy}. */
  constructor(server: Server, host: string, port: number, target: { host: string; port: number }) {
    super();
    this.server = server;
    this.host = host;
    this.port = port;
    this.target = target;
    // Accept errors (EMFILE and the like) must not crash the test process.
    server.on("error", () => {});
    server.on("connection", (client) => this.accept(client));
    this.core = {
      counters: this.counters,
      triggers: this.triggers,
      setProxyMode: (mode) => this.setMode(mode),
      startup: (connection) => this.emit("startup", connection),
      triggered: (firing) => {
        this.counters.triggered++;
        this.emit("trigger", firing);
      },
      closed: (connection) => {
        this.live.delete(connection.id);
        this.counters.closed++;
        this.emit("close", connection);
      },
    };
  }

  /** The mode new connections get (`reset` is momentary and never shows here). */
  get mode(): Exclude<ProxyMode, "reset"> {
    return this.currentMode;
  }

  get stats(): FaultProxyStats {
    const held = { toServer: 0, toClient: 0 };
    for (const connection of this.live.values()) {
      held.toServer += connection.held.toServer;
      held.toClient += connection.held.toClient;
    }
    const { forwarded, dropped, ...counts } = this.counters;
    return {
      ...counts,
      open: this.live.size,
      forwarded: { ...forwarded },
      dropped: { ...dropped },
      held,
    };
  }

  /** Live connections, oldest first. */
  connections(where?: (connection: ProxyConnection) => boolean): ProxyConnection[] {
    const all = [...this.live.values()];
    return where ? all.filter((connection) => matches(where, connection)) : all;
  }

  /** Switches the whole proxy; see {@link ProxyMode}. */
  setMode(mode: ProxyMode): void {
    if (mode !== "reset") this.currentMode = mode;
    if (mode === "refuse") return;
    for (const connection of [...this.live.values()]) connection.setMode(mode);
  }

  /**
   * Back to `pass` for new and existing connections. Stalled bytes flow again; blackholed bytes
   * are gone for good. Triggers stay until removed.
   */
  heal(): void {
    this.setMode("pass");
  }

  /** Watches the bytes of every (or some) connection and switches modes where they match. */
  addTrigger(options: TriggerOptions): FaultTrigger {
    const trigger = new FaultTrigger(this.nextTriggerId++, options, (t) => {
      const at = this.triggers.indexOf(t);
      if (at >= 0) this.triggers.splice(at, 1);
    });
    this.triggers.push(trigger);
    return trigger;
  }

  /** Resolves with the first live or future connection that matches (checked on open and on startup). */
  waitForConnection(
    where: (connection: ProxyConnection) => boolean,
    { timeoutMs = 10_000 } = {},
  ): Promise<ProxyConnection> {
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        this.off("open", check);
        this.off("startup", check);
      };
      const check = (connection: ProxyConnection) => {
        if (connection.state !== "open" || !matches(where, connection)) return false;
        cleanup();
        resolve(connection);
        return true;
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`no proxied connection matched within ${timeoutMs} ms`));
      }, timeoutMs);
      for (const connection of this.live.values()) if (check(connection)) return;
      this.on("open", check);
      this.on("startup", check);
    });
  }

  /**
   * The connection string rewritten to go through the proxy (host and port replaced, `host` and
   * `port` query parameters removed), optionally with an `application_name` to tell it apart.
   */
  via(url: string, options: { applicationName?: string } = {}): string {
    const rewritten = new URL(url);
    rewritten.hostname = this.host.includes(":") ? `[${this.host}]` : this.host;
    rewritten.port = String(this.port);
    rewritten.searchParams.delete("host");
    rewritten.searchParams.delete("port");
    if (options.applicationName !== undefined) {
      rewritten.searchParams.set("application_name", options.applicationName);
    }
    return rewritten.toString();
  }

  /** Stops listening and destroys every connection; resolves once all sockets are closed. Never rejects. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const listening = new Promise<void>((resolve) => {
        this.server.close(() => resolve());
      });
      const connections = [...this.live.values()];
      for (const connection of connections) connection.destroy();
      await Promise.all([listening, ...connections.map((connection) => connection.closed)]);
    })();
    return this.closing;
  }

  private accept(client: Socket): void {
    client.on("error", () => {});
    if (this.closing || this.currentMode === "refuse") {
      this.counters.refused++;
      const peer = { address: client.remoteAddress, port: client.remotePort };
      resetSocket(client);
      this.emit("refused", peer);
      return;
    }
    this.counters.accepted++;
    const upstream = connect({
      host: this.target.host,
      port: this.target.port,
      allowHalfOpen: true,
    });
    const connection = new ProxyConnection(this.core, this.nextConnectionId++, client, upstream);
    this.live.set(connection.id, connection);
    connection.setMode(this.currentMode);
    this.emit("open", connection);
  }
}

/** What a connection needs from its proxy. */
interface ProxyCore {
  counters: {
    forwarded: Record<Direction, number>;
    dropped: Record<Direction, number>;
  };
  triggers: readonly FaultTrigger[];
  setProxyMode: (mode: ProxyMode) => void;
  startup: (connection: ProxyConnection) => void;
  triggered: (firing: TriggerFiring) => void;
  closed: (connection: ProxyConnection) => void;
}

/** One proxied client connection and its upstream connection. Created by the proxy. */
export class ProxyConnection {
  readonly id: number;
  readonly since: Date;
  /** The client's address and port as the proxy sees them (the port is the client socket's `localPort`). */
  readonly clientAddress: string | undefined;
  readonly clientPort: number | undefined;
  /** Resolves when both sockets are closed. */
  readonly closed: Promise<void>;
  /** Error codes the sockets reported (a peer's ECONNRESET, the target refusing, …). */
  readonly errors: string[] = [];
  private readonly core: ProxyCore;
  private readonly pipes: Record<Direction, Pipe>;
  private readonly client: Socket;
  private readonly upstream: Socket;
  private readonly firstChunks: Buffer[] = [];
  private firstLength = 0;
  private startupPacket: PgStartupPacket | undefined;
  private explicitLabel: string | undefined;
  private openSockets = 2;
  private resolveClosed!: () => void;

  constructor(core: ProxyCore, id: number, client: Socket, upstream: Socket) {
    this.core = core;
    this.id = id;
    this.since = new Date();
    this.client = client;
    this.upstream = upstream;
    this.clientAddress = client.remoteAddress;
    this.clientPort = client.remotePort;
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
    // Registered before the pipes' listeners so the startup event sees the first bytes.
    client.on("data", (chunk: Buffer) => this.keepFirstBytes(chunk));
    this.pipes = {
      toServer: new Pipe(this, core, "toServer", client, upstream),
      toClient: new Pipe(this, core, "toClient", upstream, client),
    };
    this.pipes.toServer.framer.onPacket = (packet) => {
      if (packet?.kind === "sslRequest" || packet?.kind === "gssEncRequest") {
        this.pipes.toClient.framer.answersExpected++;
        return;
      }
      this.startupPacket = packet;
      if (packet) core.startup(this);
    };
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    for (const socket of [client, upstream]) {
      socket.on("error", (error: NodeJS.ErrnoException) => {
        this.errors.push(error.code ?? error.message);
      });
      socket.on("close", () => this.socketClosed());
    }
  }

  /** The label a test gave it, else the startup packet's `application_name`. */
  get label(): string | undefined {
    if (this.explicitLabel !== undefined) return this.explicitLabel;
    return this.startupPacket?.kind === "startup"
      ? this.startupPacket.parameters["application_name"]
      : undefined;
  }

  set label(label: string | undefined) {
    this.explicitLabel = label;
  }

  /** The client's startup packet, once read (Postgres clients only). */
  get startup(): PgStartupPacket | undefined {
    return this.startupPacket;
  }

  /** The first bytes the client sent (up to 1,024). */
  get firstBytes(): Buffer {
    return Buffer.concat(this.firstChunks, this.firstLength);
  }

  get state(): "open" | "closed" {
    return this.openSockets === 0 ? "closed" : "open";
  }

  get mode(): Record<Direction, PipeMode> {
    return { toServer: this.pipes.toServer.mode, toClient: this.pipes.toClient.mode };
  }

  get forwarded(): Record<Direction, number> {
    return { toServer: this.pipes.toServer.forwarded, toClient: this.pipes.toClient.forwarded };
  }

  get dropped(): Record<Direction, number> {
    return { toServer: this.pipes.toServer.dropped, toClient: this.pipes.toClient.dropped };
  }

  /** Bytes read from a peer and not yet forwarded, including what the socket has buffered. */
  get held(): Record<Direction, number> {
    return { toServer: this.pipes.toServer.held, toClient: this.pipes.toClient.held };
  }

  /** Switches this connection only; see {@link ConnectionMode}. */
  setMode(mode: ConnectionMode): void {
    if (this.state === "closed") return;
    if (mode === "reset") {
      this.pipes.toServer.kill();
      this.pipes.toClient.kill();
      resetSocket(this.client);
      resetSocket(this.upstream);
      return;
    }
    const modes = pipeModes(mode);
    this.pipes.toServer.setMode(modes.toServer);
    this.pipes.toClient.setMode(modes.toClient);
  }

  /** Closes both sockets at once (what closing the proxy does). */
  destroy(): void {
    this.pipes.toServer.kill();
    this.pipes.toClient.kill();
    this.client.destroy();
    this.upstream.destroy();
  }

  /** @internal The earliest place in the pipe's pending bytes where an active trigger fires. */
  findFiring(pipe: Pipe): { trigger: FaultTrigger; match: TriggerMatch } | undefined {
    let best: { trigger: FaultTrigger; match: TriggerMatch } | undefined;
    for (const trigger of this.core.triggers) {
      if (!trigger.watches(this, pipe.direction)) continue;
      const match = trigger.match(pipe);
      if (match && (!best || match.cut < best.match.cut)) best = { trigger, match };
    }
    return best;
  }

  /** @internal Whether a message trigger watches this pipe, so partial messages wait for their end. */
  framesMessages(pipe: Pipe): boolean {
    return this.core.triggers.some(
      (trigger) => trigger.needsMessages && trigger.watches(this, pipe.direction),
    );
  }

  /** @internal Records a firing and switches modes. */
  fire(trigger: FaultTrigger, match: TriggerMatch, pipe: Pipe): void {
    const firing: TriggerFiring = {
      trigger,
      connection: this,
      direction: pipe.direction,
      cut: match.cut,
      matchStart: match.start,
      matchEnd: match.end,
      mode: trigger.switchTo,
    };
    trigger.record(firing, pipe);
    if (trigger.scope === "proxy") this.core.setProxyMode(trigger.switchTo);
    else this.setMode(trigger.switchTo as ConnectionMode);
    this.core.triggered(firing);
  }

  private keepFirstBytes(chunk: Buffer): void {
    if (this.firstLength >= FIRST_BYTES_KEPT) return;
    const kept = Buffer.from(chunk.subarray(0, FIRST_BYTES_KEPT - this.firstLength));
    this.firstChunks.push(kept);
    this.firstLength += kept.length;
  }

  private socketClosed(): void {
    this.openSockets--;
    if (this.openSockets > 0) {
      // One side is gone: what it did (FIN or RST) travels to the other side through its pipe.
      for (const pipe of [this.pipes.toServer, this.pipes.toClient]) {
        pipe.sinkClosed();
        pipe.sourceClosed();
      }
      return;
    }
    this.pipes.toServer.kill();
    this.pipes.toClient.kill();
    this.core.closed(this);
    this.resolveClosed();
  }
}

interface TriggerMatch {
  cut: number;
  start: number;
  end: number;
}

/** A registered trigger. `fired` resolves at its first firing. */
export class FaultTrigger {
  readonly id: number;
  readonly name: string;
  readonly direction: Direction;
  readonly switchTo: ProxyMode;
  readonly scope: "connection" | "proxy";
  readonly firings: TriggerFiring[] = [];
  readonly fired: Promise<TriggerFiring>;
  private readonly condition: TriggerCondition;
  private readonly pattern: Buffer | undefined;
  private readonly types: readonly string[] | undefined;
  private readonly contains: string | RegExp | undefined;
  private readonly cutAfter: boolean;
  private readonly where: ((connection: ProxyConnection) => boolean) | undefined;
  private readonly unregister: (trigger: FaultTrigger) => void;
  private remaining: number;
  /** Per pipe, the stream offset up to which matches were already acted on. */
  private readonly seen = new WeakMap<Pipe, number>();
  private resolveFired!: (firing: TriggerFiring) => void;

  constructor(id: number, options: TriggerOptions, unregister: (trigger: FaultTrigger) => void) {
    this.id = id;
    this.name = options.name ?? `trigger-${id}`;
    this.direction = options.direction;
    this.switchTo = options.switchTo;
    this.scope = options.scope ?? "connection";
    this.cutAfter = options.cut === "after";
    this.where = options.where;
    this.remaining = options.times ?? 1;
    this.unregister = unregister;
    this.condition = options.when;
    if (this.scope === "connection" && this.switchTo === "refuse") {
      throw new Error("a connection cannot be refused; use scope: 'proxy'");
    }
    const when = options.when;
    if ("bytes" in when) {
      this.pattern = Buffer.from(when.bytes);
      if (this.pattern.length === 0 || this.pattern.length > PATTERN_WINDOW) {
        throw new Error(`a byte pattern must be 1 to ${PATTERN_WINDOW} bytes long`);
      }
    } else if ("message" in when) {
      this.types = typeof when.message === "string" ? [when.message] : when.message;
      this.contains = when.contains;
    } else if ("query" in when) {
      this.types = ["Q", "P"];
      this.contains = when.query;
    } else if (!(Number.isInteger(when.afterBytes) && when.afterBytes >= 0)) {
      throw new Error("afterBytes must be a non-negative integer");
    }
    this.fired = new Promise((resolve) => {
      this.resolveFired = resolve;
    });
  }

  get active(): boolean {
    return this.remaining > 0;
  }

  get needsMessages(): boolean {
    return this.types !== undefined;
  }

  /** Stops watching; firings so far stay on record. */
  remove(): void {
    this.remaining = 0;
    this.unregister(this);
  }

  watches(connection: ProxyConnection, direction: Direction): boolean {
    return this.active && direction === this.direction && matches(this.where, connection);
  }

  match(pipe: Pipe): TriggerMatch | undefined {
    const seen = Math.max(this.seen.get(pipe) ?? 0, pipe.scannedStart);
    const end = pipe.scannedStart + pipe.scanned.length;
    if ("afterBytes" in this.condition) {
      const at = this.condition.afterBytes;
      if ((this.seen.get(pipe) ?? -1) >= at || end < at) return undefined;
      return { cut: Math.max(at, pipe.scannedStart), start: at, end: at };
    }
    if (this.pattern) return this.matchPattern(pipe, this.pattern, seen);
    for (const message of pipe.messages) {
      // A message whose start was already forwarded cannot be cut before; skip it whole.
      if (message.end <= seen || message.start < pipe.scannedStart) continue;
      if (!this.types?.includes(message.type)) continue;
      if (this.contains !== undefined) {
        const body = pipe.scanned.toString(
          "utf8",
          message.start - pipe.scannedStart + 5,
          message.end - pipe.scannedStart,
        );
        const found =
          typeof this.contains === "string"
            ? body.includes(this.contains)
            : body.search(this.contains) >= 0;
        if (!found) continue;
      }
      const { start, end } = message;
      return { cut: this.cutAfter ? end : start, start, end };
    }
    return undefined;
  }

  record(firing: TriggerFiring, pipe: Pipe): void {
    this.seen.set(pipe, firing.matchEnd);
    this.remaining--;
    this.firings.push(firing);
    if (this.firings.length === 1) this.resolveFired(firing);
    if (this.remaining <= 0) this.unregister(this);
  }

  private matchPattern(pipe: Pipe, pattern: Buffer, seen: number): TriggerMatch | undefined {
    // Bytes already forwarded are searched too, so that a pattern split across reads is found;
    // its cut can then be no earlier than the first byte not yet forwarded.
    const window = pipe.recent.length ? Buffer.concat([pipe.recent, pipe.scanned]) : pipe.scanned;
    const windowStart = pipe.scannedStart - pipe.recent.length;
    const from = Math.max(0, seen - pattern.length + 1 - windowStart);
    for (let at = window.indexOf(pattern, from); at >= 0; at = window.indexOf(pattern, at + 1)) {
      const start = windowStart + at;
      const end = start + pattern.length;
      if (end <= seen) continue;
      return { cut: this.cutAfter ? end : Math.max(start, pipe.scannedStart), start, end };
    }
    return undefined;
  }
}

interface FramedMessage {
  /** The type byte as a character, `""` for a startup-phase packet. */
  type: string;
  start: number;
  end: number;
}

/**
 * Follows message boundaries in one direction of a Postgres connection: startup-phase packets
 * (length only) until the StartupMessage, typed messages after it. Anything it cannot follow
 * (TLS, another protocol, an absurd length) makes it opaque for good.
 */
class PgFramer {
  /** Single-byte answers to SSLRequest/GSSENCRequest the server still owes (server → client only). */
  answersExpected = 0;
  onPacket: ((packet: PgStartupPacket | undefined) => void) | undefined;
  private phase: "startup" | "typed" | "opaque";
  private position = 0;
  private header: number[] = [];
  private current: FramedMessage | undefined;
  private packet: Buffer[] = [];

  constructor(phase: "startup" | "typed") {
    this.phase = phase;
  }

  /** The stream offset where an incomplete message starts, if one is being read. */
  get partialStart(): number | undefined {
    if (this.phase === "opaque") return undefined;
    if (this.current) return this.current.start;
    return this.header.length > 0 ? this.position - this.header.length : undefined;
  }

  /** Consumes the next bytes of the stream; returns the messages they complete. */
  scan(chunk: Buffer): FramedMessage[] {
    const done: FramedMessage[] = [];
    const base = this.position;
    let at = 0;
    while (at < chunk.length && this.phase !== "opaque") {
      this.position = base + at;
      if (!this.current) {
        if (this.answersExpected > 0 && this.header.length === 0) {
          const answer = chunk[at];
          if (answer === 0x4e /* N: go on in plain text */) {
            this.answersExpected--;
            at++;
            continue;
          }
          if (answer === 0x53 || answer === 0x47) {
            this.phase = "opaque"; // S or G: encrypted from here
            break;
          }
          this.answersExpected = 0; // an ErrorResponse instead, framed as usual
        }
        const headerLength = this.phase === "startup" ? 4 : 5;
        while (this.header.length < headerLength && at < chunk.length) {
          this.header.push(chunk[at++]!);
        }
        if (this.header.length < headerLength) break;
        const header = Buffer.from(this.header);
        this.header = [];
        const length = header.readInt32BE(headerLength - 4);
        const valid =
          this.phase === "startup"
            ? length >= 8 && length <= MAX_STARTUP_PACKET
            : length >= 4 && length <= MAX_MESSAGE;
        if (!valid) {
          this.phase = "opaque";
          break;
        }
        const start = base + at - headerLength;
        const type = this.phase === "startup" ? "" : String.fromCharCode(header[0]!);
        this.current = { type, start, end: start + headerLength - 4 + length };
        if (this.phase === "startup") this.packet = [header];
      }
      const take = Math.min(this.current.end - (base + at), chunk.length - at);
      if (this.phase === "startup") this.packet.push(Buffer.from(chunk.subarray(at, at + take)));
      at += take;
      if (base + at === this.current.end) {
        done.push(this.current);
        this.current = undefined;
        if (this.phase === "startup") this.packetDone();
      }
    }
    this.position = base + chunk.length;
    return done;
  }

  private packetDone(): void {
    const packet = parseStartupPacket(Buffer.concat(this.packet));
    this.packet = [];
    if (packet?.kind === "startup") this.phase = "typed";
    else if (packet?.kind !== "sslRequest" && packet?.kind !== "gssEncRequest") {
      this.phase = "opaque"; // a cancel request ends the conversation; anything else is unknown
    }
    this.onPacket?.(packet);
  }
}

/**
 * One direction of one connection: reads from `source`, frames, checks triggers, and forwards to
 * `sink`, drops, or holds, according to its mode.
 */
class Pipe {
  readonly direction: Direction;
  readonly framer: PgFramer;
  mode: PipeMode = "pass";
  forwarded = 0;
  dropped = 0;
  /** Bytes read and framed, not yet forwarded or dropped; `scannedStart` is the offset of the first. */
  scanned: Buffer = EMPTY;
  scannedStart = 0;
  /** The last bytes that left `scanned`, for patterns split across reads. */
  recent: Buffer = EMPTY;
  /** Complete messages that end inside `scanned`. */
  messages: FramedMessage[] = [];
  private readonly connection: ProxyConnection;
  private readonly core: ProxyCore;
  private readonly source: Socket;
  private readonly sink: Socket;
  /** Bytes read while stalled, not framed yet. */
  private unscanned: Buffer[] = [];
  private unscannedBytes = 0;
  /** What the source did at its end and was not passed on yet. */
  private sourceDone: "end" | "reset" | undefined;
  private sourceDonePassed = false;
  private backpressured = false;
  private pumping = false;
  private pumpAgain = false;
  private dead = false;

  constructor(
    connection: ProxyConnection,
    core: ProxyCore,
    direction: Direction,
    source: Socket,
    sink: Socket,
  ) {
    this.connection = connection;
    this.core = core;
    this.direction = direction;
    this.source = source;
    this.sink = sink;
    this.framer = new PgFramer(direction === "toServer" ? "startup" : "typed");
    source.on("data", (chunk: Buffer) => {
      if (this.dead) return;
      this.unscanned.push(chunk);
      this.unscannedBytes += chunk.length;
      this.pump();
    });
    source.on("end", () => {
      this.sourceDone ??= "end";
      this.pump();
    });
  }

  get held(): number {
    if (this.dead) return 0;
    return this.scanned.length + this.unscannedBytes + this.source.readableLength;
  }

  setMode(mode: PipeMode): void {
    if (this.dead || mode === this.mode) return;
    this.mode = mode;
    this.pump();
  }

  /** The source socket closed: an RST or error unless it ended cleanly first. */
  sourceClosed(): void {
    if (this.dead || !this.source.destroyed) return;
    if (this.sourceDone !== "end" || this.source.errored) this.sourceDone = "reset";
    this.pump();
  }

  /** The sink is gone: a wait for its 'drain' would never end, and what comes now is dropped. */
  sinkClosed(): void {
    if (this.dead || !this.sink.destroyed || !this.backpressured) return;
    this.backpressured = false;
    this.pump();
  }

  /** No more forwarding: the connection is being torn down. */
  kill(): void {
    this.dead = true;
    this.scanned = EMPTY;
    this.unscanned = [];
    this.unscannedBytes = 0;
    this.messages = [];
  }

  private pump(): void {
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        this.pumpOnce();
      } while (this.pumpAgain);
    } finally {
      this.pumping = false;
    }
    this.updateFlow();
  }

  private pumpOnce(): void {
    for (;;) {
      if (this.dead || this.mode === "stall") return;
      if (this.unscannedBytes > 0) this.scanUnscanned();
      if (this.scanned.length === 0) break;
      if (this.mode === "blackhole") {
        this.drop(this.scanned.length);
        break;
      }
      const firing = this.connection.findFiring(this);
      if (firing) {
        this.forward(firing.match.cut - this.scannedStart);
        this.connection.fire(firing.trigger, firing.match, this);
        continue;
      }
      // With a message trigger watching, an incomplete message waits for its end so that it
      // can still be cut before; its receiver could not act on half a message anyway.
      const partial =
        this.sourceDone === undefined && this.connection.framesMessages(this)
          ? this.framer.partialStart
          : undefined;
      const end = this.scannedStart + this.scanned.length;
      const upTo = partial !== undefined && partial >= this.scannedStart ? partial : end;
      this.forward(upTo - this.scannedStart);
      break;
    }
    if (this.mode === "pass" && this.scanned.length === 0) this.passOnSourceDone();
  }

  private scanUnscanned(): void {
    for (const chunk of this.unscanned) this.messages.push(...this.framer.scan(chunk));
    this.scanned = Buffer.concat([this.scanned, ...this.unscanned]);
    this.unscanned = [];
    this.unscannedBytes = 0;
  }

  private take(length: number): Buffer {
    const bytes = this.scanned.subarray(0, length);
    this.scanned = this.scanned.subarray(length);
    this.scannedStart += length;
    this.recent =
      bytes.length >= PATTERN_WINDOW
        ? Buffer.from(bytes.subarray(bytes.length - PATTERN_WINDOW))
        : Buffer.concat([this.recent, bytes]).subarray(-PATTERN_WINDOW);
    if (this.scanned.length === 0) this.scanned = EMPTY;
    this.messages = this.messages.filter((message) => message.end > this.scannedStart);
    return bytes;
  }

  private forward(length: number): void {
    if (length <= 0) return;
    const bytes = this.take(length);
    if (this.sink.destroyed || this.sink.writableEnded) {
      this.count("dropped", length);
      return;
    }
    this.count("forwarded", length);
    if (!this.sink.write(bytes) && !this.backpressured) {
      this.backpressured = true;
      this.sink.once("drain", () => {
        this.backpressured = false;
        this.updateFlow();
      });
    }
  }

  private drop(length: number): void {
    this.take(length);
    this.count("dropped", length);
  }

  private count(what: "forwarded" | "dropped", length: number): void {
    this[what] += length;
    this.core.counters[what][this.direction] += length;
  }

  private passOnSourceDone(): void {
    if (!this.sourceDone || this.sourceDonePassed || this.unscannedBytes > 0) return;
    this.sourceDonePassed = true;
    if (this.sink.destroyed) return;
    if (this.sourceDone === "end") this.sink.end();
    else resetSocket(this.sink);
  }

  private updateFlow(): void {
    if (this.dead || this.source.destroyed) return;
    const pause = this.mode === "stall" || (this.mode === "pass" && this.backpressured);
    if (pause && !this.source.isPaused()) this.source.pause();
    else if (!pause && this.source.isPaused()) this.source.resume();
  }
}

function pipeModes(mode: Exclude<ConnectionMode, "reset">): Record<Direction, PipeMode> {
  if (mode === "pass" || mode === "blackhole" || mode === "stall") {
    return { toServer: mode, toClient: mode };
  }
  if (mode.silence !== "blackhole" && mode.silence !== "stall") {
    throw new Error(`unknown silence: ${String(mode.silence)}`);
  }
  return {
    toServer: mode.direction === "toClient" ? "pass" : mode.silence,
    toClient: mode.direction === "toServer" ? "pass" : mode.silence,
  };
}

function matches(
  where: ((connection: ProxyConnection) => boolean) | undefined,
  connection: ProxyConnection,
): boolean {
  if (!where) return true;
  try {
    return where(connection);
  } catch {
    return false;
  }
}

/** Sends an RST (a socket still connecting is simply destroyed: there is no peer to tell). */
function resetSocket(socket: Socket): void {
  if (socket.destroyed) return;
  if (socket.connecting) {
    socket.destroy();
    return;
  }
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}
