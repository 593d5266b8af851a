import { connect, type Socket } from "node:net";
import { nowMs } from "./stats.ts";

/** One run of the load generator. */
export interface LoadOptions {
  /** `http://host:port/path`. */
  url: string;
  method: "POST" | "GET";
  /** Sent with every request; `content-length` is added when there is a body. */
  headers: Record<string, string>;
  body?: string;
  /** Keep-alive connections; each carries one request at a time. */
  connections: number;
  seconds: number;
  /**
   * Requests per second, sent on a fixed schedule whatever the answers do (open loop). Omitted:
   * closed loop, every connection sends its next request as soon as its answer arrives.
   */
  rate?: number;
}

export interface LoadResult {
  /** Answers per second, from the start to the last answer. */
  rps: number;
  /**
   * Milliseconds per request. Open loop: from the moment the schedule said to send it, so a
   * request that waited for a free connection counts its wait (no coordinated omission).
   * Closed loop: from the moment it was written.
   */
  latencies: number[];
  /** Answers with a status other than 2xx, plus connection errors. */
  errors: number;
  /** Requests still unanswered when the run ended (counted as errors too). */
  unanswered: number;
}

interface Connection {
  socket: Socket;
  /** The scheduled start of the request on the wire, or undefined when idle. */
  current: number | undefined;
  buffer: Buffer;
}

const HEADER_END = Buffer.from("\r\n\r\n");
const CHUNKED_END = Buffer.from("\r\n0\r\n\r\n");

/**
 * A small HTTP/1.1 load generator on raw sockets, in the manner of wrk2: an open-loop schedule
 * of `rate` requests per second spread evenly over time (not a burst at the top of each second),
 * latency measured from each request's scheduled time. The request bytes are built once; the
 * answer parser reads only the status line and the body's framing, so the generator costs little
 * CPU next to the server it measures.
 */
export function runLoad(options: LoadOptions): Promise<LoadResult> {
  const url = new URL(options.url);
  const body = options.body === undefined ? undefined : Buffer.from(options.body);
  const headerLines = [
    `${options.method} ${url.pathname}${url.search} HTTP/1.1`,
    `host: ${url.host}`,
    ...Object.entries(options.headers).map(([name, value]) => `${name}: ${value}`),
    ...(body ? [`content-length: ${body.length}`] : []),
  ];
  const request = Buffer.concat([
    Buffer.from(`${headerLines.join("\r\n")}\r\n\r\n`),
    ...(body ? [body] : []),
  ]);

  return new Promise((resolve, reject) => {
    const latencies: number[] = [];
    let errors = 0;
    let answered = 0;
    let scheduled = 0;
    /** Scheduled send times waiting for an idle connection, oldest first. */
    const backlog: number[] = [];
    let backlogHead = 0;
    const idle: Connection[] = [];
    const all: Connection[] = [];
    let started = 0;
    /** The run's time is up: no new requests. */
    let stopping = false;
    /** Every answer is in (or given up on): nothing more is counted. */
    let finished = false;
    let lastAnswer = 0;
    let timer: NodeJS.Timeout | undefined;

    const send = (conn: Connection, at: number) => {
      conn.current = at;
      conn.socket.write(request);
    };
    const dispatch = (at: number) => {
      const conn = idle.pop();
      if (conn) send(conn, at);
      else backlog.push(at);
    };
    const onAnswer = (conn: Connection, status: number) => {
      const now = nowMs();
      if (!finished) {
        answered++;
        latencies.push(now - conn.current!);
        if (status < 200 || status > 299) errors++;
      }
      conn.current = undefined;
      lastAnswer = now;
      // Requests scheduled before the end still go out; the closed loop stops at the end.
      if (backlogHead < backlog.length) send(conn, backlog[backlogHead++]!);
      else if (options.rate === undefined && !stopping) send(conn, nowMs());
      else idle.push(conn);
    };
    const parse = (conn: Connection) => {
      for (;;) {
        const head = conn.buffer.indexOf(HEADER_END);
        if (head < 0) return;
        const headers = conn.buffer.subarray(0, head).toString("latin1");
        const status = Number(headers.slice(9, 12));
        const length = /\r\ncontent-length:\s*(\d+)/i.exec(headers);
        let end: number;
        if (length) {
          end = head + 4 + Number(length[1]);
          if (conn.buffer.length < end) return;
        } else if (/\r\ntransfer-encoding:\s*chunked/i.test(headers)) {
          const last = conn.buffer.indexOf(CHUNKED_END, head + 2);
          if (last < 0) return;
          end = last + CHUNKED_END.length;
        } else {
          end = head + 4;
        }
        conn.buffer = conn.buffer.subarray(end);
        onAnswer(conn, status);
      }
    };
    /** After the run's time: send nothing more, wait for the answers still owed (up to 10 s). */
    const finish = () => {
      if (stopping) return;
      stopping = true;
      if (timer) clearTimeout(timer);
      const owed = () =>
        all.filter((c) => c.current !== undefined).length + (backlog.length - backlogHead);
      const deadline = nowMs() + 10_000;
      const check = () => {
        const unanswered = owed();
        if (unanswered > 0 && nowMs() < deadline) return void setTimeout(check, 5);
        finished = true;
        for (const conn of all) conn.socket.destroy();
        resolve({
          rps: answered / ((Math.max(lastAnswer, started + 1) - started) / 1_000),
          latencies,
          errors: errors + unanswered,
          unanswered,
        });
      };
      check();
    };
    const tick = () => {
      const now = nowMs();
      if (now - started >= options.seconds * 1_000) return finish();
      const rate = options.rate!;
      const due = Math.floor(((now - started) * rate) / 1_000);
      while (scheduled < due) {
        dispatch(started + (scheduled * 1_000) / rate);
        scheduled++;
      }
      // Wake at the next scheduled send (timers fire no sooner than 1 ms).
      timer = setTimeout(tick, Math.max(0, started + (scheduled * 1_000) / rate - nowMs()));
    };

    let opened = 0;
    for (let i = 0; i < options.connections; i++) {
      const socket = connect({ host: url.hostname, port: Number(url.port), noDelay: true });
      const conn: Connection = { socket, current: undefined, buffer: Buffer.alloc(0) };
      all.push(conn);
      socket.on("data", (chunk: Buffer) => {
        conn.buffer = conn.buffer.length === 0 ? chunk : Buffer.concat([conn.buffer, chunk]);
        parse(conn);
      });
      socket.on("error", (error) => {
        if (opened < options.connections) reject(error);
        else if (!finished) errors++;
      });
      socket.on("close", () => {
        if (finished) return;
        // The server closed a keep-alive connection: whatever it carried is lost.
        if (conn.current !== undefined) errors++;
        conn.current = undefined;
        const at = idle.indexOf(conn);
        if (at >= 0) idle.splice(at, 1);
      });
      socket.once("connect", () => {
        opened++;
        idle.push(conn);
        if (opened < options.connections) return;
        started = nowMs();
        if (options.rate === undefined) {
          for (const c of idle.splice(0)) send(c, nowMs());
          timer = setTimeout(finish, options.seconds * 1_000);
        } else {
          tick();
        }
      });
    }
  });
}
