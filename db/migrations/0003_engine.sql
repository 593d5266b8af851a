-- pgwake schema, version 3: the engine at scale (DESIGN.md, "Storage").
--
-- `jobs` keeps only live jobs (scheduled, pending, running, retrying). A finished job moves to
-- `job_history` in the statement that finishes it, and history is dropped a slot at a time with
-- TRUNCATE: no dead tuple of a finished job is left for vacuum to find, and pruning costs the
-- same at any rate. Claims walk an index of ready jobs per (queue, task) from a cursor the worker
-- keeps, so entries left behind by claimed jobs are never read again whether or not vacuum has
-- removed them (src/worker/claimScheduler.ts).
--
-- Upgrading from version 2: stop every worker first. Jobs running at the time of the migration
-- are reaped once their old worker's lease runs out, and run again.

-- ---- installation settings -----------------------------------------------------------------

-- One row. History is kept in 8 slots, a ring: slot = floor((t - epoch) / width) mod 8. The
-- maintenance leader sets the width from the retention it is given (width = retention / 5), so
-- the ring holds one retention period (5 slots) plus the slot being written and room to drop
-- the oldest late (rotate_history).
-- A width of NULL keeps history forever (everything in slot 0). When the width changes, rows
-- written under the old width sit in slots whose times no longer say how old they are: nothing
-- is dropped until one retention period after the change (history_protect_until).
CREATE TABLE {{schema}}.settings (
  singleton             boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  history_slot_ms       bigint CHECK (history_slot_ms IS NULL OR history_slot_ms >= 100),
  history_epoch         timestamptz NOT NULL DEFAULT now(),
  history_protect_until timestamptz NOT NULL DEFAULT '-infinity',
  updated_at            timestamptz NOT NULL DEFAULT now()
);
INSERT INTO {{schema}}.settings DEFAULT VALUES;

-- The history slot a row finished at `at` belongs to.
CREATE FUNCTION {{schema}}.history_slot(at timestamptz) RETURNS smallint
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN s.history_slot_ms IS NULL THEN 0::smallint
    ELSE ((floor((extract(epoch FROM at) - extract(epoch FROM s.history_epoch)) * 1000
                 / s.history_slot_ms)::bigint % 8 + 8) % 8)::smallint END
  FROM {{schema}}.settings s
$$;

-- ---- finished jobs ---------------------------------------------------------------------------

CREATE TABLE {{schema}}.job_history (
  id              bigint      NOT NULL,
  queue           text        NOT NULL,
  task            text        NOT NULL,
  payload         jsonb       NOT NULL,
  status          text        NOT NULL,
  priority        integer     NOT NULL,
  run_at          timestamptz NOT NULL,
  attempts        integer     NOT NULL,
  max_attempts    integer     NOT NULL,
  timeout_ms      integer,
  idempotency_key text,
  request_id      text,
  lease_owner     text,
  result          jsonb,
  last_error      jsonb,
  created_at      timestamptz NOT NULL,
  started_at      timestamptz,
  finished_at     timestamptz NOT NULL,
  updated_at      timestamptz NOT NULL,
  slot            smallint    NOT NULL,
  CONSTRAINT job_history_status_check CHECK (status IN ('completed', 'failed', 'cancelled'))
) PARTITION BY LIST (slot);
CREATE TABLE {{schema}}.job_history_0 PARTITION OF {{schema}}.job_history FOR VALUES IN (0);
CREATE TABLE {{schema}}.job_history_1 PARTITION OF {{schema}}.job_history FOR VALUES IN (1);
CREATE TABLE {{schema}}.job_history_2 PARTITION OF {{schema}}.job_history FOR VALUES IN (2);
CREATE TABLE {{schema}}.job_history_3 PARTITION OF {{schema}}.job_history FOR VALUES IN (3);
CREATE TABLE {{schema}}.job_history_4 PARTITION OF {{schema}}.job_history FOR VALUES IN (4);
CREATE TABLE {{schema}}.job_history_5 PARTITION OF {{schema}}.job_history FOR VALUES IN (5);
CREATE TABLE {{schema}}.job_history_6 PARTITION OF {{schema}}.job_history FOR VALUES IN (6);
CREATE TABLE {{schema}}.job_history_7 PARTITION OF {{schema}}.job_history FOR VALUES IN (7);
-- A job by id (the API, duplicates of an idempotency key) and the dead-letter set by queue.
CREATE INDEX job_history_id_idx ON {{schema}}.job_history (id);
CREATE INDEX job_history_dead_idx ON {{schema}}.job_history (queue, id) WHERE status <> 'completed';
-- The same by status: failed and cancelled jobs counted per queue without reading the other's.
CREATE INDEX job_history_dead_status_idx ON {{schema}}.job_history (queue, status, id)
  WHERE status <> 'completed';

