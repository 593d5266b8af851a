/**
 * Enqueues a job inside your own transaction: the job exists if and only if the transaction
 * commits, so a signed-up user always gets their welcome email and a rolled-back sign-up never
 * sends one.
 *
 *   npm start -- --tasks examples/tasks.ts          # in one terminal (embedded Postgres)
 *   node examples/enqueue-in-transaction.ts          # in another
 *
 * Uses DATABASE_URL, or the embedded Postgres that `npm start` runs on its default port.
 */
import pg from "pg";
import { Pgwake } from "../src/index.ts";
import { welcomeEmail } from "./tasks.ts";

const connectionString =
  process.env.DATABASE_URL ?? "postgres://postgres:pgwake@127.0.0.1:54329/postgres";
const pool = new pg.Pool({ connectionString });
const pgwake = new Pgwake({
  pool,
  schema: process.env.PGWAKE_SCHEMA ?? "pgwake",
  tasks: [welcomeEmail],
});

async function signUp(email: string, fail: boolean): Promise<number | undefined> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    const { rows } = await client.query<{ id: number }>(
      "INSERT INTO example_users (email) VALUES ($1) RETURNING id",
      [email],
    );
    const userId = rows[0]!.id;
    // Same client, same transaction: the job commits or rolls back with the user.
    const { job } = await pgwake.enqueue("welcome-email", { userId, email }, { client });
    if (fail) throw new Error("something went wrong after the insert");
    await client.query("COMMIT");
    return job.id;
  } catch (error) {
    await client.query("ROLLBACK");
    console.log(`sign-up of ${email} rolled back (${(error as Error).message}): no job`);
    return undefined;
  } finally {
    client.release();
  }
}

try {
  await pgwake.migrate();
  await pool.query(
    "CREATE TABLE IF NOT EXISTS example_users (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text NOT NULL)",
  );
  const jobId = await signUp("ada@example.com", false);
  console.log(`committed: job ${jobId} will send the welcome email`);
  await signUp("bob@example.com", true);
  if (jobId !== undefined) console.log(JSON.stringify(await pgwake.getJob(jobId), null, 2));
} finally {
  await pool.end();
}
