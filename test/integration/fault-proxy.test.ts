import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import pg from "pg";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from "vitest";
import {
  applicationNameIs,
  type FaultProxy,
  type ProxyConnection,
  parseStartupPacket,
  startFaultProxy,
} from "../helpers/faultProxy.ts";
import { waitFor } from "../helpers/wait.ts";

/** What a test server saw on one connection. */
interface ServerSide {
  socket: Socket;
  chunks: Buffer[];
  length: number;
  hash: ReturnType<typeof createHash>;
  error: string | undefined;
  ended: boolean;
}

interface Recorder {
  port: number;
  connections: ServerSide[];
  close: () => Promise<void>;
}

/** A TCP server that records what it receives and, with `echo`, sends it back. */
async function startRecorder({ echo = true, keep = true } = {}): Promise<Recorder> {
  const connections: ServerSide[] = [];
  const server = createServer((socket) => {
    const side: ServerSide = {
      socket,
      chunks: [],
      length: 0,
      hash: createHash("sha256"),
      error: undefined,
      ended: false,
    };
    connections.push(side);
    socket.on("error", (error: NodeJS.ErrnoException) => {
      side.error = error.code;
    });
    socket.on("end", () => {
      side.ended = true;
    });
    socket.on("data", (chunk: Buffer) => {
      side.length += chunk.length;
      side.hash.update(chunk);
      if (keep) side.chunks.push(chunk);
      if (echo) socket.write(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (!address || typeof address === "string") throw new Error("no address");
  return {
    port: address.port,
    connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const side of connections) side.socket.destroy();
        server.close(() => resolve());
      }),
  };
}

const text = (side: ServerSide | undefined) => Buffer.concat(side?.chunks ?? []).toString();

interface TestClient {
  socket: Socket;
  received: () => string;
  bytes: () => Buffer;
  /** Resolves at close with the error code, or undefined for a clean close. */
  closed: Promise<string | undefined>;
  isClosed: () => boolean;
}

function openClient(port: number): TestClient {
  const socket = connect({ host: "127.0.0.1", port });
  const chunks: Buffer[] = [];
  let error: string | undefined;
  let closedFlag = false;
  socket.on("data", (chunk: Buffer) => chunks.push(chunk));
  socket.on("error", (e: NodeJS.ErrnoException) => {
    error = e.code;
  });
  const closed = new Promise<string | undefined>((resolve) => {
    socket.on("close", () => {
      closedFlag = true;
      resolve(error);
    });
  });
  return {
    socket,
    received: () => Buffer.concat(chunks).toString(),
    bytes: () => Buffer.concat(chunks),
    closed,
    isClosed: () => closedFlag,
  };
}

/** The proxied connection of a test client (the proxy sees the client's local port). */
const proxiedFor = (proxy: FaultProxy, client: TestClient) =>
  proxy.waitForConnection((c) => c.clientPort === client.socket.localPort);

/** A connected client, its proxied connection, and the test server's side of it. */
async function connectThrough(proxy: FaultProxy, recorder: Recorder) {
  const before = recorder.connections.length;
  const client = openClient(proxy.port);
  await new Promise((resolve) => client.socket.once("connect", resolve));
  const connection = await proxiedFor(proxy, client);
  const server = await waitFor(() => recorder.connections[before], { message: "server side" });
  return { client, connection, server };
}

/** Bytes the kernel may take on loopback before a sender's writes back up: its send buffer plus the receiver's. */
function loopbackBufferBytes(): number {
  try {
    const max = (file: string) =>
      Number(readFileSync(`/proc/sys/net/ipv4/${file}`, "utf8").trim().split(/\s+/)[2]);
    const total = max("tcp_wmem") + max("tcp_rmem");
    if (Number.isFinite(total) && total > 0) return total;
  } catch {
    // not Linux: fall back to a generous figure
  }
  return 48 * 1024 * 1024;
}

describe("fault proxy over TCP (a test server of our own)", () => {
  let recorder: Recorder;
  let proxy: FaultProxy;

  beforeEach(async () => {
    recorder = await startRecorder();
    proxy = await startFaultProxy({ target: { host: "127.0.0.1", port: recorder.port } });
  });
  afterEach(async () => {
    await proxy.close();
    await recorder.close();
  });

  it("pass forwards both ways and counts it, and the close travels through", async () => {
    const { client, connection, server } = await connectThrough(proxy, recorder);
    client.socket.write("hello");
    await waitFor(() => client.received() === "hello", { message: "echo" });
    expect(text(server)).toBe("hello");
    expect(connection.forwarded).toEqual({ toServer: 5, toClient: 5 });
    expect(proxy.stats).toMatchObject({ accepted: 1, open: 1, forwarded: { toServer: 5 } });

    const closeEvent = once(proxy, "close");
    client.socket.end();
    expect(await closeEvent).toEqual([connection]);
    await connection.closed;
    expect(await client.closed).toBeUndefined();
    expect(server.ended).toBe(true);
    expect(proxy.stats).toMatchObject({ open: 0, closed: 1 });
  });

  it("refuse resets new connections and leaves existing ones working; heal lets new ones in", async () => {
    const existing = await connectThrough(proxy, recorder);
    proxy.setMode("refuse");

    const refused = openClient(proxy.port);
    refused.socket.write("anyone?");
    // The reset reaches the client as a read error or, had its write come later, a write error.
    expect(["ECONNRESET", "EPIPE", undefined]).toContain(await refused.closed);
    expect(refused.received()).toBe("");
    expect(proxy.stats).toMatchObject({ refused: 1, accepted: 1 });
    expect(recorder.connections).toHaveLength(1);

    existing.client.socket.write("still here");
    await waitFor(() => existing.client.received() === "still here", { message: "echo" });

    proxy.heal();
    const later = await connectThrough(proxy, recorder);
    later.client.socket.write("back");
    await waitFor(() => later.client.received() === "back", { message: "echo after heal" });
  });

  it("reset gives every existing client and server ECONNRESET", async () => {
    const a = await connectThrough(proxy, recorder);
    const b = await connectThrough(proxy, recorder);
    a.client.socket.write("x");
    await waitFor(() => a.client.received() === "x", { message: "echo" });

    proxy.setMode("reset");
    expect(await a.client.closed).toBe("ECONNRESET");
    expect(await b.client.closed).toBe("ECONNRESET");
    await waitFor(() => a.server.error === "ECONNRESET" && b.server.error === "ECONNRESET", {
      message: "servers reset",
    });
    await Promise.all([a.connection.closed, b.connection.closed]);
    expect(proxy.stats).toMatchObject({ open: 0, closed: 2 });
  });

  it("blackhole drops what the client writes and keeps the connection open; after heal new bytes flow", async () => {
    const { client, connection, server } = await connectThrough(proxy, recorder);
    proxy.setMode("blackhole");
    client.socket.write("lost");
    await waitFor(() => connection.dropped.toServer === 4, { message: "bytes dropped" });
    expect(server.length).toBe(0);
    expect(client.isClosed()).toBe(false);
    expect(connection.state).toBe("open");
    expect(connection.mode).toEqual({ toServer: "blackhole", toClient: "blackhole" });

    proxy.heal();
    client.socket.write("found");
    await waitFor(() => client.received() === "found", { message: "echo after heal" });
    expect(text(server)).toBe("found");
    expect(proxy.stats.dropped.toServer).toBe(4);
  });

  it("stall stops reading: the sender's writes back up, and every byte arrives in order after heal", async () => {
    await recorder.close();
    recorder = await startRecorder({ echo: false, keep: false });
    await proxy.close();
    proxy = await startFaultProxy({ target: { host: "127.0.0.1", port: recorder.port } });
    const { client, connection, server } = await connectThrough(proxy, recorder);
    proxy.setMode({ silence: "stall", direction: "toServer" });

    // More than the kernel can hold on the way, so some of it must stay in the sender's buffer.
    const size = loopbackBufferBytes() + 4 * 1024 * 1024;
    const payload = Buffer.alloc(size);
    for (let i = 0; i < size; i++) payload[i] = i % 251;
    const expected = createHash("sha256").update(payload).digest("hex");
    expect(client.socket.write(payload)).toBe(false);
    await waitFor(() => connection.held.toServer > 0, { message: "bytes held by the proxy" });
    expect(client.socket.writableLength).toBeGreaterThan(0);
    expect(server.length).toBe(0);
    expect(connection.forwarded.toServer).toBe(0);

    proxy.heal();
    await waitFor(() => server.length === size, { timeoutMs: 30_000, message: "all bytes" });
    expect(server.hash.digest("hex")).toBe(expected);
    await waitFor(() => client.socket.writableLength === 0, { message: "sender drained" });
    expect(connection.dropped.toServer).toBe(0);
  });

  it("silences one direction only: a blackhole toward the client, a stall toward the server", async () => {
    const { client, connection, server } = await connectThrough(proxy, recorder);

    connection.setMode({ silence: "blackhole", direction: "toClient" });
    client.socket.write("ping");
    await waitFor(() => text(server) === "ping", { message: "server got ping" });
    await waitFor(() => connection.dropped.toClient === 4, { message: "echo dropped" });
    expect(client.received()).toBe("");

    connection.setMode({ silence: "stall", direction: "toServer" });
    client.socket.write("held");
    server.socket.write("news");
    await waitFor(() => client.received() === "news", { message: "server to client flows" });
    await waitFor(() => connection.held.toServer === 4, { message: "held toward the server" });
    expect(text(server)).toBe("ping");

    connection.setMode("pass");
    await waitFor(() => client.received() === "newsheld", { message: "held bytes echoed" });
    expect(text(server)).toBe("pingheld");
  });

  it("a per-connection mode leaves the other connections alone", async () => {
    const a = await connectThrough(proxy, recorder);
    const b = await connectThrough(proxy, recorder);
    a.connection.setMode("blackhole");

    a.client.socket.write("into the void");
    b.client.socket.write("echo me");
    await waitFor(() => b.client.received() === "echo me", { message: "b echoed" });
    await waitFor(() => a.connection.dropped.toServer === 13, { message: "a dropped" });
    expect(a.server.length).toBe(0);
    expect(a.client.received()).toBe("");
    expect(b.connection.mode).toEqual({ toServer: "pass", toClient: "pass" });
    expect(proxy.mode).toBe("pass");
  });

  it("a trigger cuts exactly before the pattern: bytes before it pass, the pattern on is silenced", async () => {
    const trigger = proxy.addTrigger({
      direction: "toServer",
      when: { bytes: "CUT" },
      switchTo: { silence: "blackhole", direction: "toServer" },
    });
    const { client, connection, server } = await connectThrough(proxy, recorder);
    client.socket.write("abc");
    await waitFor(() => client.received() === "abc", { message: "echo before the pattern" });
    expect(trigger.firings).toHaveLength(0);

    client.socket.write("xyCUTz");
    const firing = await trigger.fired;
    expect(firing).toMatchObject({ cut: 5, matchStart: 5, matchEnd: 8, direction: "toServer" });
    expect(firing.connection).toBe(connection);
    await waitFor(() => connection.dropped.toServer === 4, { message: "CUTz dropped" });
    await waitFor(() => client.received() === "abcxy", { message: "xy echoed" });
    expect(text(server)).toBe("abcxy");
    expect(connection.mode.toServer).toBe("blackhole");
    expect(proxy.stats.triggered).toBe(1);
  });

  it("a trigger with cut 'after' forwards the pattern first, then switches", async () => {
    const trigger = proxy.addTrigger({
      direction: "toServer",
      when: { bytes: "CUT" },
      cut: "after",
      switchTo: { silence: "blackhole", direction: "toServer" },
    });
    const { client, connection, server } = await connectThrough(proxy, recorder);
    client.socket.write("xyCUTz");
    expect(await trigger.fired).toMatchObject({ matchStart: 2, matchEnd: 5, cut: 5 });
    await waitFor(() => connection.dropped.toServer === 1, { message: "z dropped" });
    await waitFor(() => text(server) === "xyCUT", { message: "xyCUT forwarded" });
    await waitFor(() => client.received() === "xyCUT", { message: "xyCUT echoed" });
  });

  it("a trigger after N bytes cuts at exactly N", async () => {
    const trigger = proxy.addTrigger({
      direction: "toServer",
      when: { afterBytes: 10 },
      switchTo: "blackhole",
    });
    const { client, connection, server } = await connectThrough(proxy, recorder);
    client.socket.write("0123456789abcde");
    expect((await trigger.fired).cut).toBe(10);
    await waitFor(() => connection.dropped.toServer === 5, { message: "5 dropped" });
    await waitFor(() => text(server) === "0123456789", { message: "10 forwarded" });
    // Both directions are silenced: the echo of those 10 bytes is dropped on its way back.
    await waitFor(() => connection.dropped.toClient === 10, { message: "echo dropped" });
    expect(client.received()).toBe("");
  });

  it("a trigger with scope 'proxy' switches every connection when the pattern passes on one", async () => {
    const trigger = proxy.addTrigger({
      direction: "toClient",
      when: { bytes: "BOOM" },
      scope: "proxy",
      switchTo: "reset",
    });
    const a = await connectThrough(proxy, recorder);
    const b = await connectThrough(proxy, recorder);
    b.client.socket.write("quiet");
    await waitFor(() => b.client.received() === "quiet", { message: "echo" });
    a.server.socket.write("BOOM");
    expect((await trigger.fired).connection).toBe(a.connection);
    expect(await a.client.closed).toBe("ECONNRESET");
    expect(await b.client.closed).toBe("ECONNRESET");
    expect(a.client.received()).toBe("");
  });

  it("a client's RST reaches the server, and one sent while blackholed arrives at heal", async () => {
    const a = await connectThrough(proxy, recorder);
    a.client.socket.resetAndDestroy();
    await waitFor(() => a.server.error === "ECONNRESET", { message: "server reset" });
    await a.connection.closed;

    const b = await connectThrough(proxy, recorder);
    b.connection.setMode("blackhole");
    b.client.socket.resetAndDestroy();
    await b.client.closed;
    await waitFor(() => b.connection.errors.includes("ECONNRESET"), { message: "proxy saw it" });
    expect(b.connection.state).toBe("open");
    expect(b.server.error).toBeUndefined();
    b.connection.setMode("pass");
    await waitFor(() => b.server.error === "ECONNRESET", { message: "server reset at heal" });
    await b.connection.closed;
  });
});

describe("fault proxy in front of Postgres (node-pg)", () => {
  let url: string;
  let direct: pg.Pool;
  let schema: string;
  let proxy: FaultProxy;
  const clients: pg.Client[] = [];

  const target = () => {
    const parsed = new URL(url);
    return { host: parsed.hostname, port: Number(parsed.port || 5432) };
  };

  /** A client through the proxy; errors after a reset are expected and must not go unhandled. */
  async function proxiedClient(applicationName: string): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: proxy.via(url, { applicationName }) });
    client.on("error", () => {});
    clients.push(client);
    await client.connect();
    return client;
  }

  /** A promise that records whether it settled, with its rejection handled. */
  function track<T>(promise: Promise<T>) {
    let settled = false;
    const observed = promise.then(
      (value) => {
        settled = true;
        return value;
      },
      (error: unknown) => {
        settled = true;
        throw error;
      },
    );
    observed.catch(() => {});
    return { promise: observed, settled: () => settled };
  }

  /** What the server says a backend is doing. */
  const backend = async (pid: number) =>
    (
      await direct.query<{ state: string; query: string }>(
        "SELECT state, query FROM pg_stat_activity WHERE pid = $1",
        [pid],
      )
    ).rows[0];

  /** The length of a simple-protocol Query message for this text. */
  const queryMessageLength = (sql: string) => 1 + 4 + Buffer.byteLength(sql) + 1;

  beforeAll(async () => {
    // The URL straight from the global setup rather than helpers/db.ts, which loads the engine:
    // the proxy's tests should not depend on pgwake itself.
    url = inject("databaseUrl");
    direct = new pg.Pool({ connectionString: url, max: 3 });
    schema = `fault_proxy_${randomBytes(3).toString("hex")}`;
    await direct.query(`CREATE SCHEMA "${schema}"`);
    await direct.query(`CREATE TABLE "${schema}".t (id integer NOT NULL)`);
  });
  afterAll(async () => {
    await direct.query(`DROP SCHEMA "${schema}" CASCADE`);
    await direct.end();
  });
  beforeEach(async () => {
    proxy = await startFaultProxy({ target: target() });
  });
  afterEach(async () => {
    await proxy.close();
    await Promise.all(clients.splice(0).map((client) => client.end().catch(() => {})));
  });

  it("a query works through the proxy", async () => {
    const client = await proxiedClient("fp-pass");
    const { rows } = await client.query<{ n: number }>("SELECT 41 + 1 AS n");
    expect(rows[0]?.n).toBe(42);
    expect(proxy.stats.accepted).toBe(1);
    expect(proxy.stats.forwarded.toServer).toBeGreaterThan(0);
    expect(proxy.stats.forwarded.toClient).toBeGreaterThan(0);
  });

  it("under blackhole a query stays pending while its bytes are dropped; after heal a new connection works", async () => {
    const client = await proxiedClient("fp-blackhole");
    const connection = await proxy.waitForConnection(applicationNameIs("fp-blackhole"));
    const pid = (await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!
      .pid;

    proxy.setMode("blackhole");
    const sql = "SELECT 'into the blackhole' AS q";
    const query = track(client.query(sql));
    await waitFor(() => connection.dropped.toServer >= queryMessageLength(sql), {
      message: "query bytes dropped",
    });
    // The server never saw it and is idle; the client waits on an answer that cannot come.
    expect(await backend(pid)).toMatchObject({
      state: "idle",
      query: "SELECT pg_backend_pid() AS pid",
    });
    expect(query.settled()).toBe(false);
    expect(connection.state).toBe("open");

    proxy.heal();
    const fresh = await proxiedClient("fp-after-heal");
    expect((await fresh.query<{ n: number }>("SELECT 1 AS n")).rows[0]?.n).toBe(1);

    connection.setMode("reset");
    await expect(query.promise).rejects.toThrow();
  });

  it("tells connections apart by their startup packet and silences only the listener among a pool of 10", async () => {
    const expectedUser = decodeURIComponent(new URL(url).username) || "postgres";
    const pool = new pg.Pool({
      connectionString: proxy.via(url, { applicationName: "fp-pool" }),
      max: 10,
    });
    pool.on("error", () => {});
    try {
      // Twenty statements that wait on each other make the pool open all ten connections.
      await Promise.all(Array.from({ length: 20 }, () => pool.query("SELECT pg_sleep(0.05)")));
      expect(proxy.connections(applicationNameIs("fp-pool"))).toHaveLength(10);

      const listener = await proxiedClient("pgwake-listener");
      const listenerConnection = await proxy.waitForConnection(
        applicationNameIs("pgwake-listener"),
      );
      expect(listenerConnection.label).toBe("pgwake-listener");
      expect(listenerConnection.startup).toMatchObject({
        kind: "startup",
        protocol: "3.0",
        parameters: { user: expectedUser, application_name: "pgwake-listener" },
      });
      expect(parseStartupPacket(listenerConnection.firstBytes)).toEqual(listenerConnection.startup);

      const heard: string[] = [];
      listener.on("notification", (message) => heard.push(message.payload ?? ""));
      await listener.query("LISTEN fp_channel");
      await pool.query("SELECT pg_notify('fp_channel', 'first')");
      await waitFor(() => heard.includes("first"), { message: "the listener hears" });

      listenerConnection.setMode("blackhole");
      const droppedBefore = listenerConnection.dropped.toClient;
      await pool.query("SELECT pg_notify('fp_channel', 'second')");
      await waitFor(() => listenerConnection.dropped.toClient > droppedBefore, {
        message: "the notification dropped",
      });
      expect(heard).toEqual(["first"]);
      expect((await pool.query<{ n: number }>("SELECT 7 AS n")).rows[0]?.n).toBe(7);
      for (const other of proxy.connections(applicationNameIs("fp-pool"))) {
        expect(other.mode).toEqual({ toServer: "pass", toClient: "pass" });
      }
      expect(proxy.stats.open).toBe(11);
      listenerConnection.setMode("reset");
    } finally {
      await pool.end().catch(() => {});
    }
  });

  it("follows the protocol byte by byte: SSL refusal, startup, a message split across writes", async () => {
    const { username, pathname } = new URL(url);
    const startupBody = Buffer.from(
      `user\0${decodeURIComponent(username) || "postgres"}\0database\0${decodeURIComponent(pathname.slice(1))}\0application_name\0fp-raw\0\0`,
    );
    const startup = Buffer.alloc(8 + startupBody.length);
    startup.writeInt32BE(startup.length, 0);
    startup.writeInt32BE(3 << 16, 4);
    startupBody.copy(startup, 8);
    const sslRequest = Buffer.alloc(8);
    sslRequest.writeInt32BE(8, 0);
    sslRequest.writeInt32BE(80877103, 4);
    const sql = "SELECT 'split in two'";
    const query = Buffer.alloc(1 + 4 + Buffer.byteLength(sql) + 1);
    query.write("Q", 0);
    query.writeInt32BE(query.length - 1, 1);
    query.write(sql, 5);

    const ready = proxy.addTrigger({
      direction: "toClient",
      when: { message: "Z" },
      cut: "after",
      switchTo: "pass",
    });
    const client = openClient(proxy.port);
    const received = () => client.bytes().length;
    client.socket.write(sslRequest);
    await waitFor(() => received() === 1, { message: "answer to SSLRequest" });
    if (client.received() !== "N") {
      client.socket.destroy();
      return expect.fail("this test needs a server that refuses SSL (ssl = off)");
    }
    client.socket.write(startup);
    const connection = await proxy.waitForConnection(applicationNameIs("fp-raw"));
    const firing = await ready.fired;
    // The framer skipped the one-byte answer and found ReadyForQuery ('Z', length 5, status).
    expect(firing.matchEnd - firing.matchStart).toBe(6);
    await waitFor(() => received() === firing.matchEnd, { message: "all up to ReadyForQuery" });
    expect(client.bytes().subarray(-6).toString("latin1")).toBe("Z\0\0\0\x05I");

    const cut = proxy.addTrigger({
      direction: "toServer",
      when: { query: "split in two" },
      switchTo: { silence: "blackhole", direction: "toServer" },
    });
    const forwardedBefore = connection.forwarded.toServer;
    client.socket.write(query.subarray(0, 10));
    // Half a message waits in the proxy so that it can still be cut before its first byte.
    await waitFor(() => connection.held.toServer === 10, { message: "half held" });
    expect(connection.forwarded.toServer).toBe(forwardedBefore);
    client.socket.write(query.subarray(10));
    expect(await cut.fired).toMatchObject({ cut: forwardedBefore, matchStart: forwardedBefore });
    await waitFor(() => connection.dropped.toServer === query.length, { message: "query dropped" });
    client.socket.destroy();
  });

  it("a trigger on COMMIT cut 'after' lets the server commit while the client never hears", async () => {
    const client = await proxiedClient("fp-commit");
    const trigger = proxy.addTrigger({
      direction: "toServer",
      when: { query: /^COMMIT\b/i },
      cut: "after",
      switchTo: { silence: "blackhole", direction: "toClient" },
      where: applicationNameIs("fp-commit"),
    });
    await client.query("BEGIN");
    await client.query(`INSERT INTO "${schema}".t (id) VALUES (1)`);
    expect(trigger.firings).toHaveLength(0);

    const commit = track(client.query("COMMIT"));
    const firing = await trigger.fired;
    expect(firing.connection.label).toBe("fp-commit");
    await waitFor(
      async () => (await direct.query(`SELECT 1 FROM "${schema}".t WHERE id = 1`)).rowCount === 1,
      { message: "the commit is visible" },
    );
    await waitFor(() => firing.connection.dropped.toClient > 0, {
      message: "the answer to COMMIT dropped",
    });
    expect(commit.settled()).toBe(false);

    firing.connection.setMode("reset");
    await expect(commit.promise).rejects.toThrow();
  });

  it("a trigger on COMMIT cut 'before' keeps it from the server: the transaction stays open", async () => {
    const client = await proxiedClient("fp-commit-before");
    const pid = (await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!
      .pid;
    const trigger = proxy.addTrigger({
      direction: "toServer",
      when: { query: /^COMMIT\b/i },
      switchTo: { silence: "blackhole", direction: "toServer" },
      where: applicationNameIs("fp-commit-before"),
    });
    await client.query("BEGIN");
    const insert = `INSERT INTO "${schema}".t (id) VALUES (2)`;
    await client.query(insert);

    const commit = track(client.query("COMMIT"));
    const firing = await trigger.fired;
    await waitFor(() => firing.connection.dropped.toServer >= queryMessageLength("COMMIT"), {
      message: "COMMIT dropped",
    });
    expect(await backend(pid)).toMatchObject({ state: "idle in transaction", query: insert });
    expect((await direct.query(`SELECT 1 FROM "${schema}".t WHERE id = 2`)).rowCount).toBe(0);
    expect(commit.settled()).toBe(false);

    firing.connection.setMode("reset");
    await expect(commit.promise).rejects.toThrow();
    await waitFor(async () => (await backend(pid)) === undefined, { message: "backend gone" });
    expect((await direct.query(`SELECT 1 FROM "${schema}".t WHERE id = 2`)).rowCount).toBe(0);
  });
});

describe("fault proxy robustness", () => {
  it("a target that refuses resets the client; closing twice never throws", async () => {
    const recorder = await startRecorder();
    const port = recorder.port;
    await recorder.close();
    const proxy = await startFaultProxy({ target: { host: "127.0.0.1", port } });
    const client = openClient(proxy.port);
    const connection: ProxyConnection = await proxiedFor(proxy, client);
    await connection.closed;
    expect(connection.errors).toContain("ECONNREFUSED");
    expect(["ECONNRESET", undefined]).toContain(await client.closed);
    await Promise.all([proxy.close(), proxy.close()]);
  });
});
