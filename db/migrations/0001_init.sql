-- pgwake schema, version 1.
-- `{{schema}}` is replaced by the quoted schema name and `{{channel}}` by the quoted
-- NOTIFY channel literal before this file runs; nothing else is substituted.

CREATE TABLE {{schema}}.jobs (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  queue            text        NOT NULL DEFAULT 'default',
  task             text        NOT NULL,
  payload          jsonb       NOT NULL DEFAULT '{}'::jsonb,
  status           text        NOT NULL DEFAULT 'pending',
  priority         integer     NOT NULL DEFAULT 0,
  run_at           timestamptz NOT NULL DEFAULT now(),
  attempts         integer     NOT NULL DEFAULT 0,
  max_attempts     integer     NOT NULL DEFAULT 10,
  timeout_ms       integer,
  idempotency_key  text,
  request_id       text,
  lease_owner      text,
  lease_expires_at timestamptz,
  result           jsonb,
  last_error       jsonb,
  created_at       timestamptz NOT NULL DEFAULT now(),
  started_at       timestamptz,
  finished_at      timestamptz,
  updated_at       timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT jobs_status_check CHECK (status IN ('pending', 'running', 'retrying', 'completed', 'failed', 'cancelled')),
  CONSTRAINT jobs_queue_check CHECK (length(queue) BETWEEN 1 AND 128),
  CONSTRAINT jobs_task_check CHECK (length(task) BETWEEN 1 AND 128),
  CONSTRAINT jobs_priority_check CHECK (priority BETWEEN -1000 AND 1000),
  CONSTRAINT jobs_attempts_check CHECK (attempts >= 0 AND max_attempts BETWEEN 1 AND 1000),
  CONSTRAINT jobs_timeout_check CHECK (timeout_ms IS NULL OR timeout_ms > 0),
  CONSTRAINT jobs_idempotency_key_check CHECK (idempotency_key IS NULL OR length(idempotency_key) BETWEEN 1 AND 255),
  CONSTRAINT jobs_running_lease_check CHECK (status <> 'running' OR (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL))
);

-- The claim walks this index in claim order; it only holds claimable rows, so it stays small
-- however many finished jobs the table keeps.
CREATE INDEX jobs_claimable_idx ON {{schema}}.jobs (queue, priority, run_at, id)
  WHERE status IN ('pending', 'retrying');
