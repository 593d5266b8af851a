import type { IncomingMessage } from "node:http";
import { Readable } from "node:stream";
import type { Context } from "hono";
import { ApiError } from "../errors.ts";

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;.*)?$/i;

/** True when the request carries a body (declared length > 0, or chunked). */
export function hasBody(c: Context): boolean {
  const length = c.req.header("content-length");
  if (c.req.header("transfer-encoding")) return true;
  if (length !== undefined) return length.trim() !== "0";
  // HTTP/1.1 without either header has no body. (Asking for `raw.body` under node-server would
  // start a web stream reading the request, ahead of `readIncoming`.)
  if (incomingOf(c)) return false;
  return c.req.raw.body !== null;
}

/** Node's request under @hono/node-server, while nothing else has read from it. */
function incomingOf(c: Context): Readable | undefined {
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
  return incoming instanceof Readable && !incoming.readableDidRead ? incoming : undefined;
}

/**
 * Reads a JSON body of at most `limit` bytes. A declared Content-Length over the limit is refused
 * before any byte is read; a chunked body is counted as it streams and refused the moment it
 * passes the limit, so an oversized body is never held whole in memory.
 * `optional`: an absent or empty body gives `undefined` instead of an error.
 */
export async function readJson(
  c: Context,
  limit: number,
  options: { optional?: boolean } = {},
): Promise<unknown> {
  if (options.optional && !hasBody(c)) return undefined;
  const type = c.req.header("content-type");
  if (type === undefined || !JSON_TYPE.test(type)) {
    throw new ApiError(
      415,
      "UNSUPPORTED_MEDIA_TYPE",
      "send the body as Content-Type: application/json",
      {
        details: { contentType: type ?? null },
      },
    );
  }
  const declared = c.req.header("content-length");
  if (declared !== undefined) {
    const length = /^\d{1,16}$/.test(declared.trim()) ? Number(declared.trim()) : Number.NaN;
    if (Number.isNaN(length)) {
      throw new ApiError(400, "INVALID_JSON", "Content-Length is not a number");
    }
    if (length > limit) throw tooLarge(limit);
  }
  // Served by @hono/node-server, the body is read straight from Node's request stream: wrapping
  // it in a web stream first costs more CPU than everything else a submission does.
  const incoming = incomingOf(c);
  const bytes = incoming
    ? await readIncoming(incoming, limit)
    : await readLimited(c.req.raw.body, limit);
  if (bytes.length === 0) {
    if (options.optional) return undefined;
    throw new ApiError(400, "INVALID_JSON", "the request body is empty: send a JSON object");
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new ApiError(400, "INVALID_JSON", "the request body is not valid UTF-8");
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ApiError(400, "INVALID_JSON", "the request body is not valid JSON", {
      details: { reason: (error as Error).message },
    });
  }
}

function tooLarge(limit: number): ApiError {
  return new ApiError(
    413,
    "PAYLOAD_TOO_LARGE",
    `the request body is over the limit of ${limit} bytes`,
    {
      details: { limitBytes: limit },
      headers: { Connection: "close" },
    },
  );
}

function readIncoming(incoming: Readable, limit: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const settle = (error?: ApiError) => {
      incoming.off("data", onData);
      incoming.off("end", onEnd);
      incoming.off("error", onAborted);
      incoming.off("close", onClose);
      if (error) {
        // Stop reading; the 413 answer closes the connection.
        incoming.pause();
        reject(error);
      } else resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onData = (chunk: Buffer) => {
      size += chunk.byteLength;
      if (size > limit) settle(tooLarge(limit));
      else chunks.push(chunk);
    };
    const onEnd = () => settle();
    const onAborted = () =>
      settle(new ApiError(400, "INVALID_JSON", "the request body ended before it was complete"));
    const onClose = () => {
      if (!incoming.readableEnded) onAborted();
    };
    if (incoming.readableEnded) return settle();
    if (incoming.destroyed || incoming.errored) return onAborted();
    incoming.on("data", onData);
    incoming.on("end", onEnd);
    incoming.on("error", onAborted);
    incoming.on("close", onClose);
  });
}

async function readLimited(
  body: ReadableStream<Uint8Array> | null,
  limit: number,
): Promise<Uint8Array> {
  if (!body) return new Uint8Array(0);
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      throw tooLarge(limit);
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}