INSERT INTO {{schema}}.job_history
  (id, queue, task, payload, status, priority, run_at, attempts, max_attempts, timeout_ms,
   idempotency_key, request_id, lease_owner, result, last_error, created_at, started_at,
   finished_at, updated_at, slot)
SELECT id, queue, task, payload, status, priority, run_at, attempts, max_attempts, timeout_ms,
       idempotency_key, request_id, lease_owner, result, last_error, created_at, started_at,
       coalesce(finished_at, updated_at), updated_at, 0
FROM {{schema}}.jobs
WHERE status IN ('completed', 'failed', 'cancelled');

-- ---- idempotency keys ------------------------------------------------------------------------

-- A key is reserved in its queue while its job lives and for the retention period after the job
-- was submitted. Apart from `jobs` so that finishing a job (a move to history) keeps the key.
CREATE TABLE {{schema}}.job_keys (
  queue      text        NOT NULL,
  key        text        NOT NULL,
  job_id     bigint      NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (queue, key)
);
CREATE INDEX job_keys_created_idx ON {{schema}}.job_keys (created_at);
INSERT INTO {{schema}}.job_keys (queue, key, job_id, created_at)
SELECT queue, idempotency_key, id, created_at FROM {{schema}}.jobs WHERE idempotency_key IS NOT NULL;

-- ---- live jobs -------------------------------------------------------------------------------

DELETE FROM {{schema}}.jobs WHERE status IN ('completed', 'failed', 'cancelled');
DROP INDEX {{schema}}.jobs_claimable_idx;
DROP INDEX {{schema}}.jobs_lease_idx;
DROP INDEX {{schema}}.jobs_finished_idx;
DROP INDEX {{schema}}.jobs_idempotency_idx;
DROP INDEX {{schema}}.jobs_dead_idx;
ALTER TABLE {{schema}}.jobs
  DROP CONSTRAINT jobs_status_check,
  DROP CONSTRAINT jobs_running_lease_check,
  ADD COLUMN ready_seq bigint;

-- Due jobs are pending (ready); jobs due later are scheduled (new) or retrying (after a failure).
UPDATE {{schema}}.jobs
SET status = CASE WHEN run_at <= now() THEN 'pending'
                  WHEN status = 'pending' THEN 'scheduled' ELSE 'retrying' END
WHERE status IN ('pending', 'retrying');
UPDATE {{schema}}.jobs j SET ready_seq = o.seq
FROM (SELECT id, nextval('{{schema}}.jobs_id_seq'::regclass) AS seq
      FROM (SELECT id FROM {{schema}}.jobs WHERE status = 'pending' ORDER BY priority, run_at, id) x) o
WHERE j.id = o.id;
UPDATE {{schema}}.jobs SET ready_seq = id WHERE ready_seq IS NULL;

ALTER TABLE {{schema}}.jobs
  DROP COLUMN lease_expires_at,
  DROP COLUMN result,
  DROP COLUMN finished_at,
  ALTER COLUMN ready_seq SET NOT NULL,
  ADD CONSTRAINT jobs_status_check CHECK (status IN ('scheduled', 'pending', 'running', 'retrying')),
  ADD CONSTRAINT jobs_running_check CHECK (status <> 'running' OR lease_owner IS NOT NULL);

-- Ready jobs in claim order, one run per (queue, task): a worker reads only the tasks it runs.
-- `ready_seq` is the order in which jobs became ready (a job's id when it is ready on insert, a
-- fresh value from the id sequence when it is promoted later): within a priority, first ready,
-- first claimed. Claimed jobs leave this index; their dead entries stay behind the cursors.
CREATE INDEX jobs_ready_idx ON {{schema}}.jobs (queue, task, priority, ready_seq)
  WHERE status = 'pending';
-- Jobs due later, in the order they become due: promoted to pending by the claims of their queue.
CREATE INDEX jobs_due_idx ON {{schema}}.jobs (queue, run_at, id)
  WHERE status IN ('scheduled', 'retrying');

ALTER TABLE {{schema}}.jobs SET (fillfactor = 85);

-- ---- events ----------------------------------------------------------------------------------

