import { DEFAULT_QUEUE } from "../../jobs/enqueue.ts";
import type { QueueLimits } from "../../jobs/flowControl.ts";
import type { QueueStats } from "../../jobs/queueStats.ts";
import { JOB_STATUSES } from "../../jobs/types.ts";
import { CommandError, EXIT, UsageError } from "../errors.ts";
import { renderTable, shortDuration } from "../table.ts";
import { type CommandContext, openForCommand, withDatabase } from "./shared.ts";

const QUEUE_NAME = /^[A-Za-z0-9_.:-]{1,128}$/;

/** Rows of a queue table: name, paused, a count per status, oldest ready job's wait, workers. */
export function queueTable(queues: readonly QueueStats[]): string {
  return renderTable(
    ["QUEUE", "PAUSED", ...JOB_STATUSES.map((s) => s.toUpperCase()), "OLDEST READY", "WORKERS"],
    queues.map((queue) => [
      queue.name,
      queue.paused ? "yes" : "no",
      ...JOB_STATUSES.map((status) => String(queue.counts[status] ?? 0)),
      shortDuration(queue.oldestPendingAgeMs),
      String(queue.workers.length),
    ]),
  );
}

/** `pgwake queues`: every known queue with its counts. */
export async function queuesList(ctx: CommandContext): Promise<number> {
  const { pgwake, database } = await openForCommand(ctx);
  const queues = await withDatabase(database, () => pgwake.queueStats());
  if (ctx.parsed.extra.json) {
    ctx.print(`${JSON.stringify({ queues }, null, 2)}\n`);
  } else {
    ctx.print(queues.length === 0 ? "no queues yet\n" : queueTable(queues));
  }
  return EXIT.ok;
}

function queueName(ctx: CommandContext): string {
  const [name] = ctx.parsed.positionals;
  if (!name || !QUEUE_NAME.test(name)) {
    throw new UsageError(`not a queue name: ${JSON.stringify(name ?? "")}`);
  }
  return name;
}

/** A misspelt name would leave a settings row that shows as a queue for ever (as the API does). */
async function requireKnown(
  ctx: CommandContext,
  opened: Awaited<ReturnType<typeof openForCommand>>,
  name: string,
  /** What the command would do to it (the hint to add --create); none when it only reads. */
  doing?: string,
): Promise<void> {
  const { pgwake, database } = opened;
  if (name === DEFAULT_QUEUE || ctx.parsed.extra.create) return;
  if (pgwake.tasks.names().some((task) => pgwake.tasks.get(task)?.queue === name)) return;
  const known = await withDatabase(database, () => pgwake.queueStats());
  if (known.some((q) => q.name === name)) return;
  const names = known.map((queue) => queue.name).join(", ") || "none yet";
  const hint = doing ? `; to ${doing} before its first job, add --create` : "";
  throw new CommandError(`no queue "${name}" is known (known: ${names})${hint}`);
}

async function setPaused(ctx: CommandContext, paused: boolean): Promise<number> {
  const name = queueName(ctx);
  const opened = await openForCommand(ctx);
  const { pgwake, database } = opened;
  await requireKnown(ctx, opened, name, "pause it");
  const settings = await withDatabase(database, () =>
    paused ? pgwake.pauseQueue(name) : pgwake.resumeQueue(name),
  );
  if (ctx.parsed.extra.json) ctx.print(`${JSON.stringify(settings, null, 2)}\n`);
  else ctx.print(`queue ${settings.name} ${settings.paused ? "paused" : "resumed"}\n`);
  return EXIT.ok;
}

/** `pgwake queues pause <name>`. */
export function queuesPause(ctx: CommandContext): Promise<number> {
  return setPaused(ctx, true);
}

/** `pgwake queues resume <name>`. */
export function queuesResume(ctx: CommandContext): Promise<number> {
  return setPaused(ctx, false);
}

const LIMIT_FLAGS = [
  "concurrency",
  "key-concurrency",
  "rate",
  "burst",
  "key-rate",
  "key-burst",
  "fair",
];

