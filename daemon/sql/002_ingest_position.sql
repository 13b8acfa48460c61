-- 002_ingest_position: where each spool's shipping stands (DESIGN.md,
-- "Flow, and the durability contract", point 4). The writer advances a
-- spool's row in the same transaction as the samples it ships, with a
-- fenced update (... WHERE spool_id = $1 AND last_seq = $expected), and
-- reads it on every connect to resume after it: records are shipped
-- exactly once, whatever connection or daemon crash happened between.
--
-- Citus: a reference table (a later migration distributes it), so that it
-- commits atomically with the samples' shards. No foreign keys, no
-- sequences, no triggers.

CREATE TABLE portalmetrics.ingest_position (
  spool_id text PRIMARY KEY,
  daemon_id text NOT NULL,
  last_seq bigint NOT NULL,
  updated_at timestamptz DEFAULT now()
);
COMMENT ON TABLE portalmetrics.ingest_position IS
  'How far each daemon spool has been shipped: every record with a sequence number up to last_seq is in portalmetrics.samples (or in the daemon''s dead-letter file). Advanced in the same transaction as the samples; keyed by the spool, so renaming a daemon neither re-ships nor skips anything.';
COMMENT ON COLUMN portalmetrics.ingest_position.spool_id IS 'The spool''s random id (spool.meta in the daemon''s state directory).';
COMMENT ON COLUMN portalmetrics.ingest_position.daemon_id IS 'daemon.id of the daemon that last advanced the position (informational).';
COMMENT ON COLUMN portalmetrics.ingest_position.last_seq IS 'Sequence number of the newest spool record shipped (0: none yet).';
COMMENT ON COLUMN portalmetrics.ingest_position.updated_at IS 'When the position last moved.';

GRANT SELECT ON portalmetrics.ingest_position TO portalmetrics_reader;
GRANT SELECT, INSERT, UPDATE ON portalmetrics.ingest_position TO portalmetrics_writer;