-- In the same ring of slots as history, by the time of the event: retention drops old events by
-- TRUNCATE too. A job that lives longer than the retention period loses its oldest events.
ALTER TABLE {{schema}}.job_events RENAME TO job_events_v2;
ALTER INDEX {{schema}}.job_events_job_idx RENAME TO job_events_v2_job_idx;
CREATE SEQUENCE {{schema}}.job_event_ids;
SELECT setval('{{schema}}.job_event_ids', coalesce((SELECT max(id) FROM {{schema}}.job_events_v2), 0) + 1, false);
CREATE TABLE {{schema}}.job_events (
  id        bigint      NOT NULL DEFAULT nextval('{{schema}}.job_event_ids'),
  job_id    bigint      NOT NULL,
  kind      text        NOT NULL,
  attempt   integer,
  worker_id text,
  message   text,
  data      jsonb,
  at        timestamptz NOT NULL DEFAULT now(),
  slot      smallint    NOT NULL DEFAULT {{schema}}.history_slot(now())
) PARTITION BY LIST (slot);
CREATE TABLE {{schema}}.job_events_0 PARTITION OF {{schema}}.job_events FOR VALUES IN (0);
CREATE TABLE {{schema}}.job_events_1 PARTITION OF {{schema}}.job_events FOR VALUES IN (1);
CREATE TABLE {{schema}}.job_events_2 PARTITION OF {{schema}}.job_events FOR VALUES IN (2);
CREATE TABLE {{schema}}.job_events_3 PARTITION OF {{schema}}.job_events FOR VALUES IN (3);
CREATE TABLE {{schema}}.job_events_4 PARTITION OF {{schema}}.job_events FOR VALUES IN (4);
CREATE TABLE {{schema}}.job_events_5 PARTITION OF {{schema}}.job_events FOR VALUES IN (5);
CREATE TABLE {{schema}}.job_events_6 PARTITION OF {{schema}}.job_events FOR VALUES IN (6);
CREATE TABLE {{schema}}.job_events_7 PARTITION OF {{schema}}.job_events FOR VALUES IN (7);
CREATE INDEX job_events_job_idx ON {{schema}}.job_events (job_id, id);
INSERT INTO {{schema}}.job_events (id, job_id, kind, attempt, worker_id, message, data, at, slot)
SELECT id, job_id, kind, attempt, worker_id, message, data, at, 0 FROM {{schema}}.job_events_v2;
DROP TABLE {{schema}}.job_events_v2;

-- ---- workers and queues ----------------------------------------------------------------------

