import {
  type Attributes,
  type Context,
  context,
  createTraceState,
  isSpanContextValid,
  type Link,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from "@opentelemetry/api";

/**
 * OpenTelemetry through `@opentelemetry/api` only: spans cost nothing and record nothing unless
 * the application registers an SDK. A job carries the W3C trace context of the span that
 * enqueued it (`traceparent`/`tracestate`, written here rather than by a registered propagator,
 * so it travels even when the application has none), and each run of the job is a span in that
 * trace: the submitter's trace continues in the handler, whatever process runs it.
 *
 * Spans: `pgwake.submit` (an HTTP submission), `pgwake.enqueue` (producer: the insert),
 * `pgwake.claim` (a claim, linked to the jobs it took), `pgwake.run <task>` (consumer: one
 * attempt; attempts after the first are also linked to the original submission).
 */

const VERSION = "0.1.0";

/** The tracer of pgwake's spans (the global provider's, resolved on each use). */
export function tracer(): Tracer {
  return trace.getTracer("pgwake", VERSION);
}

/** A job's stored trace context. */
export interface TraceCarrier {
  traceParent: string | null;
  traceState: string | null;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The W3C trace context of a span context, to store on a job (null when there is none). */
export function carrierOf(spanContext: SpanContext | undefined): TraceCarrier {
  if (!spanContext || !isSpanContextValid(spanContext)) {
    return { traceParent: null, traceState: null };
  }
  const flags = (spanContext.traceFlags & 0xff).toString(16).padStart(2, "0");
  return {
    traceParent: `00-${spanContext.traceId}-${spanContext.spanId}-${flags}`,
    traceState: spanContext.traceState?.serialize() || null,
  };
}

/** The remote span context of a `traceparent` (and `tracestate`), or undefined if invalid. */
export function spanContextOf(
  traceParent: string | null | undefined,
  traceState?: string | null,
): SpanContext | undefined {
  const match = traceParent ? TRACEPARENT.exec(traceParent.trim().toLowerCase()) : null;
  if (!match) return undefined;
  const spanContext: SpanContext = {
    traceId: match[1]!,
    spanId: match[2]!,
    traceFlags: Number.parseInt(match[3]!, 16),
    isRemote: true,
    ...(traceState ? { traceState: createTraceState(traceState) } : {}),
  };
  return isSpanContextValid(spanContext) ? spanContext : undefined;
}

/** A context whose parent is the stored or received trace context (else `fallback`). */
export function contextFrom(
  traceParent: string | null | undefined,
  traceState: string | null | undefined,
  fallback: Context = ROOT_CONTEXT,
): Context {
  const spanContext = spanContextOf(traceParent, traceState);
  return spanContext ? trace.setSpanContext(fallback, spanContext) : fallback;
}

/** Runs `work` in a span, ending it with the outcome (an error is recorded and rethrown). */
export async function inSpan<T>(
  name: string,
  options: { kind?: SpanKind; attributes?: Attributes; links?: Link[]; parent?: Context },
  work: (span: Span, spanContext: Context) => Promise<T>,
): Promise<T> {
  const parent = options.parent ?? context.active();
  const span = tracer().startSpan(
    name,
    {
      kind: options.kind ?? SpanKind.INTERNAL,
      ...(options.attributes ? { attributes: options.attributes } : {}),
      ...(options.links ? { links: options.links } : {}),
    },
    parent,
  );
  const inner = trace.setSpan(parent, span);
  try {
    return await context.with(inner, () => work(span, inner));
  } catch (error) {
    failSpan(span, error);
    throw error;
  } finally {
    span.end();
  }
}

/** Marks a span failed with what was thrown (any value: handlers throw garbage). */
export function failSpan(span: Span, error: unknown): void {
  if (!span.isRecording()) return;
  if (error instanceof Error) {
    span.recordException(error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
  } else {
    let text: string;
    try {
      text = String(error);
    } catch {
      text = "a value that cannot be shown";
    }
    span.recordException({ name: "NonError", message: text });
    span.setStatus({ code: SpanStatusCode.ERROR, message: text });
  }
}

export { SpanKind, SpanStatusCode };

/**
 * A claim that took jobs, as a `pgwake.claim` span of its own (claims that find nothing make no
 * span: a poll would otherwise flood the traces), linked to the trace of each job it took.
 */
export function recordClaim(
  queue: string,
  jobs: readonly TraceCarrier[],
  startedAt: number,
  workerId: string,
): void {
  const span = tracer().startSpan("pgwake.claim", {
    kind: SpanKind.CONSUMER,
    startTime: startedAt,
    attributes: {
      "messaging.system": "pgwake",
      "messaging.operation.type": "receive",
      "messaging.destination.name": queue,
      "messaging.batch.message_count": jobs.length,
      "pgwake.worker.id": workerId,
    },
  });
  if (span.isRecording()) {
    const links: Link[] = [];
    for (const job of jobs.slice(0, 128)) {
      const linked = spanContextOf(job.traceParent, job.traceState);
      if (linked) links.push({ context: linked });
    }
    if (links.length > 0) span.addLinks(links);
  }
  span.end();
}

/**
 * The span of one attempt of a job: a child of the span that enqueued it, so the handler
 * continues the submitter's trace; an attempt after the first also links to that original span.
 */
export function runSpan(
  job: { id: number; queue: string; task: string; attempts: number } & TraceCarrier,
  parent: Context,
  workerId: string,
): Span {
  const original = job.attempts > 1 ? spanContextOf(job.traceParent, job.traceState) : undefined;
  return tracer().startSpan(
    `pgwake.run ${job.task}`,
    {
      kind: SpanKind.CONSUMER,
      attributes: {
        "messaging.system": "pgwake",
        "messaging.operation.type": "process",
        "messaging.destination.name": job.queue,
        "messaging.message.id": String(job.id),
        "pgwake.task": job.task,
        "pgwake.job.attempt": job.attempts,
        "pgwake.worker.id": workerId,
      },
      ...(original
        ? { links: [{ context: original, attributes: { "pgwake.retry_of": job.id } }] }
        : {}),
    },
    parent,
  );
}
