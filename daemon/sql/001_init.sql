-- 001_init: the analysts' contract of DESIGN.md ("PostgreSQL schema"):
-- the metric catalog, series, monthly partitioned samples, the views
-- samples_v and latest, the partition functions, and the roles.
--
-- Migrations run in one transaction each, holding
-- pg_advisory_xact_lock(8101258175499824481) ('pmschema'); the daemon
-- records them in portalmetrics.schema_version. A migration never says
-- BEGIN or COMMIT itself.
--
-- Citus compatibility (a later issue): no foreign keys from samples, and
-- nothing that needs rows from two shards at once.

CREATE SCHEMA IF NOT EXISTS portalmetrics;
COMMENT ON SCHEMA portalmetrics IS
  'portalmetrics: patient-portal rollout metrics written by portalmetricsd. Analysts read the views samples_v and latest, and the tables metrics and series.';

CREATE TABLE IF NOT EXISTS portalmetrics.schema_version (
  version integer PRIMARY KEY,
  name text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE portalmetrics.schema_version IS
  'Schema migrations applied by portalmetricsd, one row each. A daemon refuses a database whose newest version it does not know.';
COMMENT ON COLUMN portalmetrics.schema_version.version IS 'Migration number (001_init.sql is 1).';
COMMENT ON COLUMN portalmetrics.schema_version.name IS 'Migration file name without .sql.';
COMMENT ON COLUMN portalmetrics.schema_version.applied_at IS 'When the migration was applied.';

-- Roles: created when missing (they are cluster-wide; another database's
-- migration may create one at the same moment).
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'portalmetrics_reader') THEN
    CREATE ROLE portalmetrics_reader NOLOGIN;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL;
END
$$;
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'portalmetrics_writer') THEN
    CREATE ROLE portalmetrics_writer NOLOGIN;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL;
END
$$;

-- The metric catalog.
CREATE TABLE portalmetrics.metrics (
  metric text PRIMARY KEY,
  kind text NOT NULL CHECK (kind IN ('gauge', 'count')),
  unit text,
  description text
);
COMMENT ON TABLE portalmetrics.metrics IS
  'The metric catalog: every metric the daemons declare, so nobody sums a gauge. Refreshed by each daemon on connect.';
COMMENT ON COLUMN portalmetrics.metrics.metric IS 'Dotted lower-case metric name, e.g. portal.patients_enrolled.';
COMMENT ON COLUMN portalmetrics.metrics.kind IS 'gauge: a level (sum across series, never over time); count: events per bucket (sums over time are meaningful).';
COMMENT ON COLUMN portalmetrics.metrics.unit IS 'Unit of the values, e.g. patients, messages, seconds, 1.';
COMMENT ON COLUMN portalmetrics.metrics.description IS 'One-line description.';

-- Series: one metric with one label set.
CREATE TABLE portalmetrics.series (
  id bigint PRIMARY KEY,
  metric text NOT NULL,
  labels jsonb NOT NULL,
  kind text NOT NULL CHECK (kind IN ('set', 'add')),
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (metric, labels)
);
COMMENT ON TABLE portalmetrics.series IS
  'One row per time series: a metric and its labels. id is a frozen 64-bit hash of both (see the README), so every daemon derives it without a round trip.';
COMMENT ON COLUMN portalmetrics.series.id IS 'Series id: first 8 bytes of SHA-256 of the length-prefixed metric and sorted labels, as bigint.';
COMMENT ON COLUMN portalmetrics.series.metric IS 'Metric name (see portalmetrics.metrics).';
COMMENT ON COLUMN portalmetrics.series.labels IS 'Labels as a JSON object: where a number comes from (clinic, site, source, collector), never who.';
COMMENT ON COLUMN portalmetrics.series.kind IS 'set: each sample is the value at its ts (a re-send overwrites); add: samples are increments summed per ts.';
COMMENT ON COLUMN portalmetrics.series.created_at IS 'When the series was first written.';

-- Samples, partitioned by month (samples_YYYYMM, bounds in UTC).
CREATE TABLE portalmetrics.samples (
  series_id bigint NOT NULL,
  ts timestamptz NOT NULL,
  value double precision NOT NULL,
  PRIMARY KEY (series_id, ts)
) PARTITION BY RANGE (ts);
COMMENT ON TABLE portalmetrics.samples IS
  'Samples: one value per series and timestamp, partitioned by month on ts (partitions samples_YYYYMM, created ahead by the daemons). Join with series, or use the view samples_v.';
COMMENT ON COLUMN portalmetrics.samples.series_id IS 'portalmetrics.series.id.';
COMMENT ON COLUMN portalmetrics.samples.ts IS 'Sample time; for a count per bucket, the start of the bucket.';
COMMENT ON COLUMN portalmetrics.samples.value IS 'The value: for a set series the value at ts, for an add series the sum of the increments at ts.';

CREATE VIEW portalmetrics.samples_v AS
  SELECT s.metric, s.labels, x.ts, x.value
  FROM portalmetrics.samples x
  JOIN portalmetrics.series s ON s.id = x.series_id;
COMMENT ON VIEW portalmetrics.samples_v IS
  'Every sample with its metric and labels: the view analysts query. Filter on metric, labels (e.g. labels @> ''{"clinic":"north"}'') and ts.';
COMMENT ON COLUMN portalmetrics.samples_v.metric IS 'Metric name (see portalmetrics.metrics for kind and unit).';
COMMENT ON COLUMN portalmetrics.samples_v.labels IS 'Labels of the series, a JSON object.';
COMMENT ON COLUMN portalmetrics.samples_v.ts IS 'Sample time; for a count per bucket, the start of the bucket.';
COMMENT ON COLUMN portalmetrics.samples_v.value IS 'Sample value.';