-- A worker's lease covers every job it holds: the heartbeat extends one row, and the reaper
-- takes back the jobs of a worker whose lease ran out (marks it reaped, then moves its jobs).
-- A claim holds FOR SHARE on its worker's row, so a worker cannot be reaped while it claims
-- (version 5: FOR KEY SHARE, against the reaper's FOR UPDATE, so heartbeats do not wait).
ALTER TABLE {{schema}}.workers
  ADD COLUMN lease_expires_at timestamptz NOT NULL DEFAULT now(),
  ADD COLUMN reaped_at timestamptz,
  ADD COLUMN listener_pid integer,
  ADD COLUMN running integer NOT NULL DEFAULT 0,
  ADD COLUMN running_by_queue jsonb NOT NULL DEFAULT '{}'::jsonb;
UPDATE {{schema}}.workers SET lease_expires_at = now() + interval '30 seconds';

-- Every queue that ever had a job, for workers that serve all queues (submissions register the
-- queues they use; ON CONFLICT DO NOTHING on an existing row writes and locks nothing).
INSERT INTO {{schema}}.queues (name) SELECT DISTINCT queue FROM {{schema}}.jobs
ON CONFLICT (name) DO NOTHING;
INSERT INTO {{schema}}.queues (name) SELECT DISTINCT queue FROM {{schema}}.job_history
ON CONFLICT (name) DO NOTHING;

-- Every job, live or finished, with the columns of the history table.
CREATE VIEW {{schema}}.all_jobs AS
  SELECT j.id, j.queue, j.task, j.payload, j.status, j.priority, j.run_at, j.attempts,
         j.max_attempts, j.timeout_ms, j.idempotency_key, j.request_id, j.lease_owner,
         NULL::jsonb AS result, j.last_error, j.created_at, j.started_at,
         NULL::timestamptz AS finished_at, j.updated_at
  FROM {{schema}}.jobs j
  UNION ALL
  SELECT h.id, h.queue, h.task, h.payload, h.status, h.priority, h.run_at, h.attempts,
         h.max_attempts, h.timeout_ms, h.idempotency_key, h.request_id, h.lease_owner,
         h.result, h.last_error, h.created_at, h.started_at, h.finished_at, h.updated_at
  FROM {{schema}}.job_history h;

-- ---- submission ------------------------------------------------------------------------------

-- What a submission does, declared once: the library calls it, and so does the SQL API below.
-- `jobs` is a JSON array of objects with keys task, payload, queue, priority, run_at, delay_ms,
-- max_attempts, timeout_ms, idempotency_key, request_id (all but task optional). Returns the
-- rows it inserted. Ids are drawn in input order, so the inserted rows in id order follow the
-- input; an item whose key is already reserved in its queue (earlier, by a concurrent submitter,
-- or by an earlier item of the same call) inserts nothing.
-- A job due now is pending with ready_seq = its id; one due later is scheduled.
CREATE FUNCTION {{schema}}.insert_jobs(jobs jsonb) RETURNS SETOF {{schema}}.jobs
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY
  WITH input AS MATERIALIZED (
    SELECT r.task, coalesce(r.payload, '{}'::jsonb) AS payload,
           coalesce(r.queue, 'default') AS queue, coalesce(r.priority, 0) AS priority,
           coalesce(r.run_at, now() + coalesce(r.delay_ms, 0) * interval '1 millisecond') AS run_at,
           coalesce(r.max_attempts, 10) AS max_attempts, r.timeout_ms, r.idempotency_key,
           r.request_id, nextval('{{schema}}.jobs_id_seq'::regclass) AS id
    FROM ROWS FROM (jsonb_to_recordset(jobs) AS (
           task text, payload jsonb, queue text, priority integer, run_at timestamptz,
           delay_ms bigint, max_attempts integer, timeout_ms integer, idempotency_key text,
           request_id text)) WITH ORDINALITY AS r(task, payload, queue, priority, run_at, delay_ms,
           max_attempts, timeout_ms, idempotency_key, request_id, n)
    ORDER BY r.n
  ), reserved AS (
    -- Keys in (queue, key) order: concurrent submissions of the same keys wait, never deadlock.
    INSERT INTO {{schema}}.job_keys AS k (queue, key, job_id)
    SELECT i.queue, i.idempotency_key, i.id FROM input i
    WHERE i.idempotency_key IS NOT NULL
    ORDER BY i.queue, i.idempotency_key, i.id
    ON CONFLICT (queue, key) DO NOTHING
    RETURNING k.job_id
  ), registered AS (
    INSERT INTO {{schema}}.queues (name) SELECT DISTINCT i.queue FROM input i
    ON CONFLICT (name) DO NOTHING
  )
  INSERT INTO {{schema}}.jobs AS t
    (id, task, payload, queue, priority, run_at, status, ready_seq, max_attempts, timeout_ms,
     idempotency_key, request_id)
  OVERRIDING SYSTEM VALUE
  SELECT i.id, i.task, i.payload, i.queue, i.priority, i.run_at,
         CASE WHEN i.run_at <= now() THEN 'pending' ELSE 'scheduled' END, i.id,
         i.max_attempts, i.timeout_ms, i.idempotency_key, i.request_id
  FROM input i
  WHERE i.idempotency_key IS NULL OR i.id IN (SELECT r.job_id FROM reserved r)
  ORDER BY i.id
  RETURNING t.*;
END
$$;

-- A live job in the shape of `all_jobs`.
CREATE FUNCTION {{schema}}.as_job_record(j {{schema}}.jobs) RETURNS {{schema}}.all_jobs
LANGUAGE sql IMMUTABLE AS $$
  SELECT ROW(j.id, j.queue, j.task, j.payload, j.status, j.priority, j.run_at, j.attempts,
             j.max_attempts, j.timeout_ms, j.idempotency_key, j.request_id, j.lease_owner,
             NULL::jsonb, j.last_error, j.created_at, j.started_at, NULL::timestamptz,
             j.updated_at)::{{schema}}.all_jobs
$$;

-- The SQL API: the library's semantics from any language or psql. `ord` is the 1-based input
-- position; a key already reserved returns that job with duplicate = true.
DROP FUNCTION {{schema}}.enqueue(text, jsonb, text, integer, timestamptz, integer, integer, text, bigint);
DROP FUNCTION {{schema}}.enqueue_many(jsonb);
CREATE FUNCTION {{schema}}.enqueue_many(jobs jsonb)
RETURNS TABLE (ord bigint, job {{schema}}.all_jobs, duplicate boolean)
LANGUAGE plpgsql AS $$
DECLARE
  total integer;
  added integer;
BEGIN
  IF jsonb_typeof(jobs) IS DISTINCT FROM 'array' THEN
    RAISE EXCEPTION 'pgwake: enqueue_many expects a JSON array of job objects' USING ERRCODE = '22023';
  END IF;
  IF EXISTS (SELECT 1 FROM jsonb_array_elements(jobs) e WHERE jsonb_typeof(e) <> 'object' OR e->>'task' IS NULL) THEN
    RAISE EXCEPTION 'pgwake: every job needs a "task"' USING ERRCODE = '22023';
  END IF;
  total := jsonb_array_length(jobs);

  RETURN QUERY
  WITH ins AS (SELECT j FROM {{schema}}.insert_jobs(jobs) AS j),
  inp AS (
    SELECT i.n, coalesce(i.queue, 'default') AS queue, i.idempotency_key AS key
    FROM ROWS FROM (jsonb_to_recordset(jobs) AS (queue text, idempotency_key text))
      WITH ORDINALITY AS i(queue, idempotency_key, n)
  ), keyless_in AS (
    SELECT inp.n, row_number() OVER (ORDER BY inp.n) AS rn FROM inp WHERE inp.key IS NULL
  ), keyless_out AS (
    SELECT ins.j AS job, row_number() OVER (ORDER BY (ins.j).id) AS rn FROM ins
    WHERE (ins.j).idempotency_key IS NULL
  ), first_keyed AS (
    SELECT DISTINCT ON (inp.queue, inp.key) inp.n, inp.queue, inp.key FROM inp
    WHERE inp.key IS NOT NULL ORDER BY inp.queue, inp.key, inp.n
  )
  SELECT ki.n, {{schema}}.as_job_record(ko.job), false
  FROM keyless_in ki JOIN keyless_out ko ON ko.rn = ki.rn
  UNION ALL
  SELECT f.n, {{schema}}.as_job_record(ins.j), false
  FROM first_keyed f JOIN ins ON (ins.j).queue = f.queue AND (ins.j).idempotency_key = f.key;

  GET DIAGNOSTICS added = ROW_COUNT;
  IF added < total THEN
    -- A separate statement takes a fresh snapshot: it sees the key of a concurrent submitter
    -- whose commit our insert waited for. Items answered above are the first item of each key
    -- whose job this transaction inserted.
    RETURN QUERY
    SELECT i.n, a, true
    FROM ROWS FROM (jsonb_to_recordset(jobs) AS (queue text, idempotency_key text))
           WITH ORDINALITY AS i(queue, idempotency_key, n)
    JOIN {{schema}}.job_keys k
      ON k.queue = coalesce(i.queue, 'default') AND k.key = i.idempotency_key
    JOIN {{schema}}.all_jobs a ON a.id = k.job_id
    WHERE NOT (
      i.n = (SELECT min(i2.n) FROM ROWS FROM (jsonb_to_recordset(jobs) AS (queue text, idempotency_key text))
                WITH ORDINALITY AS i2(queue, idempotency_key, n)
             WHERE coalesce(i2.queue, 'default') = k.queue AND i2.idempotency_key = k.key)
      AND EXISTS (SELECT 1 FROM {{schema}}.jobs j WHERE j.id = k.job_id AND j.xmin = pg_current_xact_id()::xid));
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
) RETURNS TABLE (job {{schema}}.all_jobs, duplicate boolean)
LANGUAGE sql AS $$
  SELECT r.job, r.duplicate
  FROM {{schema}}.enqueue_many(jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
    'task', task, 'payload', payload, 'queue', queue, 'priority', priority, 'run_at', run_at,
    'max_attempts', max_attempts, 'timeout_ms', timeout_ms, 'idempotency_key', idempotency_key,
    'delay_ms', delay_ms)))) r
