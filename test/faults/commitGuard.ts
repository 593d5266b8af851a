/**
 * A way to make a submitting transaction fail at its commit, after the wake-up (which also runs
 * at commit) has taken a token: a deferred constraint trigger of ours, on a table of ours. A
 * transaction that inserts a job and then a `commit_guard` row with `fail` runs the wake-up first
 * (its deferred trigger was queued by the earlier insert), then sleeps `wait_ms` still holding
 * what the wake-up locked, then raises: the commit fails and everything is rolled back.
 */
import type { TestDb } from "../helpers/db.ts";

export async function createCommitGuard(db: TestDb): Promise<void> {
  await db.query(
    "CREATE TABLE {{schema}}.commit_guard (fail boolean NOT NULL, wait_ms integer NOT NULL DEFAULT 0)",
  );
  await db.query(`CREATE FUNCTION {{schema}}.commit_guard_check() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_sleep(NEW.wait_ms / 1000.0);
      IF NEW.fail THEN RAISE EXCEPTION 'commit_guard: refused at commit'; END IF;
      RETURN NULL;
    END $$`);
  await db.query(`CREATE CONSTRAINT TRIGGER commit_guard_at_commit
    AFTER INSERT ON {{schema}}.commit_guard DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION {{schema}}.commit_guard_check()`);
}
