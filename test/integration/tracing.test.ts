import { AsyncLocalStorage } from "node:async_hooks";
import {
  type Context,
  type ContextManager,
  context,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/api/app.ts";
import { type ApiServer, serveApi } from "../../src/api/server.ts";
import { defineTask, type Worker } from "../../src/index.ts";
import { createTestDb, type TestDb } from "../helpers/db.ts";
import { waitFor } from "../helpers/wait.ts";

// Issue 16: OpenTelemetry through @opentelemetry/api only. A job carries the W3C trace context of
// the span that enqueued it; each run is a span in that trace, so the submitter's trace continues
// in the handler; retries are linked to the original. Recorded here by the SDK's in-memory
// exporter, as an application that installs an SDK would see them.

/** The application's context manager (what @opentelemetry/context-async-hooks provides). */
class AsyncLocalContextManager implements ContextManager {
  private readonly storage = new AsyncLocalStorage<Context>();
  active(): Context {
    return this.storage.getStore() ?? ROOT_CONTEXT;
  }
  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    ctx: Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    return this.storage.run(ctx, () => fn.apply(thisArg, args));
  }
  bind<T>(_ctx: Context, target: T): T {
    return target;
  }
  enable(): this {
    return this;
  }
  disable(): this {
    this.storage.disable();
    return this;
  }
}

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN = "00f067aa0ba902b7";

describe("OpenTelemetry traces", () => {
  const exporter = new InMemorySpanExporter();
  let db: TestDb;
  let server: ApiServer;
  let worker: Worker;

  const traced = defineTask({
    name: "traced",
    handler: async (payload: { fail?: boolean; garbage?: boolean }, ctx) => {
      // A span the application makes in its handler nests under the run's span.
      await trace.getTracer("app").startActiveSpan("app.work", async (span) => {
        span.end();
      });
      if (payload.garbage) throw { not: "an error" };
      if (payload.fail && ctx.attempt === 1) throw new Error("first attempt fails");
      return { ok: true };
    },
    backoff: { baseMs: 1, maxMs: 1 },
  });

  beforeAll(async () => {
    context.setGlobalContextManager(new AsyncLocalContextManager());
    trace.setGlobalTracerProvider(
      new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }),
    );
    db = await createTestDb("tracing", { tasks: [traced] });
    server = await serveApi(createApp({ pgwake: db.pgwake }), { port: 0 });
    worker = db.pgwake.worker({ concurrency: 4, pollIntervalMs: 200 });
    await worker.start();
  });

  afterAll(async () => {
    await worker?.stop({ graceMs: 1_000 });
    await server?.close();
    await db?.close();
    trace.disable();
    context.disable();
  });

  const spans = () => exporter.getFinishedSpans();
  const named = (name: string) => spans().filter((s) => s.name === name);
  const ofJob = (name: string, id: number) =>
    named(name).filter((s) => s.attributes["messaging.message.id"] === String(id));
  const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;

  it("continues the caller's trace from an HTTP submission to the handler and its own spans", async () => {
    const res = await fetch(`${server.url}/jobs`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        traceparent: `00-${TRACE_ID}-${CALLER_SPAN}-01`,
      },
      body: JSON.stringify({ task: "traced", payload: {} }),
    });
    expect(res.status).toBe(201);
    const { job } = (await res.json()) as { job: { id: number } };
    const [run] = await waitFor(() => {
      const found = ofJob("pgwake.run traced", job.id);
      return found.length === 1 ? found : undefined;
    });

    const [submit] = named("pgwake.submit").filter((s) => s.spanContext().traceId === TRACE_ID);
    expect(submit).toBeDefined();
    expect(submit!.kind).toBe(SpanKind.SERVER);
    expect(parentOf(submit!)).toBe(CALLER_SPAN);
    const [enqueue] = named("pgwake.enqueue").filter(
      (s) => s.attributes["messaging.message.id"] === String(job.id),
    );
    expect(enqueue!.kind).toBe(SpanKind.PRODUCER);
    expect(enqueue!.spanContext().traceId).toBe(TRACE_ID);
    expect(parentOf(enqueue!)).toBe(submit!.spanContext().spanId);

    expect(run!.kind).toBe(SpanKind.CONSUMER);
    expect(run!.spanContext().traceId).toBe(TRACE_ID);
    expect(parentOf(run!)).toBe(enqueue!.spanContext().spanId);
    expect(run!.attributes).toMatchObject({
      "messaging.destination.name": "default",
      "pgwake.task": "traced",
      "pgwake.job.attempt": 1,
    });
    expect(run!.status.code).not.toBe(SpanStatusCode.ERROR);

    const inner = named("app.work").find((s) => parentOf(s) === run!.spanContext().spanId);
    expect(inner?.spanContext().traceId).toBe(TRACE_ID);

    // The claim that took it is a span of its own, linked to the job's trace.
    const claim = named("pgwake.claim").find((s) =>
      s.links.some((l) => l.context.spanId === enqueue!.spanContext().spanId),
    );
    expect(claim?.links.find((l) => l.context.traceId === TRACE_ID)).toBeDefined();
  });

  it("puts every attempt in the submitter's trace and links a retry to the original", async () => {
    const parent = trace.getTracer("app").startSpan("app.request");
    const { job } = await context.with(trace.setSpan(context.active(), parent), () =>
      db.pgwake.enqueue("traced", { fail: true }),
    );
    parent.end();
    const runs = await waitFor(() => {
      const found = ofJob("pgwake.run traced", job.id);
      return found.length === 2 ? found : undefined;
    });
    const [enqueue] = named("pgwake.enqueue").filter(
      (s) => s.attributes["messaging.message.id"] === String(job.id),
    );
    expect(parentOf(enqueue!)).toBe(parent.spanContext().spanId);
    const [first, second] = runs.sort(
      (a, b) =>
        Number(a.attributes["pgwake.job.attempt"]) - Number(b.attributes["pgwake.job.attempt"]),
    );
    for (const run of [first!, second!]) {
      expect(run.spanContext().traceId).toBe(parent.spanContext().traceId);
      expect(parentOf(run)).toBe(enqueue!.spanContext().spanId);
    }
    expect(first!.status).toMatchObject({
      code: SpanStatusCode.ERROR,
      message: "first attempt fails",
    });
    expect(first!.events.map((e) => e.name)).toContain("exception");
    expect(first!.links).toEqual([]);
    expect(second!.attributes["pgwake.job.attempt"]).toBe(2);
    expect(second!.links.map((l) => l.context.spanId)).toEqual([enqueue!.spanContext().spanId]);
  });

  it("records what a handler threw even when it is not an Error", async () => {
    const { job } = await db.pgwake.enqueue("traced", { garbage: true }, { maxAttempts: 1 });
    const [run] = await waitFor(() => {
      const found = ofJob("pgwake.run traced", job.id);
      return found.length === 1 ? found : undefined;
    });
    expect(run!.status.code).toBe(SpanStatusCode.ERROR);
    expect(run!.events.find((e) => e.name === "exception")).toBeDefined();
  });

  it("stores no trace context when nothing traces the submission", async () => {
    trace.disable();
    const { job } = await db.pgwake.enqueue("traced", {});
    expect(job.traceParent).toBeNull();
    const [row] = await db.query<{ trace_parent: string | null }>(
      "SELECT trace_parent FROM {{schema}}.jobs WHERE id = $1",
      [job.id],
    );
    expect(row?.trace_parent ?? null).toBeNull();
  });
});
