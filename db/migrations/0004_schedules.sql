-- pgwake schema, version 4: recurring jobs (src/schedules, docs/schedules.md).
-- Only new objects: jobs are made through {{schema}}.enqueue_many, and a schedule's previous job
-- is looked up in {{schema}}.jobs by id (a job that is not there has finished).
-- The sets and defaults below are declared in src/schedules/types.ts too; a test checks they agree.

CREATE TABLE {{schema}}.schedules (
  name            text        PRIMARY KEY,
  cron            text        NOT NULL,
  time_zone       text        NOT NULL DEFAULT 'UTC',
  task            text        NOT NULL,
  payload         jsonb       NOT NULL DEFAULT '{}'::jsonb,
  -- Job options; NULL takes enqueue_many's default when a job is made.
  queue           text,
  priority        integer,
  max_attempts    integer,
  timeout_ms      integer,
  -- Reserved for flow control: passed to enqueue_many once jobs have a concurrency key. Until
  -- then it must stay NULL (the constraint is dropped by the migration that brings the feature).
  concurrency_key text,
  catch_up        text        NOT NULL DEFAULT 'once',
  catch_up_limit  integer     NOT NULL DEFAULT 100,
  overlap         text        NOT NULL DEFAULT 'allow',
  paused          boolean     NOT NULL DEFAULT false,
  -- The first tick not yet decided. NULL: not planned yet (a row inserted from SQL, a new or
  -- changed expression); the service computes it on its next pass.
  next_run_at     timestamptz,
  last_tick_at    timestamptz,
  last_job_id     bigint,
  -- Why the service cannot plan this row (an expression or zone it cannot read). Set it back to
  -- NULL after fixing the row by hand.
  invalid_reason  text,
  defined_by      text        NOT NULL DEFAULT 'sql',
  owner           text,
  definition_hash text,
  revision        integer     NOT NULL DEFAULT 1,
  ticks_fired     bigint      NOT NULL DEFAULT 0,
  ticks_skipped   bigint      NOT NULL DEFAULT 0,
  ticks_late      bigint      NOT NULL DEFAULT 0,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT schedules_name_check CHECK (name ~ '^[A-Za-z0-9_.:-]{1,128}$'),
  CONSTRAINT schedules_cron_check CHECK (length(cron) BETWEEN 1 AND 256),
  CONSTRAINT schedules_time_zone_check CHECK (length(time_zone) BETWEEN 1 AND 64),
  CONSTRAINT schedules_task_check CHECK (length(task) BETWEEN 1 AND 128),
  CONSTRAINT schedules_queue_check CHECK (queue IS NULL OR length(queue) BETWEEN 1 AND 128),
  CONSTRAINT schedules_priority_check CHECK (priority IS NULL OR priority BETWEEN -1000 AND 1000),
  CONSTRAINT schedules_max_attempts_check CHECK (max_attempts IS NULL OR max_attempts BETWEEN 1 AND 1000),
  CONSTRAINT schedules_timeout_check CHECK (timeout_ms IS NULL OR timeout_ms > 0),
  CONSTRAINT schedules_concurrency_key_reserved CHECK (concurrency_key IS NULL),
  CONSTRAINT schedules_catch_up_check CHECK (catch_up IN ('skip', 'once', 'each')),
  CONSTRAINT schedules_catch_up_limit_check CHECK (catch_up_limit BETWEEN 1 AND 1000),
  CONSTRAINT schedules_overlap_check CHECK (overlap IN ('allow', 'skip')),
  CONSTRAINT schedules_defined_by_check CHECK (defined_by IN ('code', 'http', 'cli', 'library', 'sql'))
);

-- The service finds due schedules through these, never by reading every schedule. Overlap `allow`
-- may fire ahead of its tick, `skip` only at it, so each has its own order to take the first from.
CREATE INDEX schedules_due_allow_idx ON {{schema}}.schedules (next_run_at)
  WHERE NOT paused AND overlap = 'allow';
CREATE INDEX schedules_due_skip_idx ON {{schema}}.schedules (next_run_at)
  WHERE NOT paused AND overlap = 'skip';
-- Rows the service still has to plan (inserted from SQL, expression changed).
CREATE INDEX schedules_unplanned_idx ON {{schema}}.schedules (name)
  WHERE next_run_at IS NULL AND NOT paused AND invalid_reason IS NULL;

-- Every schedule row is updated once per tick: vacuum it early.
ALTER TABLE {{schema}}.schedules SET (
  autovacuum_vacuum_scale_factor = 0.02,
  autovacuum_vacuum_threshold = 500,
  autovacuum_vacuum_cost_delay = 0,
  fillfactor = 80
);

-- Each decided tick: a fired one with its job, or skipped ones with the reason (a range of
-- consecutive ticks skipped for one reason is one row). Manual triggers are runs too.
CREATE TABLE {{schema}}.schedule_runs (
  id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  schedule_name text        NOT NULL REFERENCES {{schema}}.schedules (name) ON DELETE CASCADE,
  tick_at       timestamptz NOT NULL,
  trigger       text        NOT NULL DEFAULT 'cron',
  outcome       text        NOT NULL,
  skip_reason   text,
  ticks         integer     NOT NULL DEFAULT 1,
  last_tick_at  timestamptz NOT NULL,
  job_id        bigint,
  late_ms       bigint,
  decided_at    timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT schedule_runs_trigger_check CHECK (trigger IN ('cron', 'manual')),
  CONSTRAINT schedule_runs_outcome_check CHECK (
    (outcome = 'fired' AND skip_reason IS NULL AND job_id IS NOT NULL)
    OR (outcome = 'skipped' AND skip_reason IN ('missed', 'merged', 'beyond_limit', 'overlap') AND job_id IS NULL)),
  CONSTRAINT schedule_runs_ticks_check CHECK (ticks >= 1 AND last_tick_at >= tick_at)
);

-- One decision per (schedule, tick): the constraint under which a tick's job is made. The
-- statement that fires a tick inserts this row in the same statement as the job, so a tick that
-- already has a row can never make a second job, whatever the clocks or the processes do.
CREATE UNIQUE INDEX schedule_runs_tick_idx ON {{schema}}.schedule_runs (schedule_name, tick_at)
  WHERE trigger = 'cron';
CREATE INDEX schedule_runs_recent_idx ON {{schema}}.schedule_runs (schedule_name, id);
CREATE INDEX schedule_runs_job_idx ON {{schema}}.schedule_runs (job_id) WHERE job_id IS NOT NULL;
CREATE INDEX schedule_runs_decided_idx ON {{schema}}.schedule_runs (decided_at);
ALTER TABLE {{schema}}.schedule_runs SET (autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_cost_delay = 0);