-- The newest sample of each series: one backward probe of the primary
-- key per series (partitions are scanned newest first and stop early).
CREATE VIEW portalmetrics.latest AS
  SELECT s.metric, s.labels, l.ts, l.value
  FROM portalmetrics.series s
  CROSS JOIN LATERAL (
    SELECT x.ts, x.value
    FROM portalmetrics.samples x
    WHERE x.series_id = s.id
    ORDER BY x.ts DESC
    LIMIT 1
  ) l;
COMMENT ON VIEW portalmetrics.latest IS
  'The newest sample of every series that has one.';
COMMENT ON COLUMN portalmetrics.latest.metric IS 'Metric name.';
COMMENT ON COLUMN portalmetrics.latest.labels IS 'Labels of the series, a JSON object.';
COMMENT ON COLUMN portalmetrics.latest.ts IS 'Time of the newest sample.';
COMMENT ON COLUMN portalmetrics.latest.value IS 'Its value.';

-- Partitions. SECURITY DEFINER so that partitions are owned by the schema
-- owner (and readable through its default privileges) whichever role the
-- daemon writes with. Serialised by pg_advisory_xact_lock(8101254868543760756)
-- ('pmpartit'), so daemons starting together do not race.
CREATE FUNCTION portalmetrics.ensure_partition(month date) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET "TimeZone" = 'UTC'
AS $$
DECLARE
  m date := date_trunc('month', month)::date;
  part text := 'samples_' || to_char(m, 'YYYYMM');
  lo timestamptz := m::timestamp AT TIME ZONE 'UTC';
  hi timestamptz := (m + interval '1 month')::timestamp AT TIME ZONE 'UTC';
BEGIN
  IF to_regclass('portalmetrics.' || quote_ident(part)) IS NOT NULL THEN
    RETURN false;
  END IF;
  PERFORM pg_advisory_xact_lock(8101254868543760756);
  IF to_regclass('portalmetrics.' || quote_ident(part)) IS NOT NULL THEN
    RETURN false;
  END IF;
  EXECUTE format(
    'CREATE TABLE IF NOT EXISTS portalmetrics.%I PARTITION OF portalmetrics.samples FOR VALUES FROM (%L) TO (%L)',
    part, lo, hi);
  EXECUTE format('COMMENT ON TABLE portalmetrics.%I IS %L', part,
    'Samples of ' || to_char(m, 'YYYY-MM') || ' (UTC): a partition of portalmetrics.samples.');
  RETURN true;
END
$$;
COMMENT ON FUNCTION portalmetrics.ensure_partition(date) IS
  'Create the samples partition of the month containing the given date (samples_YYYYMM, UTC bounds) if missing. Returns true if it created it.';

CREATE FUNCTION portalmetrics.ensure_partitions(first_month date, last_month date) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET "TimeZone" = 'UTC'
AS $$
DECLARE
  m date := date_trunc('month', first_month)::date;
  n integer := 0;
BEGIN
  WHILE m <= last_month LOOP
    IF portalmetrics.ensure_partition(m) THEN
      n := n + 1;
    END IF;
    m := (m + interval '1 month')::date;
  END LOOP;
  RETURN n;
END
$$;
COMMENT ON FUNCTION portalmetrics.ensure_partitions(date, date) IS
  'Create the missing samples partitions of every month from first_month to last_month. Returns how many it created.';

CREATE FUNCTION portalmetrics.drop_partitions_before(cutoff timestamptz) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET "TimeZone" = 'UTC'
AS $$
DECLARE
  r record;
  hi timestamptz;
  n integer := 0;
BEGIN
  PERFORM pg_advisory_xact_lock(8101254868543760756);
  FOR r IN
    SELECT c.relname
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'portalmetrics.samples'::regclass
      AND c.relname ~ '^samples_[0-9]{6}$'
    ORDER BY c.relname
  LOOP
    hi := (make_date(substr(r.relname, 9, 4)::integer,
                     substr(r.relname, 13, 2)::integer, 1)
           + interval '1 month')::timestamp AT TIME ZONE 'UTC';
    IF hi <= cutoff THEN
      EXECUTE format('DROP TABLE portalmetrics.%I', r.relname);
      n := n + 1;
    END IF;
  END LOOP;
  RETURN n;
END
$$;
COMMENT ON FUNCTION portalmetrics.drop_partitions_before(timestamptz) IS
  'Drop every samples partition whose whole month ends at or before cutoff (retention). Returns how many it dropped.';

-- Privileges. The reader reads everything in the schema, including what
-- later migrations and partitions add; the writer role is what a
-- portalmetricsd login role needs when it is not the schema owner
-- (GRANT portalmetrics_writer TO <daemon role>).
GRANT USAGE ON SCHEMA portalmetrics TO portalmetrics_reader, portalmetrics_writer;
GRANT SELECT ON ALL TABLES IN SCHEMA portalmetrics TO portalmetrics_reader;
ALTER DEFAULT PRIVILEGES IN SCHEMA portalmetrics GRANT SELECT ON TABLES TO portalmetrics_reader;
GRANT SELECT ON portalmetrics.schema_version TO portalmetrics_writer;
GRANT SELECT, INSERT, UPDATE ON portalmetrics.metrics, portalmetrics.series,
  portalmetrics.samples TO portalmetrics_writer;
REVOKE ALL ON FUNCTION portalmetrics.ensure_partition(date),
  portalmetrics.ensure_partitions(date, date),
  portalmetrics.drop_partitions_before(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION portalmetrics.ensure_partition(date),
  portalmetrics.ensure_partitions(date, date),
  portalmetrics.drop_partitions_before(timestamptz) TO portalmetrics_writer;
