-- pgwake schema, version 2: what the HTTP API reads.
-- `GET /jobs?status=failed` (the dead-letter set) pages newest first by id within a queue. The
-- index is partial on purpose: a job that just works (pending → running → completed) never
-- enters it, so the claim and completion hot path pays nothing for it. Other listings page the
-- primary key backwards; the claim, lease and finished indexes serve their own statuses.
CREATE INDEX jobs_dead_idx ON {{schema}}.jobs (queue, status, id)
  WHERE status IN ('failed', 'cancelled');
