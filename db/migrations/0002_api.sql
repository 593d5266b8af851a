-- pgwake schema, version 2: what the HTTP API reads.
-- `GET /jobs?queue=…&status=…` pages newest first by id, and `GET /queues` counts jobs by
-- queue and status: one index serves both (an index-only scan for the counts once vacuum has
-- marked the pages all-visible, which the jobs table's eager autovacuum settings make quick).
CREATE INDEX jobs_queue_status_id_idx ON {{schema}}.jobs (queue, status, id);
