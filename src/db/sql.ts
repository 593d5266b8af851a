import { createHash } from "node:crypto";
import { PgwakeError } from "../errors.ts";

/** Quotes an identifier for SQL text (schema names only: values always go as parameters). */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

export function quoteLiteral(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

/** The NOTIFY channel of a schema: the schema name itself, so two installs never cross. */
export function channelFor(schema: string): string {
  return schema;
}

/** Valid schema names: plain lower-case identifiers, so they are safe in every position. */
export const SCHEMA_PATTERN = /^(?!pg_)[a-z_][a-z0-9_]{0,62}$/;

/** A named statement whose SQL holds `{{schema}}` placeholders. */
export interface Statement {
  readonly name: string;
  readonly text: string;
}

/** Declares one SQL statement of the library, with a stable prepared-statement name. */
export function statement(name: string, text: string): Statement {
  return { name, text };
}

/**
 * Binds statements to one schema: the placeholders are replaced by the quoted schema name and
 * the prepared-statement name gets a suffix, since one connection may serve two schemas.
 */
export class SchemaSql {
  readonly schema: string;
  readonly channel: string;
  /** Where cancellations of running jobs are announced to their workers. */
  readonly controlChannel: string;
  /**
   * Statements are sent unnamed (planned on each use) instead of as named prepared statements:
   * a transaction-mode pooler hands each transaction to any server connection, where a statement
   * prepared on another one does not exist.
   */
  readonly pooler: boolean;
  private readonly suffix: string;
  private readonly cache = new Map<Statement, { name?: string; text: string }>();

  constructor(schema: string, options: { pooler?: boolean } = {}) {
    if (!SCHEMA_PATTERN.test(schema)) {
      throw new PgwakeError(
        "INVALID_OPTIONS",
        `invalid schema name ${JSON.stringify(schema)}: use [a-z_][a-z0-9_]*, not starting with pg_`,
      );
    }
    this.schema = schema;
    this.pooler = options.pooler ?? false;
    this.channel = channelFor(schema);
    this.controlChannel = `${this.channel}.control`;
    this.suffix = createHash("sha1").update(schema).digest("hex").slice(0, 8);
  }

  /** The schema-bound form of a statement, ready for `client.query({ ...bound, values })`. */
  bind(stmt: Statement): { name?: string; text: string } {
    let bound = this.cache.get(stmt);
    if (!bound) {
      const text = this.render(stmt.text);
      bound = this.pooler ? { text } : { name: `pgwake_${stmt.name}_${this.suffix}`, text };
      this.cache.set(stmt, bound);
    }
    return bound;
  }

  render(text: string): string {
    return text
      .replaceAll("{{schema}}", quoteIdent(this.schema))
      .replaceAll("{{channel}}", quoteLiteral(this.channel))
      .replaceAll("{{control_channel}}", quoteLiteral(this.controlChannel));
  }
}
