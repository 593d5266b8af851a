-- pgwake schema, version 5: flow control and deduplication modes (DESIGN.md, "Flow control").
--
-- A queue may limit, across every worker: how many of its jobs run at once (`concurrency`), how
-- many of one concurrency key (`key_concurrency`; 1 makes a strict serial lane per key), how
-- many start per period (`rate_limit` per `rate_period_ms`, a token bucket holding up to
-- `rate_burst`, by default 50 ms worth) for the queue and per key, and share its slots between keys round-robin
-- (`fair`). The claims of a limited queue take its row FOR UPDATE, so they run one at a time and
-- every check and count is made on the rows they hold: no check-then-act race between workers.
-- Unlimited queues never take that path. A job claimed under a limit holds a slot
-- (`held_slot`) until it stops running (completed, failed, retried, handed back, cancelled, or
-- reaped when its worker's lease expired): the counters below are decremented in those same
-- statements, and recounted by maintenance should they ever drift.

ALTER TABLE {{schema}}.queues
  ADD COLUMN concurrency        integer CHECK (concurrency IS NULL OR concurrency >= 1),
  ADD COLUMN key_concurrency    integer CHECK (key_concurrency IS NULL OR key_concurrency >= 1),
  ADD COLUMN rate_limit         integer CHECK (rate_limit IS NULL OR rate_limit >= 1),
  ADD COLUMN rate_period_ms     integer NOT NULL DEFAULT 1000 CHECK (rate_period_ms >= 1),
  ADD COLUMN rate_burst         integer CHECK (rate_burst IS NULL OR rate_burst >= 1),
  ADD COLUMN key_rate_limit     integer CHECK (key_rate_limit IS NULL OR key_rate_limit >= 1),
  ADD COLUMN key_rate_period_ms integer NOT NULL DEFAULT 1000 CHECK (key_rate_period_ms >= 1),
  ADD COLUMN key_rate_burst     integer CHECK (key_rate_burst IS NULL OR key_rate_burst >= 1),
  ADD COLUMN fair               boolean NOT NULL DEFAULT false,
  -- who set the limits: 'operator' (HTTP, CLI, SQL: kept until changed) or 'tasks' (defaults
  -- from task definitions, applied by workers as they start unless an operator set limits)
  ADD COLUMN limits_source      text CHECK (limits_source IN ('operator', 'tasks')),
  -- state, written by claims of the queue (under its row lock) and by the statements that end runs
  ADD COLUMN running            integer NOT NULL DEFAULT 0,
  ADD COLUMN tokens             double precision,
  ADD COLUMN tokens_at          timestamptz,
  ADD COLUMN turn               bigint NOT NULL DEFAULT 0,
  ADD COLUMN throttled_at       timestamptz;

-- One row per concurrency key of a limited queue: its running jobs, its token bucket, and when
-- it was last served (round robin). Rows are made by submissions (ON CONFLICT DO NOTHING: an
-- existing row is neither written nor locked) and dropped by maintenance once idle.
CREATE TABLE {{schema}}.queue_keys (
  queue      text    NOT NULL,
  key        text    NOT NULL,
  running    integer NOT NULL DEFAULT 0,
  tokens     double precision,
  tokens_at  timestamptz,
  served     bigint  NOT NULL DEFAULT 0,
  -- where this key's lane was last read up to (claims of the queue run one at a time)
  cursor_priority integer,
  cursor_seq      bigint,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (queue, key)
);
CREATE INDEX queue_keys_turn_idx ON {{schema}}.queue_keys (queue, served, key);

ALTER TABLE {{schema}}.jobs
  -- '' is the key of the jobs submitted without one to a keyed queue (they share it)
  ADD COLUMN concurrency_key text CHECK (length(concurrency_key) <= 255),
  ADD COLUMN held_slot boolean NOT NULL DEFAULT false,
  -- how long the idempotency key is reserved: NULL for the retention period (the default),
  -- 'active' while the job is not finished, 'debounce' while it has not started (a newer
  -- submission with the key replaces its payload and run time)
  ADD COLUMN key_mode text CHECK (key_mode IN ('active', 'debounce')),
  -- the W3C trace context of the span that enqueued the job (OpenTelemetry): its runs continue
  -- that trace
  ADD COLUMN trace_parent text CHECK (length(trace_parent) <= 55),
  ADD COLUMN trace_state text CHECK (length(trace_state) <= 512);
ALTER TABLE {{schema}}.job_history ADD COLUMN concurrency_key text;
ALTER TABLE {{schema}}.job_keys ADD COLUMN mode text CHECK (mode IN ('active', 'debounce'));
CREATE INDEX job_keys_released_idx ON {{schema}}.job_keys (job_id) WHERE mode IS NOT NULL;

-- A key's ready jobs in claim order (only keyed jobs: unkeyed ones pay nothing).
CREATE INDEX jobs_key_ready_idx ON {{schema}}.jobs (queue, concurrency_key, priority, ready_seq)
  WHERE status = 'pending' AND concurrency_key IS NOT NULL;
-- Running jobs that hold a slot, per key: what the counters count (recount, GET /queues).
CREATE INDEX jobs_held_idx ON {{schema}}.jobs (queue, concurrency_key)
  WHERE status = 'running' AND held_slot;

-- A running job that was cancelled holds its slot until its worker says the handler returned
-- (release_slot_holds), or the worker leaves or is reaped: the next job of its key must not start
-- beside a handler that has not stopped yet.
CREATE TABLE {{schema}}.slot_holds (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job_id          bigint NOT NULL,
  queue           text NOT NULL,
  concurrency_key text,
  worker_id       text NOT NULL,
  since           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX slot_holds_worker_idx ON {{schema}}.slot_holds (worker_id);

ALTER TABLE {{schema}}.schedules DROP CONSTRAINT schedules_concurrency_key_reserved;

-- ---- every job, with its key ---------------------------------------------------------------

DROP FUNCTION {{schema}}.enqueue(text, jsonb, text, integer, timestamptz, integer, integer, text, bigint);
DROP FUNCTION {{schema}}.enqueue_many(jsonb);
DROP FUNCTION {{schema}}.as_job_record({{schema}}.jobs);
DROP VIEW {{schema}}.all_jobs;
CREATE VIEW {{schema}}.all_jobs AS
  SELECT j.id, j.queue, j.task, j.payload, j.status, j.priority, j.run_at, j.attempts,
         j.max_attempts, j.timeout_ms, j.idempotency_key, j.request_id, j.lease_owner,
         NULL::jsonb AS result, j.last_error, j.created_at, j.started_at,
         NULL::timestamptz AS finished_at, j.updated_at, j.concurrency_key
  FROM {{schema}}.jobs j
  UNION ALL
  SELECT h.id, h.queue, h.task, h.payload, h.status, h.priority, h.run_at, h.attempts,
         h.max_attempts, h.timeout_ms, h.idempotency_key, h.request_id, h.lease_owner,
         h.result, h.last_error, h.created_at, h.started_at, h.finished_at, h.updated_at,
         h.concurrency_key
  FROM {{schema}}.job_history h;

CREATE FUNCTION {{schema}}.as_job_record(j {{schema}}.jobs) RETURNS {{schema}}.all_jobs
LANGUAGE sql IMMUTABLE AS $$
  SELECT ROW(j.id, j.queue, j.task, j.payload, j.status, j.priority, j.run_at, j.attempts,
             j.max_attempts, j.timeout_ms, j.idempotency_key, j.request_id, j.lease_owner,
             NULL::jsonb, j.last_error, j.created_at, j.started_at, NULL::timestamptz,
             j.updated_at, j.concurrency_key)::{{schema}}.all_jobs
$$;

-- ---- submission ------------------------------------------------------------------------------

-- As in version 3, plus: `concurrency_key` (the job counts against its key's limits; the key's
-- row is made if missing), `key_mode` for the idempotency key ('active', 'debounce'), and
-- `trace_parent`/`trace_state` (W3C trace context). An item
-- whose debounce key is held by a job not started yet replaces that job's payload and run time
-- (the job is returned by the caller's duplicate lookup, not here).
DROP FUNCTION {{schema}}.insert_jobs(jsonb);
CREATE FUNCTION {{schema}}.insert_jobs(jobs jsonb) RETURNS SETOF {{schema}}.jobs
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY
  WITH parsed AS MATERIALIZED (
    SELECT r.task, coalesce(r.payload, '{}'::jsonb) AS payload,
           coalesce(r.queue, 'default') AS queue, coalesce(r.priority, 0) AS priority,
           coalesce(r.run_at, now() + coalesce(r.delay_ms, 0) * interval '1 millisecond') AS run_at,
           coalesce(r.max_attempts, 10) AS max_attempts, r.timeout_ms, r.idempotency_key,
           r.request_id, r.concurrency_key, r.key_mode, r.trace_parent, r.trace_state, r.n,
           nextval('{{schema}}.jobs_id_seq'::regclass) AS id
    FROM ROWS FROM (jsonb_to_recordset(jobs) AS (
           task text, payload jsonb, queue text, priority integer, run_at timestamptz,
           delay_ms bigint, max_attempts integer, timeout_ms integer, idempotency_key text,
           request_id text, concurrency_key text, key_mode text, trace_parent text,
           trace_state text))
         WITH ORDINALITY AS r(task, payload, queue, priority, run_at, delay_ms, max_attempts,
           timeout_ms, idempotency_key, request_id, concurrency_key, key_mode, trace_parent,
           trace_state, n)
    ORDER BY r.n
  ), input AS MATERIALIZED (
    -- In a queue served per key, a job without a key has the key '' (key_unkeyed_jobs).
    SELECT p.task, p.payload, p.queue, p.priority, p.run_at, p.max_attempts, p.timeout_ms,
           p.idempotency_key, p.request_id, p.key_mode, p.trace_parent, p.trace_state, p.n, p.id,
           coalesce(p.concurrency_key, CASE WHEN k.keyed THEN '' END) AS concurrency_key
    FROM parsed p
    LEFT JOIN (SELECT q.name, {{schema}}.queue_is_keyed(q) AS keyed FROM {{schema}}.queues q) k
      ON k.name = p.queue
  ), reserved AS (
    -- Keys in (queue, key) order: concurrent submissions of the same keys wait, never deadlock.
    INSERT INTO {{schema}}.job_keys AS k (queue, key, job_id, mode)
    SELECT i.queue, i.idempotency_key, i.id, i.key_mode FROM input i
    WHERE i.idempotency_key IS NOT NULL
    ORDER BY i.queue, i.idempotency_key, i.id
    ON CONFLICT (queue, key) DO NOTHING
    RETURNING k.job_id
  ), debounced AS (
    -- The newest item of a debounce key replaces the payload and run time of the job waiting
    -- under it (one committed before this statement; a concurrent one is found by the caller).
    UPDATE {{schema}}.jobs j
    SET payload = d.payload, run_at = d.run_at,
        status = CASE WHEN d.run_at <= now() THEN 'pending' ELSE 'scheduled' END,
        ready_seq = CASE WHEN d.run_at <= now() AND j.status <> 'pending'
                         THEN nextval('{{schema}}.jobs_id_seq'::regclass) ELSE j.ready_seq END,
        updated_at = now()
    FROM (SELECT DISTINCT ON (i.queue, i.idempotency_key) i.*, k.job_id
          FROM input i JOIN {{schema}}.job_keys k ON k.queue = i.queue AND k.key = i.idempotency_key
          WHERE i.key_mode = 'debounce' AND k.mode = 'debounce'
          ORDER BY i.queue, i.idempotency_key, i.n DESC) d
    WHERE j.id = d.job_id AND j.status IN ('pending', 'scheduled')
      AND d.id NOT IN (SELECT r.job_id FROM reserved r)
  ), registered AS (
    INSERT INTO {{schema}}.queues (name) SELECT DISTINCT i.queue FROM input i
    ON CONFLICT (name) DO NOTHING
  ), keyed AS (
    INSERT INTO {{schema}}.queue_keys (queue, key)
    SELECT DISTINCT i.queue, i.concurrency_key FROM input i WHERE i.concurrency_key IS NOT NULL
    ORDER BY 1, 2
    ON CONFLICT (queue, key) DO NOTHING
  )
  INSERT INTO {{schema}}.jobs AS t
    (id, task, payload, queue, priority, run_at, status, ready_seq, max_attempts, timeout_ms,
     idempotency_key, request_id, concurrency_key, key_mode, trace_parent, trace_state)
  OVERRIDING SYSTEM VALUE
  SELECT i.id, i.task, i.payload, i.queue, i.priority, i.run_at,
         CASE WHEN i.run_at <= now() THEN 'pending' ELSE 'scheduled' END, i.id,
         i.max_attempts, i.timeout_ms, i.idempotency_key, i.request_id, i.concurrency_key,
         CASE WHEN i.idempotency_key IS NOT NULL THEN i.key_mode END,
         i.trace_parent, i.trace_state
  FROM input i
  WHERE i.idempotency_key IS NULL OR i.id IN (SELECT r.job_id FROM reserved r)
  ORDER BY i.id
  RETURNING t.*;
END
$$;

-- The SQL API, as in version 3, with concurrency_key and key_mode.
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
  delay_ms bigint DEFAULT NULL,
  concurrency_key text DEFAULT NULL,
  key_mode text DEFAULT NULL
) RETURNS TABLE (job {{schema}}.all_jobs, duplicate boolean)
LANGUAGE sql AS $$
  SELECT r.job, r.duplicate
  -- Options left NULL are left out (the defaults apply); the payload is kept whole, nulls in it
  -- included.
  FROM {{schema}}.enqueue_many(jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
    'task', task, 'queue', queue, 'priority', priority, 'run_at', run_at,
    'max_attempts', max_attempts, 'timeout_ms', timeout_ms, 'idempotency_key', idempotency_key,
    'delay_ms', delay_ms, 'concurrency_key', concurrency_key, 'key_mode', key_mode))
    || jsonb_build_object('payload', coalesce(payload, '{}'::jsonb)))) r
