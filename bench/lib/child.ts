import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { ChildConfig, ChildMessage, ParentMessage } from "./protocol.ts";
import { nowMs } from "./stats.ts";

const SCRIPT = fileURLToPath(new URL("../worker-process.ts", import.meta.url));

/** A worker process of the benchmark, driven over IPC. */
export class BenchChild {
  readonly config: ChildConfig;
  handled = 0;
  private readonly proc: ChildProcess;
  private readonly waiters: { type: ChildMessage["type"]; resolve: (m: ChildMessage) => void }[] =
    [];
  private failure: Error | undefined;
  private pingId = 0;

  private constructor(config: ChildConfig) {
    this.config = config;
    this.proc = fork(SCRIPT, [JSON.stringify(config)], {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      serialization: "advanced",
    });
    this.proc.on("message", (raw) => this.onMessage(raw as ChildMessage));
    this.proc.on("exit", (code) => {
      if (code !== 0 && code !== null)
        this.fail(new Error(`${config.system} worker process exited with ${code}`));
    });
  }

  /** Forks a child and waits for it to be ready (loading pgwake takes a while on a busy box). */
  static async spawn(config: ChildConfig, readyTimeoutMs = 60_000): Promise<BenchChild> {
    const child = new BenchChild(config);
    try {
      await child.next("ready", readyTimeoutMs);
    } catch (error) {
      child.proc.kill("SIGKILL");
      throw error;
    }
    return child;
  }

  private onMessage(message: ChildMessage): void {
    if (message.type === "progress") this.handled = message.handled;
    if (message.type === "stopped") this.handled = message.handled;
    // "prepare" starts the child's count from 0 again: so does ours (a restarted worker's
    // progress would otherwise be read against the previous run's count).
    if (message.type === "prepared") this.handled = 0;
    if (message.type === "error") this.fail(new Error(`worker process: ${message.text}`));
    if (message.type === "log") process.stderr.write(`\n[${this.config.system}] ${message.text}\n`);
    const index = this.waiters.findIndex((w) => w.type === message.type);
    if (index >= 0) this.waiters.splice(index, 1)[0]!.resolve(message);
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const w of this.waiters.splice(0)) w.resolve({ type: "error", text: error.message });
  }

  send(message: ParentMessage): void {
    this.proc.send(message);
  }

  /** Waits for the next message of a type. */
  async next<T extends ChildMessage["type"]>(
    type: T,
    timeoutMs = 60_000,
  ): Promise<Extract<ChildMessage, { type: T }>> {
    if (this.failure) throw this.failure;
    const message = await new Promise<ChildMessage>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(new Error(`${this.config.system} worker: no "${type}" within ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.waiters.push({
        type,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
      });
    });
    if (message.type === "error") throw this.failure ?? new Error(message.text);
    return message as Extract<ChildMessage, { type: T }>;
  }

  async request<T extends ChildMessage["type"]>(
    message: ParentMessage,
    reply: T,
    timeoutMs?: number,
  ): Promise<Extract<ChildMessage, { type: T }>> {
    const waiting = this.next(reply, timeoutMs);
    this.send(message);
    return waiting;
  }

  /**
   * The child's clock minus ours, from the ping with the shortest round trip (the child's
   * reading is taken to be at the midpoint).
   */
  async clockOffset(pings = 15): Promise<{ offsetMs: number; rttMs: number }> {
    let best = { offsetMs: 0, rttMs: Number.POSITIVE_INFINITY };
    for (let i = 0; i < pings; i++) {
      const id = ++this.pingId;
      const sent = nowMs();
      const pong = await this.request({ type: "ping", id }, "pong");
      const received = nowMs();
      const rtt = received - sent;
      if (rtt < best.rttMs) best = { offsetMs: pong.now - (sent + received) / 2, rttMs: rtt };
    }
    return best;
  }

  async exit(): Promise<void> {
    if (this.proc.exitCode !== null || !this.proc.connected) return;
    const exited = new Promise<void>((resolve) => this.proc.once("exit", () => resolve()));
    this.send({ type: "exit" });
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

/** Spawns `count` children in parallel. */
export function spawnChildren(count: number, config: ChildConfig): Promise<BenchChild[]> {
  return Promise.all(Array.from({ length: count }, () => BenchChild.spawn(config)));
}

export async function exitAll(children: readonly BenchChild[]): Promise<void> {
  await Promise.all(children.map((c) => c.exit()));
}