$$;

-- ---- wake-up (the worker's side: src/worker/wakeup.ts, where the protocol is explained) -------

-- A waiter row is a one-shot wake-up token of one worker for one queue ('*': every queue but the
-- `excluded` ones, which it holds tokens of its own for) and the tasks it runs (NULL: every task). The listener's backend pid tells a dead worker's token
-- apart from a live one. The `waiting` flag (a sequence: read without a lock, not
-- transactional) is 1 while a token may exist.
ALTER TABLE {{schema}}.waiters
  ADD COLUMN tasks text[],
  ADD COLUMN listener_pid integer,
  ADD COLUMN excluded text[];
DROP FUNCTION {{schema}}.register_waiter(text[], text);
DROP FUNCTION {{schema}}.reset_waiting(text);
DROP TRIGGER jobs_after_insert ON {{schema}}.jobs;
DROP FUNCTION {{schema}}.jobs_after_insert();
DROP TRIGGER wake_at_commit ON {{schema}}.wake_requests;
DROP FUNCTION {{schema}}.wake_at_commit();
DROP FUNCTION {{schema}}.wake(text[], integer[], bigint[]);

-- After a worker's tokens are committed: raises the flag, then lists the transactions of this
-- database that hold an xid. Any submitter that read the flag down did so before it went up, so
-- it is committed (the worker's next claim sees its jobs) or listed here (the worker claims
-- again when it ends). No lock: a worker frozen here stalls nobody.
CREATE FUNCTION {{schema}}.raise_waiting() RETURNS text[]
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM setval('{{schema}}.waiting', 1);
  RETURN ARRAY(
    SELECT a.backend_xid::text FROM pg_stat_activity a
    WHERE a.datname = current_database() AND a.backend_xid IS NOT NULL AND a.pid <> pg_backend_pid());
END
$$;

-- Which of `xids` are still in progress.
CREATE FUNCTION {{schema}}.still_running(xids text[]) RETURNS text[]
LANGUAGE sql STABLE AS $$
  SELECT ARRAY(
    SELECT a.backend_xid::text FROM pg_stat_activity a
    WHERE a.backend_xid IS NOT NULL AND a.backend_xid::text = ANY (xids))
$$;

-- Lowers the flag when no token is left. A token committed after the second look raises the flag
-- itself (raise_waiting runs after its commit), so a registration is never undone.
CREATE FUNCTION {{schema}}.lower_waiting() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM {{schema}}.waiters) THEN
    PERFORM setval('{{schema}}.waiting', 0);
    IF EXISTS (SELECT 1 FROM {{schema}}.waiters) THEN
      PERFORM setval('{{schema}}.waiting', 1);
    END IF;
  END IF;
END
$$;

