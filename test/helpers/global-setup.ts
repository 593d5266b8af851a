import type { TestProject } from "vitest/node";
import { findTestPostgres } from "./postgres.ts";

declare module "vitest" {
  export interface ProvidedContext {
    databaseUrl: string;
  }
}

/** One Postgres for the whole run; each test file isolates itself in its own schema. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const postgres = await findTestPostgres();
  project.provide("databaseUrl", postgres.url);
  console.log(`tests use Postgres from ${postgres.source}`);
  return postgres.stop;
}