/** `pgwake queues limits <name> [flags]`: shows, sets or clears a queue's limits. */
export async function queuesLimits(ctx: CommandContext): Promise<number> {
  const name = queueName(ctx);
  const extra = ctx.parsed.extra;
  const setting = LIMIT_FLAGS.filter((flag) => extra[flag] !== undefined);
  if (extra.clear && setting.length > 0) {
    throw new UsageError(`--clear takes no limit (got --${setting.join(", --")})`);
  }
  // Every flag is checked before the database is touched.
  const limits = setting.length > 0 ? parseLimits(extra) : undefined;
  const opened = await openForCommand(ctx);
  const { pgwake, database } = opened;
  // Reading a queue nobody knows is an error too, as the HTTP API's 404: a misspelt name must
  // not read as "no limits".
  await requireKnown(ctx, opened, name, limits || extra.clear ? "limit it" : undefined);
  const flow = await withDatabase(database, async () => {
    if (limits) return pgwake.setQueueLimits(name, limits);
    if (extra.clear) return pgwake.clearQueueLimits(name);
    const [found] = await pgwake.queueLimits(name);
    return found;
  });
  if (extra.json) {
    ctx.print(`${JSON.stringify(flow ?? { name, limited: false }, null, 2)}\n`);
    return EXIT.ok;
  }
  if (!flow?.limited) {
    ctx.print(`queue ${name}: no limits\n`);
    return EXIT.ok;
  }
  const rate = (n: number | null, periodMs: number, burst: number | null) =>
    n === null ? "-" : `${n}/${periodText(periodMs)}${burst !== null ? ` burst ${burst}` : ""}`;
  ctx.print(
    renderTable(
      [
        "QUEUE",
        "CONCURRENCY",
        "PER KEY",
        "RATE",
        "KEY RATE",
        "FAIR",
        "RUNNING",
        "TOKENS",
        "THROTTLED",
        "SET BY",
      ],
      [
        [
          flow.name,
          flow.concurrency === null ? "-" : String(flow.concurrency),
          flow.keyConcurrency === null ? "-" : String(flow.keyConcurrency),
          rate(flow.rateLimit, flow.ratePeriodMs, flow.rateBurst),
          rate(flow.keyRateLimit, flow.keyRatePeriodMs, flow.keyRateBurst),
          flow.fair ? "yes" : "no",
          String(flow.running),
          flow.tokens === null ? "-" : flow.tokens.toFixed(1),
          String(flow.throttled),
          flow.source ?? "-",
        ],
      ],
    ),
  );
  return EXIT.ok;
}

/** `pgwake queues keys <name>`: the busiest concurrency keys of a queue. */
export async function queuesKeys(ctx: CommandContext): Promise<number> {
  const name = queueName(ctx);
  const limit = ctx.parsed.extra.limit === undefined ? 20 : count("limit", ctx.parsed.extra.limit);
  if (limit > 1_000) throw new UsageError("--limit: at most 1000");
  const opened = await openForCommand(ctx);
  const { pgwake, database } = opened;
  await requireKnown(ctx, opened, name);
  const keys = await withDatabase(database, () => pgwake.queueKeys(name, { limit }));
  if (ctx.parsed.extra.json) {
    ctx.print(`${JSON.stringify({ keys }, null, 2)}\n`);
  } else if (keys.length === 0) {
    ctx.print(`queue ${name}: no concurrency keys (no per-key limit, not fair, or no jobs yet)\n`);
  } else {
    ctx.print(
      renderTable(
        ["KEY", "RUNNING", "TOKENS", "READY"],
        keys.map((k) => [
          k.key === "" ? "(none)" : k.key,
          String(k.running),
          k.tokens === null ? "-" : k.tokens.toFixed(1),
          k.pending >= 10_000 ? "10000+" : String(k.pending),
        ]),
      ),
    );
  }
  return EXIT.ok;
}

function count(flag: string, value: unknown): number {
  const text = String(value);
  if (!/^\d{1,9}$/.test(text) || Number(text) < 1) {
    throw new UsageError(`--${flag}: a whole number of at least 1 (got ${JSON.stringify(text)})`);
  }
  return Number(text);
}

const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/** `100/s`, `5/1m`, `1/250ms`: starts per period. */
function rateOf(flag: string, value: unknown): { limit: number; periodMs: number } {
  const match = /^(\d{1,9})\/(\d{0,9})(ms|s|m|h)$/.exec(String(value).trim());
  const limit = match ? Number(match[1]) : 0;
  const periodMs = match ? Number(match[2] || "1") * UNITS[match[3]!]! : 0;
  if (!match || limit < 1 || periodMs < 1 || periodMs > 2_147_483_647) {
    throw new UsageError(
      `--${flag}: starts per period, like 100/s, 5/1m or 1/250ms (got ${JSON.stringify(String(value))})`,
    );
  }
  return { limit, periodMs };
}

function parseLimits(extra: Record<string, unknown>): QueueLimits {
  const limits: QueueLimits = {};
  if (extra.concurrency !== undefined) limits.concurrency = count("concurrency", extra.concurrency);
  if (extra["key-concurrency"] !== undefined) {
    limits.keyConcurrency = count("key-concurrency", extra["key-concurrency"]);
  }
  if (extra.rate !== undefined) {
    const { limit, periodMs } = rateOf("rate", extra.rate);
    limits.rateLimit = limit;
    limits.ratePeriodMs = periodMs;
  }
  if (extra["key-rate"] !== undefined) {
    const { limit, periodMs } = rateOf("key-rate", extra["key-rate"]);
    limits.keyRateLimit = limit;
    limits.keyRatePeriodMs = periodMs;
  }
  if (extra.burst !== undefined) {
    if (limits.rateLimit === undefined) throw new UsageError("--burst needs --rate");
    limits.rateBurst = count("burst", extra.burst);
  }
  if (extra["key-burst"] !== undefined) {
    if (limits.keyRateLimit === undefined) throw new UsageError("--key-burst needs --key-rate");
    limits.keyRateBurst = count("key-burst", extra["key-burst"]);
  }
  if (extra.fair) limits.fair = true;
  return limits;
}

function periodText(ms: number): string {
  for (const [unit, size] of [
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1_000],
  ] as const) {
    if (ms % size === 0) return ms === size ? unit : `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