-- Wakes waiting workers for what a transaction did, at its commit. `notes` maps a queue to
-- {"t": ready tasks, "n": how many ready jobs, "at": earliest epoch ms of jobs due later,
--  "sweep": true when jobs became ready behind the workers' cursors}.
-- Ready jobs spend up to n tokens of live workers whose tasks match, each woken by a
-- notification only it acts on. Tokens are taken in one global order and waited for, not
-- skipped: a submitter that spent a token and then rolled back leaves it to the next one.
-- Jobs due later spend nothing: the waiting workers of the queue are told when, and set a timer.
CREATE FUNCTION {{schema}}.wake(notes jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  q text;
  note jsonb;
  ready_tasks text[];
  woken record;
  -- A repeatable-read snapshot may predate a token: tell every waiting worker instead.
  stale_snapshot boolean := current_setting('transaction_isolation') <> 'read committed';
BEGIN
  -- Tokens of workers whose listener is gone wake nobody.
  DELETE FROM {{schema}}.waiters w
  WHERE w.listener_pid IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM pg_stat_get_activity(w.listener_pid));
  FOR q, note IN SELECT key, value FROM jsonb_each(notes) LOOP
    ready_tasks := ARRAY(SELECT jsonb_array_elements_text(coalesce(note -> 't', '[]'::jsonb)));
    IF (note ->> 'at') IS NOT NULL AND EXISTS (
         SELECT 1 FROM {{schema}}.waiters w
         WHERE w.queue = q OR (w.queue = '*' AND NOT q = ANY (coalesce(w.excluded, '{}')))) THEN
      PERFORM pg_notify({{channel}}, jsonb_build_object('q', q, 'at', (note ->> 'at')::bigint)::text);
    END IF;
    CONTINUE WHEN coalesce((note ->> 'n')::integer, 0) = 0 AND NOT coalesce((note ->> 'sweep')::boolean, false);
    IF stale_snapshot THEN
      PERFORM pg_notify({{channel}}, jsonb_build_object('q', q, 'sweep', true)::text);
      CONTINUE;
    END IF;
    FOR woken IN
      DELETE FROM {{schema}}.waiters w
      WHERE (w.queue, w.worker_id) IN (
        SELECT t.queue, t.worker_id FROM {{schema}}.waiters t
        WHERE (t.queue = q OR (t.queue = '*' AND NOT q = ANY (coalesce(t.excluded, '{}'))))
          AND (t.tasks IS NULL OR cardinality(ready_tasks) = 0 OR t.tasks && ready_tasks)
        ORDER BY t.since, t.queue, t.worker_id
        LIMIT CASE WHEN coalesce((note ->> 'sweep')::boolean, false) THEN NULL
                   ELSE (note ->> 'n')::integer END
        FOR UPDATE)
      RETURNING w.worker_id, w.queue
    LOOP
      PERFORM pg_notify({{channel}}, jsonb_build_object(
        'q', q, 'w', woken.worker_id, 'k', woken.queue, 't', note -> 't',
        'sweep', coalesce((note ->> 'sweep')::boolean, false))::text);
    END LOOP;
  END LOOP;
END
$$;

-- Wakes workers for jobs made ready other than by an insert (retried, reaped, returned, resumed):
-- they may sit behind the workers' cursors, so the woken workers sweep.
CREATE FUNCTION {{schema}}.wake_queues(queues text[]) RETURNS void
LANGUAGE sql AS $$
  SELECT {{schema}}.wake(coalesce(jsonb_object_agg(q, jsonb_build_object('sweep', true)), '{}'::jsonb))
  FROM (SELECT DISTINCT unnest(queues) AS q) x
  WHERE pg_sequence_last_value('{{schema}}.waiting'::regclass) > 0
$$;

-- The insert trigger only notes, per statement, what the transaction made ready (in a
-- transaction-local setting); the first noting statement queues one deferred trigger that calls
-- wake() at commit. A transaction that stays open holds no token.
CREATE FUNCTION {{schema}}.note_inserted_jobs() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  setting constant text := 'pgwake.wake_' || {{channel}};
  noted jsonb := coalesce(nullif(current_setting(setting, true), ''), '{}')::jsonb;
  first boolean := noted = '{}'::jsonb;
  per_queue record;
  prev jsonb;
BEGIN
  -- With no token visible there is nobody to wake: a worker that puts one later lists this
  -- transaction among those it watches.
  IF NOT EXISTS (SELECT 1 FROM {{schema}}.waiters) THEN
    RETURN NULL;
  END IF;
  FOR per_queue IN
    SELECT n.queue,
           count(*) FILTER (WHERE n.status = 'pending')::integer AS ready,
           coalesce(jsonb_agg(DISTINCT n.task) FILTER (WHERE n.status = 'pending'), '[]'::jsonb) AS tasks,
           (extract(epoch FROM min(n.run_at) FILTER (WHERE n.status <> 'pending')) * 1000)::bigint AS due_ms
    FROM new_jobs n
    GROUP BY n.queue
  LOOP
    prev := coalesce(noted -> per_queue.queue, '{}'::jsonb);
    noted := noted || jsonb_build_object(per_queue.queue, jsonb_strip_nulls(jsonb_build_object(
      'n', coalesce((prev ->> 'n')::integer, 0) + per_queue.ready,
      't', (SELECT coalesce(jsonb_agg(DISTINCT x), '[]'::jsonb)
            FROM jsonb_array_elements(coalesce(prev -> 't', '[]'::jsonb) || per_queue.tasks) x),
      'at', least((prev ->> 'at')::bigint, per_queue.due_ms))));
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
BEGIN
  PERFORM set_config(setting, '', true);
  DELETE FROM {{schema}}.wake_requests WHERE id = NEW.id;
  IF coalesce(noted, '') <> '' THEN
    PERFORM {{schema}}.wake(noted::jsonb);
  END IF;
  RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER wake_at_commit
  AFTER INSERT ON {{schema}}.wake_requests
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION {{schema}}.wake_at_commit();

-- While no worker waits (a busy fleet, or poll-only workers) the WHEN clause keeps the trigger
-- body from running: a submission pays one sequence read.
CREATE TRIGGER jobs_after_insert
  AFTER INSERT ON {{schema}}.jobs
  REFERENCING NEW TABLE AS new_jobs
  FOR EACH STATEMENT
  WHEN (pg_sequence_last_value('{{schema}}.waiting'::regclass) > 0)
  EXECUTE FUNCTION {{schema}}.note_inserted_jobs();

-- ---- what autoscalers and dashboards read ----------------------------------------------------

-- Jobs ready to run now in `queues` (every queue when NULL), what autoscalers scale on: pending,
-- plus jobs due but not yet promoted, in queues that are not paused; with `include_running`, also
-- the jobs the workers hold (a worker on a long job is not idle) and the dead workers waiting to
-- be reaped. Bounded index reads, never a scan of the table: capped at 100,000 per kind.
CREATE FUNCTION {{schema}}.queue_depth(queues text[] DEFAULT NULL, include_running boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql STABLE
SET enable_seqscan = off
AS $$
DECLARE
  ready bigint;
  due bigint;
  held bigint := 0;
BEGIN
  IF queues IS NULL THEN
    SELECT count(*) INTO ready FROM (
      SELECT 1 FROM {{schema}}.jobs j
      WHERE j.status = 'pending'
        AND j.queue NOT IN (SELECT q.name FROM {{schema}}.queues q WHERE q.paused)
      LIMIT 100000) a;
    SELECT count(*) INTO due FROM (
      SELECT 1 FROM {{schema}}.jobs j
      WHERE j.status IN ('scheduled', 'retrying') AND j.run_at <= now()
        AND j.queue NOT IN (SELECT q.name FROM {{schema}}.queues q WHERE q.paused)
      LIMIT 100000) b;
  ELSE
    SELECT count(*) INTO ready FROM (
      SELECT 1 FROM {{schema}}.jobs j
      WHERE j.queue = ANY (queues) AND j.status = 'pending'
        AND j.queue NOT IN (SELECT q.name FROM {{schema}}.queues q WHERE q.paused)
      LIMIT 100000) a;
    SELECT count(*) INTO due FROM (
      SELECT 1 FROM {{schema}}.jobs j
      WHERE j.queue = ANY (queues) AND j.status IN ('scheduled', 'retrying') AND j.run_at <= now()
        AND j.queue NOT IN (SELECT q.name FROM {{schema}}.queues q WHERE q.paused)
      LIMIT 100000) b;
  END IF;
  IF include_running THEN
    -- As the workers reported with their last heartbeat. A worker whose lease ran out still
    -- counts (at least 1) until the reaper has moved its jobs back: someone must be running to
    -- reap them, or an autoscaler at zero would leave them running for ever.
    SELECT coalesce(sum(CASE WHEN w.reaped_at IS NULL AND w.lease_expires_at > now() THEN n.held
                             ELSE greatest(n.held, 1) END), 0) INTO held
    FROM {{schema}}.workers w
    CROSS JOIN LATERAL (
      SELECT coalesce(sum(r.value::bigint), 0) AS held
      FROM jsonb_each_text(w.running_by_queue) r
      WHERE queue_depth.queues IS NULL OR r.key = ANY (queue_depth.queues)) n
    WHERE n.held > 0
       OR ((w.reaped_at IS NOT NULL OR w.lease_expires_at <= now())
           AND (queue_depth.queues IS NULL OR w.queues && queue_depth.queues
                OR '*' = ANY (w.queues)));
  END IF;
  RETURN ready + due + held;
END
$$;

-- ---- retention -------------------------------------------------------------------------------

-- Per slot, the generation last emptied, so an empty slot is not truncated again.
ALTER TABLE {{schema}}.settings
  ADD COLUMN history_cleared bigint[] NOT NULL DEFAULT '{-1,-1,-1,-1,-1,-1,-1,-1}';

-- Drops history and events older than `retention_ms` a slot at a time (NULL keeps everything).
-- Sets the slot width from the retention first (width = retention / 5: a slot is dropped one
-- generation before the ring comes back to it). TRUNCATE takes its lock within 100 ms or the
-- slot waits for the next call; nothing here waits for vacuum or for old snapshots.
-- Returns the number of slots emptied and the slot width in force.
CREATE FUNCTION {{schema}}.rotate_history(retention_ms bigint, OUT emptied integer, OUT slot_ms bigint)
LANGUAGE plpgsql AS $$
DECLARE
  s {{schema}}.settings;
  width bigint := CASE WHEN retention_ms IS NULL THEN NULL ELSE greatest(100, retention_ms / 5) END;
  cutoff timestamptz := now() - coalesce(retention_ms, 0) * interval '1 millisecond';
  g_now bigint;
  g bigint;
  slot integer;
BEGIN
  emptied := 0;
  slot_ms := width;
  SELECT * INTO s FROM {{schema}}.settings;
  IF s.history_slot_ms IS DISTINCT FROM width THEN
    UPDATE {{schema}}.settings
    SET history_slot_ms = width, history_epoch = now(),
        history_protect_until = now() + coalesce(retention_ms, 0) * interval '1 millisecond',
        history_cleared = '{-1,-1,-1,-1,-1,-1,-1,-1}', updated_at = now();
    RETURN;
  END IF;
  IF width IS NULL OR now() < s.history_protect_until THEN
    RETURN;
  END IF;
  g_now := floor((extract(epoch FROM now()) - extract(epoch FROM s.history_epoch)) * 1000 / width)::bigint;
  FOR k IN 1..7 LOOP
    g := g_now - 8 + k;  -- the latest generation written to the slot k generations ahead
    slot := ((g % 8 + 8) % 8)::integer;
    CONTINUE WHEN s.history_cleared[slot + 1] >= g;
    CONTINUE WHEN s.history_epoch + (g + 1) * width * interval '1 millisecond' >= cutoff;
    BEGIN
      PERFORM set_config('lock_timeout', '100ms', true);
      EXECUTE format('TRUNCATE {{schema}}.%I, {{schema}}.%I', 'job_history_' || slot, 'job_events_' || slot);
      UPDATE {{schema}}.settings SET history_cleared[slot + 1] = g;
      emptied := emptied + 1;
    EXCEPTION WHEN lock_not_available THEN
      NULL; -- somebody is reading that slot: next time
    END;
  END LOOP;
  PERFORM set_config('lock_timeout', '0', true);
END
$$;

-- ---- counts that do not scan -------------------------------------------------------------------

-- Per queue and minute, what finished and how long it took, written where it happens: workers add
-- their outcomes every few seconds, cancellations and the reaper in their own statements.
-- Dashboards and `GET /queues` read these rows instead of counting history.
CREATE TABLE {{schema}}.queue_minutes (
  queue     text        NOT NULL,
  minute    timestamptz NOT NULL,
  completed bigint      NOT NULL DEFAULT 0,
  failed    bigint      NOT NULL DEFAULT 0,
  cancelled bigint      NOT NULL DEFAULT 0,
  -- failed attempts that will run again, and jobs taken back from lost workers
  retried   bigint      NOT NULL DEFAULT 0,
  -- handler time of completed and failed attempts, and time from due to claim, in ms
  run_ms    bigint      NOT NULL DEFAULT 0,
  wait_ms   bigint      NOT NULL DEFAULT 0,
  PRIMARY KEY (queue, minute)
);

-- Adds to one minute's counts (upsert; rows of one queue and minute are written by every
-- process, each holding the row only for its own short statement).
CREATE FUNCTION {{schema}}.count_minute(
  queue text, completed bigint DEFAULT 0, failed bigint DEFAULT 0, cancelled bigint DEFAULT 0,
  retried bigint DEFAULT 0, run_ms bigint DEFAULT 0, wait_ms bigint DEFAULT 0,
  at timestamptz DEFAULT now()
) RETURNS void
LANGUAGE sql AS $$
  INSERT INTO {{schema}}.queue_minutes AS m
    (queue, minute, completed, failed, cancelled, retried, run_ms, wait_ms)
  VALUES (queue, date_trunc('minute', at), completed, failed, cancelled, retried, run_ms, wait_ms)
  ON CONFLICT (queue, minute) DO UPDATE
  SET completed = m.completed + EXCLUDED.completed, failed = m.failed + EXCLUDED.failed,
      cancelled = m.cancelled + EXCLUDED.cancelled, retried = m.retried + EXCLUDED.retried,
      run_ms = m.run_ms + EXCLUDED.run_ms, wait_ms = m.wait_ms + EXCLUDED.wait_ms
$$;