CREATE UNIQUE INDEX jobs_idempotency_idx ON {{schema}}.jobs (queue, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_lease_idx ON {{schema}}.jobs (lease_expires_at)
  WHERE status = 'running';
CREATE INDEX jobs_finished_idx ON {{schema}}.jobs (finished_at)
  WHERE status IN ('completed', 'failed', 'cancelled');

-- Every job row is inserted, updated two or three times and deleted by retention: vacuum
-- early and without throttling so dead tuples do not pile up in the claim index.
ALTER TABLE {{schema}}.jobs SET (
  autovacuum_vacuum_scale_factor = 0.01,
  autovacuum_vacuum_threshold = 1000,
  autovacuum_vacuum_insert_scale_factor = 0.05,
  autovacuum_analyze_scale_factor = 0.02,
  autovacuum_vacuum_cost_delay = 0,
  fillfactor = 90
);

-- Steps that the job row cannot tell on its own: failed attempts, lease expiries, retries,
-- cancellations, handler log lines. The happy path (enqueued, claimed, completed) is derived
-- from the row, so a job that just works writes no event at all.
CREATE TABLE {{schema}}.job_events (
  id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job_id    bigint      NOT NULL,
  kind      text        NOT NULL,
  attempt   integer,
  worker_id text,
  message   text,
  data      jsonb,
  at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX job_events_job_idx ON {{schema}}.job_events (job_id, id);
ALTER TABLE {{schema}}.job_events SET (autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_cost_delay = 0);

CREATE TABLE {{schema}}.workers (
  id           text PRIMARY KEY,
  host         text        NOT NULL,
  pid          integer     NOT NULL,
  queues       text[]      NOT NULL,
  tasks        text[]      NOT NULL,
  concurrency  integer     NOT NULL,
  listening    boolean     NOT NULL DEFAULT false,
  started_at   timestamptz NOT NULL DEFAULT now(),
  last_seen_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {{schema}}.queues (
  name       text PRIMARY KEY,
  paused     boolean     NOT NULL DEFAULT false,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Workers that have caught up with a queue and sleep until told otherwise. A waiter row is a
-- one-shot wake-up token: the insert that finds it deletes it and notifies that worker, and the
-- inserts after it find no token and notify nobody until the worker has caught up again and put
-- its token back. So a stream of submissions costs one NOTIFY per worker wake-up, not one per
-- job, and a fleet busy draining a backlog (no tokens) costs submitters no NOTIFY at all.
-- Unlogged: after a crash it is empty and workers register again when they reconnect.
CREATE UNLOGGED TABLE {{schema}}.waiters (
  queue     text NOT NULL,
  worker_id text NOT NULL,
  since     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (queue, worker_id)
);

-- 1 while some waiter row may exist, 0 when none does. Read by the insert trigger's WHEN clause
-- without a query or a lock, so a submission while no worker waits costs one function call.
-- Sequences are not transactional: a worker raises it before its token is even committed, and
-- only the serialised reset below lowers it, after seeing that no token is left.
CREATE SEQUENCE {{schema}}.waiting MINVALUE 0 MAXVALUE 1 START 0;

-- Puts a worker's tokens for `queues`. The session that called it must then take a snapshot and
-- wait for the transactions it lists (src/worker/wake.ts): any submitter that decided "nobody
-- waits" before this commit was already running then.
CREATE FUNCTION {{schema}}.register_waiter(queues text[], worker text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext({{channel}}), hashtext('waiting'));
  PERFORM setval('{{schema}}.waiting', 1);
  INSERT INTO {{schema}}.waiters (queue, worker_id)
  SELECT DISTINCT q, worker FROM unnest(queues) AS q
  ON CONFLICT (queue, worker_id) DO NOTHING;
END
$$;

-- Lowers the flag when no token is left. Serialised with register_waiter by the advisory lock,
-- so a registration is never undone by a reset that could not yet see its token.
CREATE FUNCTION {{schema}}.reset_waiting(leaving text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext({{channel}}), hashtext('waiting'));
  IF leaving IS NOT NULL THEN
    DELETE FROM {{schema}}.waiters WHERE worker_id = leaving;
  END IF;
  PERFORM setval('{{schema}}.waiting', CASE WHEN EXISTS (SELECT 1 FROM {{schema}}.waiters) THEN 1 ELSE 0 END);
END
$$;

-- Wakes waiting workers of `queues`: up to counts[i] of them for queue i (all when NULL), each by
-- a notification `queue<TAB>worker_id` that only that worker acts on. A job due later wakes no one
-- but tells every waiting worker when (`queue<TAB>@delay_ms`), so it can set a timer.
-- SKIP LOCKED: concurrent submitters wake different workers and never queue behind each other.
CREATE FUNCTION {{schema}}.wake(queues text[], counts integer[] DEFAULT NULL, delays_ms bigint[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  i integer;
  q text;
  d bigint;
  woken text;
  -- A repeatable-read snapshot may predate a waiter's token: tell everyone instead.
  stale_snapshot boolean := current_setting('transaction_isolation') <> 'read committed';
BEGIN
  FOR i IN 1 .. coalesce(array_length(queues, 1), 0) LOOP
    q := queues[i];
    d := coalesce(delays_ms[i], 0);
    IF d > 0 THEN
      IF EXISTS (SELECT 1 FROM {{schema}}.waiters w WHERE w.queue = q) THEN
        PERFORM pg_notify({{channel}}, q || E'\t@' || d);
      END IF;
    ELSIF stale_snapshot THEN
      PERFORM pg_notify({{channel}}, q);
    ELSE
      FOR woken IN
        DELETE FROM {{schema}}.waiters w
        WHERE (w.queue, w.worker_id) IN (
          SELECT t.queue, t.worker_id FROM {{schema}}.waiters t
          WHERE t.queue = q
          ORDER BY t.since
          LIMIT counts[i]
          FOR UPDATE SKIP LOCKED)
        RETURNING w.worker_id
      LOOP
        PERFORM pg_notify({{channel}}, q || E'\t' || woken);
      END LOOP;
    END IF;
  END LOOP;
END
$$;

-- The wake-up itself happens at commit, not at insert: a transaction that enqueued and stays open
-- must not hold a worker's token (other submitters would skip it) nor decide from a check made
-- long before its rows become visible. So the insert trigger only notes, per statement, which
-- queues got rows (in a transaction-local setting), and the first such statement of a
-- transaction queues one deferred trigger that calls wake() just before the commit.
CREATE UNLOGGED TABLE {{schema}}.wake_requests (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY
);

CREATE FUNCTION {{schema}}.jobs_after_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  setting constant text := 'pgwake.wake_' || {{channel}};
  noted jsonb := coalesce(nullif(current_setting(setting, true), ''), '{}')::jsonb;
  first boolean := noted = '{}'::jsonb;
  per_queue record;
BEGIN
  -- The flag may still be up just after the last token was spent. With no token visible now
  -- there is nobody to wake: a worker that puts one later already has this transaction on the
  -- list it watches (it was running when the token became visible).
  IF NOT EXISTS (SELECT 1 FROM {{schema}}.waiters) THEN
    RETURN NULL;
  END IF;
  FOR per_queue IN
    SELECT n.queue, count(*)::integer AS n, extract(epoch FROM min(n.run_at)) * 1000 AS due_ms
    FROM new_jobs n
    WHERE n.status IN ('pending', 'retrying')
    GROUP BY n.queue
  LOOP
    -- queue → [rows, earliest run_at in epoch ms]
    noted := noted || jsonb_build_object(per_queue.queue, jsonb_build_array(
      coalesce((noted -> per_queue.queue ->> 0)::integer, 0) + per_queue.n,
      least(coalesce((noted -> per_queue.queue ->> 1)::numeric, per_queue.due_ms), per_queue.due_ms)));
  END LOOP;
  IF noted <> '{}'::jsonb THEN
    PERFORM set_config(setting, noted::text, true);
    IF first THEN
      INSERT INTO {{schema}}.wake_requests DEFAULT VALUES;
    END IF;
  END IF;
  RETURN NULL;
END
$$;

CREATE FUNCTION {{schema}}.wake_at_commit() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  setting constant text := 'pgwake.wake_' || {{channel}};
  noted text := current_setting(setting, true);
  qs text[];
  ns integer[];
  ds bigint[];
BEGIN
  PERFORM set_config(setting, '', true);
  DELETE FROM {{schema}}.wake_requests WHERE id = NEW.id;
  IF coalesce(noted, '') = '' THEN
    RETURN NULL;
  END IF;
  SELECT array_agg(key),
         array_agg((value ->> 0)::integer),
         array_agg(greatest(0, ceil((value ->> 1)::numeric - extract(epoch FROM clock_timestamp()) * 1000))::bigint)
  INTO qs, ns, ds
  FROM jsonb_each(noted::jsonb);
  PERFORM {{schema}}.wake(qs, ns, ds);
  RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER wake_at_commit
  AFTER INSERT ON {{schema}}.wake_requests
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION {{schema}}.wake_at_commit();

-- The WHEN clause is the fast path: while no worker waits (a busy fleet, or poll-only workers)
-- nothing above runs. A submission that skipped it just before a worker registered is covered by
-- the worker, which watches the transactions in progress at its registration (src/worker/wake.ts).
CREATE TRIGGER jobs_after_insert
  AFTER INSERT ON {{schema}}.jobs
  REFERENCING NEW TABLE AS new_jobs
  FOR EACH STATEMENT
  WHEN (pg_sequence_last_value('{{schema}}.waiting'::regclass) > 0)
  EXECUTE FUNCTION {{schema}}.jobs_after_insert();

-- Adds jobs with the library's semantics, from any language or from psql. `jobs` is a JSON
-- array of objects with keys task, payload, queue, priority, run_at, delay_ms, max_attempts,
-- timeout_ms, idempotency_key, request_id (all but task optional). `ord` is the 1-based input
-- position; a repeated idempotency key returns the existing job with duplicate = true.
CREATE FUNCTION {{schema}}.enqueue_many(jobs jsonb)
RETURNS TABLE (ord bigint, job {{schema}}.jobs, duplicate boolean)
LANGUAGE plpgsql AS $$
DECLARE
  seq regclass := pg_get_serial_sequence('{{schema}}.jobs', 'id')::regclass;
  total integer;
  ids bigint[];
  returned integer;
BEGIN
  IF jsonb_typeof(jobs) IS DISTINCT FROM 'array' THEN
    RAISE EXCEPTION 'pgwake: enqueue_many expects a JSON array of job objects' USING ERRCODE = '22023';
  END IF;
  total := jsonb_array_length(jobs);
  IF EXISTS (SELECT 1 FROM jsonb_array_elements(jobs) e WHERE jsonb_typeof(e) <> 'object' OR e->>'task' IS NULL) THEN
    RAISE EXCEPTION 'pgwake: every job needs a "task"' USING ERRCODE = '22023';
  END IF;

  -- Ids are taken up front so inserted rows map back to their input position, and so a
  -- skipped row (duplicate key) is told apart from one this call inserted.
  ids := ARRAY(SELECT nextval(seq) FROM generate_series(1, total));

  RETURN QUERY
  WITH ins AS (
    INSERT INTO {{schema}}.jobs AS t
      (id, task, payload, queue, priority, run_at, max_attempts, timeout_ms, idempotency_key, request_id)
    OVERRIDING SYSTEM VALUE
    SELECT ids[i.n],
           i.j->>'task',
           coalesce(i.j->'payload', '{}'::jsonb),
           coalesce(i.j->>'queue', 'default'),
           coalesce((i.j->>'priority')::integer, 0),
           coalesce((i.j->>'run_at')::timestamptz,
                    now() + coalesce((i.j->>'delay_ms')::bigint, 0) * interval '1 millisecond'),
           coalesce((i.j->>'max_attempts')::integer, 10),
           (i.j->>'timeout_ms')::integer,
           i.j->>'idempotency_key',
           i.j->>'request_id'
    FROM jsonb_array_elements(jobs) WITH ORDINALITY AS i(j, n)
    ORDER BY i.n
    ON CONFLICT (queue, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING t.*
  )
  SELECT u.n, ROW(ins.*)::{{schema}}.jobs, false
  FROM ins JOIN unnest(ids) WITH ORDINALITY AS u(id, n) ON u.id = ins.id;

  GET DIAGNOSTICS returned = ROW_COUNT;
  IF returned < total THEN
    -- A separate statement takes a fresh snapshot, so it sees the row of a concurrent
    -- submitter that our insert waited for.
    RETURN QUERY
    SELECT i.n, t, true
    FROM jsonb_array_elements(jobs) WITH ORDINALITY AS i(j, n)
    JOIN {{schema}}.jobs t
      ON t.queue = coalesce(i.j->>'queue', 'default') AND t.idempotency_key = i.j->>'idempotency_key'
    WHERE t.id <> ids[i.n];
  END IF;
END
$$;

CREATE FUNCTION {{schema}}.enqueue(
  task text,
  payload jsonb DEFAULT '{}'::jsonb,
  queue text DEFAULT NULL,
  priority integer DEFAULT NULL,
  run_at timestamptz DEFAULT NULL,
  max_attempts integer DEFAULT NULL,
  timeout_ms integer DEFAULT NULL,
  idempotency_key text DEFAULT NULL,
  delay_ms bigint DEFAULT NULL
) RETURNS TABLE (job {{schema}}.jobs, duplicate boolean)
LANGUAGE sql AS $$
  SELECT r.job, r.duplicate
  FROM {{schema}}.enqueue_many(jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
    'task', task, 'payload', payload, 'queue', queue, 'priority', priority, 'run_at', run_at,
    'max_attempts', max_attempts, 'timeout_ms', timeout_ms, 'idempotency_key', idempotency_key,
    'delay_ms', delay_ms)))) r
$$;
