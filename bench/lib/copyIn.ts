import type pg from "pg";

/** The parts of pg's Connection a COPY FROM STDIN drives. */
interface CopyConnection {
  query(text: string): void;
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
}

/**
 * `COPY … FROM STDIN` through node-postgres without a stream library: a submittable that sends
 * the statement, then the whole buffer when the server asks for it. Enough for the bench's bulk
 * prototype (one buffer, text format); not a general COPY client.
 */
class CopyFromBuffer {
  private readonly text: string;
  private readonly data: Buffer;
  private readonly done: { resolve: (rows: number) => void; reject: (error: Error) => void };
  private rows = 0;
  private error: Error | undefined;

  constructor(
    text: string,
    data: Buffer,
    done: { resolve: (rows: number) => void; reject: (error: Error) => void },
  ) {
    this.text = text;
    this.data = data;
    this.done = done;
  }

  submit(connection: CopyConnection): void {
    connection.query(this.text);
  }

  handleCopyInResponse(connection: CopyConnection): void {
    connection.sendCopyFromChunk(this.data);
    connection.endCopyFrom();
  }

  handleCommandComplete(message: { text?: string }): void {
    this.rows = Number(/(\d+)$/.exec(message.text ?? "")?.[1] ?? 0);
  }

  handleError(error: Error): void {
    this.error = error;
  }

  handleReadyForQuery(): void {
    if (this.error) this.done.reject(this.error);
    else this.done.resolve(this.rows);
  }

  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyData(): void {}
}

/** Escapes a value for COPY's text format. */
export function copyText(value: string): string {
  return value
    .replaceAll("\\", "\\\\")
    .replaceAll("\t", "\\t")
    .replaceAll("\n", "\\n")
    .replaceAll("\r", "\\r");
}

/** Runs `COPY … FROM STDIN` (text format) with `data` on `client`; returns the rows copied. */
export function copyFrom(client: pg.ClientBase, text: string, data: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    client.query(new CopyFromBuffer(text, data, { resolve, reject }) as unknown as pg.QueryConfig);
  });
}