$$;

-- ---- settings --------------------------------------------------------------------------------

-- Whether a queue's claims go through claim_limited.
CREATE FUNCTION {{schema}}.queue_is_limited(q {{schema}}.queues) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
  SELECT q.concurrency IS NOT NULL OR q.key_concurrency IS NOT NULL OR q.rate_limit IS NOT NULL
      OR q.key_rate_limit IS NOT NULL OR q.fair
$$;

-- Whether a queue's jobs are claimed per concurrency key (and so must all have one: jobs without
-- a key share the key '').
CREATE FUNCTION {{schema}}.queue_is_keyed(q {{schema}}.queues) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
  SELECT q.key_concurrency IS NOT NULL OR q.key_rate_limit IS NOT NULL OR q.fair
$$;

-- Gives jobs without a key the key '' in keyed queues (after a queue becomes keyed, and as a
-- safety net for a submission that raced with that change). Returns how many it changed.
CREATE FUNCTION {{schema}}.key_unkeyed_jobs(queue_name text DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  changed integer;
BEGIN
  WITH keyed AS (
    SELECT q.name FROM {{schema}}.queues q
    WHERE {{schema}}.queue_is_keyed(q) AND (queue_name IS NULL OR q.name = queue_name)
  ), registered AS (
    INSERT INTO {{schema}}.queue_keys (queue, key) SELECT name, '' FROM keyed
    ON CONFLICT (queue, key) DO NOTHING
  ), changed_rows AS (
    UPDATE {{schema}}.jobs j SET concurrency_key = '', updated_at = now()
    FROM keyed k
    WHERE j.queue = k.name AND j.concurrency_key IS NULL
      AND j.status IN ('scheduled', 'pending', 'retrying')
    RETURNING 1
  )
  SELECT count(*) INTO changed FROM changed_rows;
  RETURN changed;
END
$$;

-- Sets a queue's limits (NULL removes one), creating the queue's row if needed; every worker
-- applies them from its next claim of the queue. Lowering a limit stops new starts and aborts
-- nothing. `source` says who sets them: 'operator' (the default), 'tasks' (defaults from task
-- definitions: ignored when an operator's limits are in place) or NULL (back to no limits and no
-- source: the task defaults apply again as workers start). Returns the queue's row.
CREATE FUNCTION {{schema}}.set_queue_limits(
  queue_name text,
  concurrency integer DEFAULT NULL,
  key_concurrency integer DEFAULT NULL,
  rate_limit integer DEFAULT NULL,
  rate_period_ms integer DEFAULT 1000,
  rate_burst integer DEFAULT NULL,
  key_rate_limit integer DEFAULT NULL,
  key_rate_period_ms integer DEFAULT 1000,
  key_rate_burst integer DEFAULT NULL,
  fair boolean DEFAULT false,
  source text DEFAULT 'operator'
) RETURNS {{schema}}.queues
LANGUAGE plpgsql AS $$
DECLARE
  row {{schema}}.queues;
BEGIN
  IF source IS NOT NULL AND source NOT IN ('operator', 'tasks') THEN
    RAISE EXCEPTION 'source must be operator, tasks or NULL (got %)', source
      USING ERRCODE = '22023';
  END IF;
  INSERT INTO {{schema}}.queues AS q (name) VALUES (queue_name) ON CONFLICT (name) DO NOTHING;
  -- Defaults from task definitions never override an operator's limits.
  IF source = 'tasks' THEN
    SELECT * INTO row FROM {{schema}}.queues q WHERE q.name = queue_name FOR UPDATE;
    IF row.limits_source = 'operator' THEN RETURN row; END IF;
  END IF;
  UPDATE {{schema}}.queues q
  SET concurrency = set_queue_limits.concurrency,
      key_concurrency = set_queue_limits.key_concurrency,
      rate_limit = set_queue_limits.rate_limit,
      rate_period_ms = set_queue_limits.rate_period_ms,
      rate_burst = set_queue_limits.rate_burst,
      key_rate_limit = set_queue_limits.key_rate_limit,
      key_rate_period_ms = set_queue_limits.key_rate_period_ms,
      key_rate_burst = set_queue_limits.key_rate_burst,
      fair = set_queue_limits.fair,
      limits_source = set_queue_limits.source,
      -- a bucket starts full (its burst) when its rate changes
      tokens = CASE WHEN q.rate_limit IS NOT DISTINCT FROM set_queue_limits.rate_limit
                     AND q.rate_period_ms = set_queue_limits.rate_period_ms
                     AND q.rate_burst IS NOT DISTINCT FROM set_queue_limits.rate_burst
                    THEN q.tokens END,
      tokens_at = CASE WHEN q.rate_limit IS NOT DISTINCT FROM set_queue_limits.rate_limit
                        AND q.rate_period_ms = set_queue_limits.rate_period_ms
                        AND q.rate_burst IS NOT DISTINCT FROM set_queue_limits.rate_burst
                       THEN q.tokens_at END,
      updated_at = now()
  WHERE q.name = queue_name
  RETURNING * INTO row;
  PERFORM {{schema}}.key_unkeyed_jobs(queue_name);
  PERFORM pg_notify({{control_channel}}, json_build_object('queue', queue_name)::text);
  RETURN row;
END
$$;

-- ---- the claim of a limited queue ------------------------------------------------------------

-- The size of a bucket: `burst` when set, else 50 ms worth of starts, at least 1. Starts are
-- spread evenly over the period, never bunched at its start; the 50 ms let a claim that comes
-- late (a busy worker, a slow commit, claims of many workers queueing for the queue's row) take
-- the tokens that came meanwhile instead of losing them. A burst of 1 is exact to the token and
-- may under-deliver when claims are late.
CREATE FUNCTION {{schema}}.bucket_size(lim integer, period_ms integer, burst integer)
RETURNS double precision
LANGUAGE sql IMMUTABLE AS $$
  SELECT coalesce(burst, greatest(1, ceil(lim * 50.0 / period_ms)))::double precision
$$;

-- A token bucket refilled from `tokens_at` to now at `lim` per `period_ms`, holding up to its
-- size (bucket_size). NULL when not limited.
CREATE FUNCTION {{schema}}.refill(tokens double precision, tokens_at timestamptz, lim integer,
                                  period_ms integer, burst integer, at timestamptz)
RETURNS double precision
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN lim IS NULL THEN NULL
    ELSE least({{schema}}.bucket_size(lim, period_ms, burst),
               coalesce(tokens, {{schema}}.bucket_size(lim, period_ms, burst))
               + greatest(0, extract(epoch FROM at - coalesce(tokens_at, at))) * 1000 * lim / period_ms)
  END
$$;

-- Claims up to `want` jobs of a limited queue for `worker`, within every limit. Runs one at a
-- time per queue (the queue's row FOR UPDATE): each statement below takes a fresh snapshot after
-- the lock, so the counts it reads include every claim made before it. Keyed queues are served
-- per key in turn (least recently served first), each key within its own limits; other limited
-- queues in claim order. Claimed jobs hold a slot until they stop running.
CREATE FUNCTION {{schema}}.claim_limited(worker text, queue_name text, tasks text[], want integer)
RETURNS SETOF {{schema}}.jobs
LANGUAGE plpgsql AS $$
DECLARE
  qs {{schema}}.queues;
  budget integer;
  qtokens double precision;
  keyed boolean;
  sweep boolean;
  k record;
  share integer;
  kb integer;
  ktokens double precision;
  taken integer;
  total integer := 0;
  qturn bigint;
  at timestamptz;
BEGIN
  -- FOR KEY SHARE: the reaper's FOR UPDATE waits for this claim, the heartbeat's update of the
  -- lease does not (a claim waiting for the queue's row must not hold up the lease).
  PERFORM 1 FROM {{schema}}.workers w
  WHERE w.id = worker AND w.reaped_at IS NULL AND w.lease_expires_at > now()
  FOR KEY SHARE;
  IF NOT FOUND THEN RETURN; END IF;
  SELECT * INTO qs FROM {{schema}}.queues q WHERE q.name = queue_name FOR UPDATE;
  IF NOT FOUND OR qs.paused OR want <= 0 THEN RETURN; END IF;
  -- The buckets' clock: read after the queue's row is ours, so claims of this queue see it in
  -- the order they run. Not now(): a claim whose transaction began before a later claim took
  -- the row would refill to an older time and write it back, and the next claim would count
  -- the same time again (more starts than the limit). Never behind the bucket's own clock.
  at := greatest(clock_timestamp(), qs.tokens_at);

  budget := want;
  IF qs.concurrency IS NOT NULL THEN
    budget := least(budget, qs.concurrency - qs.running);
  END IF;
  qtokens := {{schema}}.refill(qs.tokens, qs.tokens_at, qs.rate_limit, qs.rate_period_ms,
                              qs.rate_burst, at);
  IF qtokens IS NOT NULL THEN
    budget := least(budget, floor(qtokens)::integer);
  END IF;
  keyed := {{schema}}.queue_is_keyed(qs);
  qturn := qs.turn;

  IF budget > 0 AND keyed THEN
    -- Read each key's lane from the start about once a second (jobs put back in place, late
    -- commits), else from where its last claim stopped.
    sweep := qs.throttled_at IS NULL OR qs.throttled_at < now() - interval '1 second';
    share := greatest(1, budget / 4);
    FOR k IN
      SELECT * FROM {{schema}}.queue_keys c
      WHERE c.queue = queue_name
        AND (qs.key_concurrency IS NULL OR c.running < qs.key_concurrency)
      ORDER BY c.served, c.key
      LIMIT greatest(budget * 2, 32)
      FOR UPDATE SKIP LOCKED
    LOOP
      EXIT WHEN budget <= 0;
      kb := least(budget, share);
      IF qs.key_concurrency IS NOT NULL THEN
        kb := least(kb, qs.key_concurrency - k.running);
      END IF;
      ktokens := {{schema}}.refill(k.tokens, k.tokens_at, qs.key_rate_limit, qs.key_rate_period_ms,
                                   qs.key_rate_burst, greatest(at, k.tokens_at));
      IF ktokens IS NOT NULL THEN
        kb := least(kb, floor(ktokens)::integer);
      END IF;
      taken := 0;
      IF kb > 0 THEN
        RETURN QUERY
        WITH picked AS (
          SELECT p.id FROM (
            SELECT a.id, a.priority, a.ready_seq FROM {{schema}}.jobs a
            WHERE a.queue = queue_name AND a.concurrency_key = k.key AND a.status = 'pending'
              AND a.task = ANY (tasks)
              AND (sweep OR k.cursor_seq IS NULL OR a.priority < k.cursor_priority
                   OR (a.priority, a.ready_seq) > (k.cursor_priority, k.cursor_seq - 1024))
            ORDER BY a.priority, a.ready_seq
            LIMIT kb
            FOR UPDATE SKIP LOCKED) p
        )
        UPDATE {{schema}}.jobs j
        SET status = 'running', attempts = j.attempts + 1, lease_owner = worker,
            started_at = at, updated_at = now(), held_slot = true
        WHERE j.id IN (SELECT id FROM picked)
        RETURNING j.*;
        GET DIAGNOSTICS taken = ROW_COUNT;
      END IF;
      qturn := qturn + 1;
      -- The key's cursor: the last job this claim took, read through the index of held jobs
      -- (`held_slot` in the condition: without it every claim read the whole table per key).
      UPDATE {{schema}}.queue_keys c
      SET running = c.running + taken,
          tokens = CASE WHEN ktokens IS NULL THEN NULL ELSE ktokens - taken END,
          tokens_at = CASE WHEN ktokens IS NULL THEN NULL ELSE greatest(at, c.tokens_at) END,
          served = qturn,
          cursor_priority = coalesce(
            (SELECT j.priority FROM {{schema}}.jobs j
             WHERE j.queue = queue_name AND j.concurrency_key = k.key AND j.status = 'running'
               AND j.held_slot AND j.lease_owner = worker AND j.started_at = at
             ORDER BY j.priority DESC, j.ready_seq DESC LIMIT 1), c.cursor_priority),
          cursor_seq = coalesce(
            (SELECT j.ready_seq FROM {{schema}}.jobs j
             WHERE j.queue = queue_name AND j.concurrency_key = k.key AND j.status = 'running'
               AND j.held_slot AND j.lease_owner = worker AND j.started_at = at
             ORDER BY j.priority DESC, j.ready_seq DESC LIMIT 1), c.cursor_seq)
      WHERE c.queue = queue_name AND c.key = k.key;
      budget := budget - taken;
      total := total + taken;
    END LOOP;
    IF sweep THEN
      UPDATE {{schema}}.queues q SET throttled_at = now() WHERE q.name = queue_name;
    END IF;
  ELSIF budget > 0 THEN
    RETURN QUERY
    WITH picked AS (
      SELECT p.id FROM (
        SELECT a.id, a.priority, a.ready_seq FROM {{schema}}.jobs a
        WHERE a.queue = queue_name AND a.status = 'pending' AND a.task = ANY (tasks)
        ORDER BY a.priority, a.ready_seq
        LIMIT budget
        FOR UPDATE SKIP LOCKED) p
    )
    UPDATE {{schema}}.jobs j
    SET status = 'running', attempts = j.attempts + 1, lease_owner = worker,
        started_at = at, updated_at = now(), held_slot = true
    WHERE j.id IN (SELECT id FROM picked)
    RETURNING j.*;
    GET DIAGNOSTICS total = ROW_COUNT;
  END IF;

  UPDATE {{schema}}.queues q
  SET running = q.running + total,
      tokens = CASE WHEN qtokens IS NULL THEN NULL ELSE qtokens - total END,
      tokens_at = CASE WHEN qtokens IS NULL THEN NULL ELSE at END,
      turn = qturn
  WHERE q.name = queue_name;
END
$$;

-- Sets the slot counters to what running jobs hold: a safety net, run by maintenance (the
-- statements that end runs keep them right), one queue per transaction. Locks the queue's row
-- first, then counts with a fresh snapshot, so no claim of the queue runs meanwhile; key rows a
-- statement ending runs holds are skipped (it is changing them right now, and it waits for this
-- queue's row: waiting for its key rows would be a deadlock).
CREATE FUNCTION {{schema}}.recount_slots(queue_name text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  fixed integer := 0;
  n integer;
BEGIN
  PERFORM 1 FROM {{schema}}.queues q WHERE q.name = queue_name FOR UPDATE;
  -- Holds of cancelled jobs count while their worker has a row (its reaper or its own exit
  -- releases them); a hold whose worker is gone is released here.
  DELETE FROM {{schema}}.slot_holds h
  WHERE h.queue = queue_name
    AND NOT EXISTS (SELECT 1 FROM {{schema}}.workers w WHERE w.id = h.worker_id);
  UPDATE {{schema}}.queues q
  SET running = (SELECT count(*) FROM {{schema}}.jobs j
                 WHERE j.queue = queue_name AND j.status = 'running' AND j.held_slot)
              + (SELECT count(*) FROM {{schema}}.slot_holds h WHERE h.queue = queue_name)
  WHERE q.name = queue_name
    AND q.running <> (SELECT count(*) FROM {{schema}}.jobs j
                      WHERE j.queue = queue_name AND j.status = 'running' AND j.held_slot)
                   + (SELECT count(*) FROM {{schema}}.slot_holds h WHERE h.queue = queue_name);
  GET DIAGNOSTICS n = ROW_COUNT;
  fixed := fixed + n;
  WITH counted AS (
    SELECT c.key, ((SELECT count(*) FROM {{schema}}.jobs j
                    WHERE j.queue = queue_name AND j.concurrency_key = c.key
                      AND j.status = 'running' AND j.held_slot)
                 + (SELECT count(*) FROM {{schema}}.slot_holds h
                    WHERE h.queue = queue_name AND h.concurrency_key = c.key))::integer AS n
    FROM {{schema}}.queue_keys c WHERE c.queue = queue_name
    ORDER BY c.key
    FOR UPDATE OF c SKIP LOCKED
  )
  UPDATE {{schema}}.queue_keys c SET running = counted.n
  FROM counted WHERE c.queue = queue_name AND c.key = counted.key AND c.running <> counted.n;
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN fixed + n;
END
$$;

-- Keys of a queue with no job waiting and none running, not served for an hour: forgotten (a
-- submission makes the row again).
CREATE FUNCTION {{schema}}.forget_idle_keys() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  forgotten integer;
BEGIN
  WITH idle AS (
    SELECT c.queue, c.key FROM {{schema}}.queue_keys c
    WHERE c.running = 0 AND c.created_at < now() - interval '1 hour'
      AND NOT EXISTS (SELECT 1 FROM {{schema}}.jobs j
                      WHERE j.queue = c.queue AND j.concurrency_key = c.key
                        AND j.status = 'pending')
    ORDER BY c.queue, c.key
    LIMIT 10000
    FOR UPDATE OF c SKIP LOCKED
  ), gone AS (
    DELETE FROM {{schema}}.queue_keys c USING idle
    WHERE c.queue = idle.queue AND c.key = idle.key
    RETURNING 1
  )
  SELECT count(*) INTO forgotten FROM gone;
  RETURN forgotten;
END
$$;

-- ---- why a job waits -------------------------------------------------------------------------

-- Why a live job has not started, as JSON (`GET /jobs/:id`): the first of its queue paused, a
-- run time still ahead, a limit of its queue or of its concurrency key at its maximum (with the
-- numbers), or nothing but a free worker (`ready`). NULL for a running or finished job.
CREATE FUNCTION {{schema}}.waiting_for(job_id bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
  j {{schema}}.jobs;
  q {{schema}}.queues;
  k {{schema}}.queue_keys;
  t double precision;
BEGIN
  SELECT * INTO j FROM {{schema}}.jobs WHERE id = job_id;
  IF NOT FOUND OR j.status = 'running' THEN RETURN NULL; END IF;
  SELECT * INTO q FROM {{schema}}.queues WHERE name = j.queue;
  IF q.paused THEN
    RETURN jsonb_build_object('reason', 'queue_paused');
  END IF;
  IF j.status <> 'pending' THEN
    RETURN jsonb_build_object('reason', 'run_at', 'runAt', j.run_at);
  END IF;
  IF q.name IS NULL OR NOT {{schema}}.queue_is_limited(q) THEN
    RETURN jsonb_build_object('reason', 'ready');
  END IF;
  IF q.concurrency IS NOT NULL AND q.running >= q.concurrency THEN
    RETURN jsonb_build_object('reason', 'queue_concurrency', 'limit', q.concurrency,
                              'running', q.running);
  END IF;
  t := {{schema}}.refill(q.tokens, q.tokens_at, q.rate_limit, q.rate_period_ms, q.rate_burst, now());
  IF t IS NOT NULL AND t < 1 THEN
    RETURN jsonb_build_object('reason', 'queue_rate', 'limit', q.rate_limit,
                              'periodMs', q.rate_period_ms,
                              'nextTokenMs', ceil((1 - t) * q.rate_period_ms / q.rate_limit));
  END IF;
  IF j.concurrency_key IS NOT NULL THEN
    SELECT * INTO k FROM {{schema}}.queue_keys c
    WHERE c.queue = j.queue AND c.key = j.concurrency_key;
    IF FOUND THEN
      IF q.key_concurrency IS NOT NULL AND k.running >= q.key_concurrency THEN
        RETURN jsonb_build_object('reason', 'key_concurrency', 'key', k.key,
                                  'limit', q.key_concurrency, 'running', k.running);
      END IF;
      t := {{schema}}.refill(k.tokens, k.tokens_at, q.key_rate_limit, q.key_rate_period_ms,
                            q.key_rate_burst, now());
      IF t IS NOT NULL AND t < 1 THEN
        RETURN jsonb_build_object('reason', 'key_rate', 'key', k.key, 'limit', q.key_rate_limit,
                                  'periodMs', q.key_rate_period_ms,
                                  'nextTokenMs',
                                  ceil((1 - t) * q.key_rate_period_ms / q.key_rate_limit));
      END IF;
      IF EXISTS (SELECT 1 FROM {{schema}}.jobs a
                 WHERE a.queue = j.queue AND a.concurrency_key = j.concurrency_key
                   AND a.status = 'pending' AND (a.priority, a.ready_seq) < (j.priority, j.ready_seq)) THEN
        RETURN jsonb_build_object('reason', 'key_order', 'key', k.key);
      END IF;
    END IF;
  END IF;
  RETURN jsonb_build_object('reason', 'ready');
END
$$;

-- Pending jobs of a queue held back by a limit now, counted up to `cap`: all of them when the
-- queue's own concurrency or rate is at its maximum, else those of keys at theirs.
CREATE FUNCTION {{schema}}.queue_throttled(q {{schema}}.queues, cap integer) RETURNS integer
LANGUAGE plpgsql STABLE AS $$
DECLARE
  n integer;
  t double precision;
BEGIN
  IF NOT {{schema}}.queue_is_limited(q) THEN RETURN 0; END IF;
  t := {{schema}}.refill(q.tokens, q.tokens_at, q.rate_limit, q.rate_period_ms, q.rate_burst, now());
  IF q.paused OR (q.concurrency IS NOT NULL AND q.running >= q.concurrency)
     OR (t IS NOT NULL AND t < 1) THEN
    SELECT count(*) INTO n FROM (
      SELECT 1 FROM {{schema}}.jobs j WHERE j.queue = q.name AND j.status = 'pending' LIMIT cap) x;
    RETURN n;
  END IF;
  IF NOT {{schema}}.queue_is_keyed(q) THEN RETURN 0; END IF;
  SELECT count(*) INTO n FROM (
    SELECT 1 FROM {{schema}}.queue_keys c
    JOIN {{schema}}.jobs j ON j.queue = c.queue AND j.concurrency_key = c.key AND j.status = 'pending'
    WHERE c.queue = q.name
      AND ((q.key_concurrency IS NOT NULL AND c.running >= q.key_concurrency)
           OR {{schema}}.refill(c.tokens, c.tokens_at, q.key_rate_limit, q.key_rate_period_ms,
                                q.key_rate_burst, now()) < 1)
    LIMIT cap) x;
  RETURN n;
END
$$;

-- ---- wake-ups that cost submitters of other queues nothing -----------------------------------

-- 0003's wake() first checked every token's listener (one pg_stat_get_activity call per token)
-- at every commit that inserted a job while anyone waited: 100 idle workers of one queue halved
-- the submissions to another (3,600 → 1,650 SQL enqueues a second, 16 connections). Now a
-- submission notes only queues someone waits for, and wake() checks a listener only for a token
-- it is about to spend, in token order (a dead one is dropped and the next one spent instead).
CREATE OR REPLACE FUNCTION {{schema}}.wake(notes jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  q text;
  note jsonb;
  ready_tasks text[];
  t record;
  budget integer;
  sweep boolean;
  -- A repeatable-read snapshot may predate a token: tell every waiting worker instead.
  stale_snapshot boolean := current_setting('transaction_isolation') <> 'read committed';
BEGIN
  FOR q, note IN SELECT key, value FROM jsonb_each(notes) LOOP
    ready_tasks := ARRAY(SELECT jsonb_array_elements_text(coalesce(note -> 't', '[]'::jsonb)));
    IF (note ->> 'at') IS NOT NULL AND EXISTS (
         SELECT 1 FROM {{schema}}.waiters w
         WHERE w.queue = q OR (w.queue = '*' AND NOT q = ANY (coalesce(w.excluded, '{}')))) THEN
      PERFORM pg_notify({{channel}}, jsonb_build_object('q', q, 'at', (note ->> 'at')::bigint)::text);
    END IF;
    sweep := coalesce((note ->> 'sweep')::boolean, false);
    budget := coalesce((note ->> 'n')::integer, 0);
    CONTINUE WHEN budget = 0 AND NOT sweep;
    IF stale_snapshot THEN
      PERFORM pg_notify({{channel}}, jsonb_build_object('q', q, 'sweep', true)::text);
      CONTINUE;
    END IF;
    -- Tokens are taken in one global order and waited for, not skipped: a submitter that spent
    -- a token and then rolled back leaves it to the next one. Rows are locked as the loop
    -- fetches them, so a wake-up of one job locks the tokens it looks at, not all of them.
    FOR t IN
      SELECT w.queue, w.worker_id, w.listener_pid FROM {{schema}}.waiters w
      WHERE (w.queue = q OR (w.queue = '*' AND NOT q = ANY (coalesce(w.excluded, '{}'))))
        AND (w.tasks IS NULL OR cardinality(ready_tasks) = 0 OR w.tasks && ready_tasks)
      ORDER BY w.since, w.queue, w.worker_id
      FOR UPDATE
    LOOP
      EXIT WHEN budget <= 0 AND NOT sweep;
      DELETE FROM {{schema}}.waiters w WHERE w.queue = t.queue AND w.worker_id = t.worker_id;
      -- A token whose listener is gone wakes nobody: spend the next one.
      CONTINUE WHEN t.listener_pid IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM pg_stat_get_activity(t.listener_pid));
      PERFORM pg_notify({{channel}}, jsonb_build_object(
        'q', q, 'w', t.worker_id, 'k', t.queue, 't', note -> 't', 'sweep', sweep)::text);
      budget := budget - 1;
    END LOOP;
  END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION {{schema}}.note_inserted_jobs() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  setting constant text := 'pgwake.wake_' || {{channel}};
  noted jsonb := coalesce(nullif(current_setting(setting, true), ''), '{}')::jsonb;
  first boolean := noted = '{}'::jsonb;
  per_queue record;
  prev jsonb;
BEGIN
  -- A queue with no token visible has nobody to wake: a worker that puts one later lists this
  -- transaction among those it watches (the same argument as 0003's, per queue).
  FOR per_queue IN
    SELECT n.queue,
           count(*) FILTER (WHERE n.status = 'pending')::integer AS ready,
           coalesce(jsonb_agg(DISTINCT n.task) FILTER (WHERE n.status = 'pending'), '[]'::jsonb) AS tasks,
           (extract(epoch FROM min(n.run_at) FILTER (WHERE n.status <> 'pending')) * 1000)::bigint AS due_ms
    FROM new_jobs n
    GROUP BY n.queue
  LOOP
    CONTINUE WHEN NOT EXISTS (
      SELECT 1 FROM {{schema}}.waiters w
      WHERE w.queue = per_queue.queue
         OR (w.queue = '*' AND NOT per_queue.queue = ANY (coalesce(w.excluded, '{}'))));
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
