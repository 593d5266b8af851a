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

-- Wakes waiting workers of `queues`: up to counts[i] of them for queue i (all when NULL), each by
-- a notification `queue<TAB>worker_id` that only that worker acts on. A job due later wakes no one
-- but tells every waiting worker when (`queue<TAB>@delay_ms`), so it can set a timer.
-- The shared advisory lock pairs with the exclusive one a worker takes right after it puts its
-- token (see src/worker/wake.ts): either this transaction sees the token and notifies, or the
-- worker's registration waits for this transaction to end and its next claim sees the rows.
-- SKIP LOCKED: concurrent submitters wake different workers, and never queue behind each other.
CREATE FUNCTION {{schema}}.wake(queues text[], counts integer[] DEFAULT NULL, delays_ms bigint[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  i integer;
  q text;
  d bigint;
  woken text;
  -- A repeatable-read snapshot may predate a waiter's registration: tell everyone instead.
  stale_snapshot boolean := current_setting('transaction_isolation') <> 'read committed';
BEGIN
  FOR i IN 1 .. coalesce(array_length(queues, 1), 0) LOOP
    q := queues[i];
    d := coalesce(delays_ms[i], 0);
    PERFORM pg_advisory_xact_lock_shared(hashtext({{channel}}), hashtext(q));
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

CREATE FUNCTION {{schema}}.jobs_after_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  qs text[];
  ns integer[];
  ds bigint[];
BEGIN
  -- Once per statement: a 10,000-row insert wakes each waiting worker of its queue at most once.
  -- Sorted: wake() takes one advisory lock per queue, in the order workers take them too.
  SELECT array_agg(queue ORDER BY queue), array_agg(n ORDER BY queue), array_agg(delay_ms ORDER BY queue)
  INTO qs, ns, ds
  FROM (
    SELECT n.queue,
           count(*)::integer AS n,
           greatest(0, ceil(extract(epoch FROM min(n.run_at) - now()) * 1000))::bigint AS delay_ms
    FROM new_jobs n
    WHERE n.status IN ('pending', 'retrying')
    GROUP BY n.queue
  ) per_queue;
  IF qs IS NOT NULL THEN
    PERFORM {{schema}}.wake(qs, ns, ds);
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER jobs_after_insert
  AFTER INSERT ON {{schema}}.jobs
  REFERENCING NEW TABLE AS new_jobs
  FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.jobs_after_insert();

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
