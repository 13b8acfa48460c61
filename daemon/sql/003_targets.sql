-- 003_targets: targets and alerts (DESIGN.md "Targets and alerts").
--
-- Targets are written in the daemons' config files; every daemon mirrors
-- its own into this schema with portalmetrics.declare() on connect and
-- after each reload, together with its collectors (whose intervals decide
-- when a metric has gone quiet). The database keeps one namespace of
-- target names: two daemons may declare a target only with the same
-- definition (an HA pair with one config gets one alert, not two), and a
-- target nobody declares any more is retired, never deleted, so that its
-- alert history stays meaningful.
--
-- Everything a target's status depends on is computed here, in SQL, so
-- that the analysts' view portalmetrics.target_status and the daemon that
-- turns it into alerts read one and the same thing: goal_at (the plan for
-- a day), metric_value (a metric as of the end of a local day),
-- target_value, target_trend (what the projection regresses on) and the
-- view itself. The daemon only adds the hysteresis (for, clear_for) and
-- the notifications, recorded in alert_state, alert_events and
-- alert_deliveries.
--
-- Runs in one transaction under the migrations' advisory lock, like every
-- migration; never says BEGIN or COMMIT.
--
-- Citus: none of these tables is distributed (they live on the
-- coordinator, like the advisory locks and LISTEN/NOTIFY the alerts use);
-- no foreign keys at all, so none to samples. The daemon's writes here
-- are single-table statements. Samples are only read, by target_status
-- (a read across shards, like any analyst's query), and each read is one
-- series' key range: metric_value probes the primary key (series_id, ts)
-- per series.

-- ---------------------------------------------------------------------
-- What the daemons run: their collectors, and when each series was last
-- ingested.

CREATE TABLE portalmetrics.collectors (
  name text NOT NULL,
  daemon_id text NOT NULL,
  plugin text NOT NULL,
  interval_s double precision,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (name, daemon_id)
);
COMMENT ON TABLE portalmetrics.collectors IS
  'Every daemon''s collectors, mirrored by the daemon (portalmetrics.declare) on connect and after each reload. A series names its collector in labels->>''collector''; twice that collector''s interval is how long a target waits for new data before its status is nodata.';
COMMENT ON COLUMN portalmetrics.collectors.name IS 'Collector name (the collector label of its series).';
COMMENT ON COLUMN portalmetrics.collectors.daemon_id IS 'daemon.id of the daemon that runs it.';
COMMENT ON COLUMN portalmetrics.collectors.plugin IS 'Plugin the collector runs.';
COMMENT ON COLUMN portalmetrics.collectors.interval_s IS 'Poll interval in seconds; NULL for a listener (it has no interval, so its metrics never go stale by ingest time).';
COMMENT ON COLUMN portalmetrics.collectors.updated_at IS 'When the daemon last mirrored the row.';

CREATE TABLE portalmetrics.series_ingest (
  series_id bigint PRIMARY KEY,
  last_ingest timestamptz NOT NULL
);
COMMENT ON TABLE portalmetrics.series_ingest IS
  'When the writer last shipped a sample of each series: ingest time, not sample ts (a day bucket carries midnight whatever the hour it was counted). Upserted in the writer''s ship transactions, at most every 10 seconds per series, so it may lag by that much.';
COMMENT ON COLUMN portalmetrics.series_ingest.series_id IS 'portalmetrics.series.id.';
COMMENT ON COLUMN portalmetrics.series_ingest.last_ingest IS 'Commit time of the last ship transaction that marked the series (up to 10 s older than the newest one).';

-- ---------------------------------------------------------------------
-- Targets.

-- The typed columns are all derived from definition by declare(), so that
-- analysts filter and join on columns instead of parsing JSON; definition
-- is what daemons compare.
CREATE TABLE portalmetrics.targets (
  name text PRIMARY KEY,
  definition jsonb NOT NULL,
  timezone text NOT NULL,
  title text NOT NULL,
  metric text NOT NULL,
  per text,
  labels jsonb NOT NULL,
  window_days integer NOT NULL,
  direction text NOT NULL CHECK (direction IN ('at_least', 'at_most')),
  goal_kind text NOT NULL CHECK (goal_kind IN ('fixed', 'ramp', 'milestones')),
  goal_dates date[] NOT NULL,
  goal_values double precision[] NOT NULL,
  tolerance double precision NOT NULL,
  fire_for interval NOT NULL,
  clear_for interval NOT NULL,
  stale interval,
  repeat interval,
  lookback_days integer NOT NULL,
  severity text NOT NULL,
  format text NOT NULL CHECK (format IN ('percent', 'number')),
  notify text[] NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  retired_at timestamptz,
  CHECK (cardinality(goal_dates) = cardinality(goal_values) AND cardinality(goal_values) >= 1)
);
COMMENT ON TABLE portalmetrics.targets IS
  'Targets, one row per name (one namespace per database), as the daemons'' configs define them; mirrored by portalmetrics.declare. A target no daemon declares any more is retired (retired_at set), never deleted. Current status: the view portalmetrics.target_status.';
COMMENT ON COLUMN portalmetrics.targets.name IS 'Target name, as in the config.';
COMMENT ON COLUMN portalmetrics.targets.definition IS 'The whole definition as the daemon computed it (canonical JSON, the daemon''s time zone included); every other column but the timestamps is derived from it. Daemons declaring the same name must have equal definitions.';
COMMENT ON COLUMN portalmetrics.targets.timezone IS 'Time zone of the declaring daemon: local days, windows and plan dates are in it.';
COMMENT ON COLUMN portalmetrics.targets.title IS 'Human title used in messages.';
COMMENT ON COLUMN portalmetrics.targets.metric IS 'The metric measured (the numerator of a rate).';
COMMENT ON COLUMN portalmetrics.targets.per IS 'The denominator metric of a rate; NULL when the target is the metric itself.';
COMMENT ON COLUMN portalmetrics.targets.labels IS 'Series selector: the series of metric (and per) whose labels contain these (series.labels @> labels); their values are summed.';
COMMENT ON COLUMN portalmetrics.targets.window_days IS 'For a count: how many whole local days are summed, ending at the local midnight that ends the day measured.';
COMMENT ON COLUMN portalmetrics.targets.direction IS 'at_least: higher is better; at_most: the goal is a ceiling.';
COMMENT ON COLUMN portalmetrics.targets.goal_kind IS 'fixed (one value), ramp (a start point and a due point) or milestones (points sorted by date); between points the plan is interpolated linearly by days (see goal_at).';
COMMENT ON COLUMN portalmetrics.targets.goal_dates IS 'Dates of the goal''s points, ascending; ARRAY[NULL] for a fixed goal. The last one is the due date.';
COMMENT ON COLUMN portalmetrics.targets.goal_values IS 'Values of the goal''s points (a fraction for a rate: 0.6 is 60 %). The last one is the final goal.';
COMMENT ON COLUMN portalmetrics.targets.tolerance IS 'How far past the plan the value may be before the status is behind (same unit as the values).';
COMMENT ON COLUMN portalmetrics.targets.fire_for IS 'Behind for this long before the alert fires (config: for).';
COMMENT ON COLUMN portalmetrics.targets.clear_for IS 'On track for this long before a firing alert resolves.';
COMMENT ON COLUMN portalmetrics.targets.stale IS 'Own staleness threshold: no ingest for this long means nodata. NULL: twice the collectors'' interval.';
COMMENT ON COLUMN portalmetrics.targets.repeat IS 'A firing alert is notified again this often; NULL: never.';
COMMENT ON COLUMN portalmetrics.targets.lookback_days IS 'Days of trend (target_trend) the projection regresses on.';
COMMENT ON COLUMN portalmetrics.targets.severity IS 'info, warning or critical: passed on to notifiers.';
COMMENT ON COLUMN portalmetrics.targets.format IS 'percent (values shown times 100) or number.';
COMMENT ON COLUMN portalmetrics.targets.notify IS 'Names of the notifiers (in the daemons'' configs) that are sent its alerts.';
COMMENT ON COLUMN portalmetrics.targets.created_at IS 'When the target was first declared.';
COMMENT ON COLUMN portalmetrics.targets.updated_at IS 'When its definition last changed.';
COMMENT ON COLUMN portalmetrics.targets.retired_at IS 'When the last daemon stopped declaring it; NULL while declared. A retired target keeps its row and its alert history, and is not in target_status.';

CREATE TABLE portalmetrics.target_declarations (
  target text NOT NULL,
  daemon_id text NOT NULL,
  declared_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (target, daemon_id)
);
COMMENT ON TABLE portalmetrics.target_declarations IS
  'Which daemons declare each target (with the definition in portalmetrics.targets). Maintained by portalmetrics.declare.';
COMMENT ON COLUMN portalmetrics.target_declarations.target IS 'portalmetrics.targets.name.';
COMMENT ON COLUMN portalmetrics.target_declarations.daemon_id IS 'daemon.id of a daemon whose config defines the target.';
COMMENT ON COLUMN portalmetrics.target_declarations.declared_at IS 'When that daemon first declared it (since it last stopped).';

-- ---------------------------------------------------------------------
-- declare(): the daemons' mirror of their config.

-- The typed columns of a target from its definition (see the COMMENT ON
-- COLUMN of portalmetrics.targets). Durations are seconds (reals
-- allowed); a stale or repeat of null or 0 means none, which the config
-- also says with 0. Raises on a definition it cannot read, so a bad one
-- fails the daemon's declare instead of breaking target_status.
CREATE FUNCTION portalmetrics.target_from_definition(name text, definition jsonb)
RETURNS portalmetrics.targets
LANGUAGE plpgsql STABLE
AS $$
DECLARE
  d jsonb := $2;
  t portalmetrics.targets;
  pts jsonb := d->'goal'->'points';
BEGIN
  IF jsonb_typeof(d) IS DISTINCT FROM 'object' THEN
    RAISE EXCEPTION 'target %: the definition is not a JSON object', $1;
  END IF;
  IF jsonb_typeof(pts) IS DISTINCT FROM 'array' OR jsonb_array_length(pts) = 0 THEN
    RAISE EXCEPTION 'target %: goal.points is not a non-empty array', $1;
  END IF;
  t.name := $1;
  t.definition := d;
  t.timezone := d->>'timezone';
  t.title := d->>'title';
  t.metric := d->>'metric';
  t.per := d->>'per';                       -- JSON null -> NULL
  t.labels := coalesce(d->'labels', '{}'::jsonb);
  t.window_days := (d->>'window_days')::integer;
  t.direction := d->>'direction';
  t.goal_kind := d->'goal'->>'kind';
  t.goal_dates := ARRAY(SELECT (p->>'date')::date
                        FROM jsonb_array_elements(pts) WITH ORDINALITY AS e(p, i)
                        ORDER BY i);
  t.goal_values := ARRAY(SELECT (p->>'value')::double precision
                         FROM jsonb_array_elements(pts) WITH ORDINALITY AS e(p, i)
                         ORDER BY i);
  t.tolerance := coalesce((d->>'tolerance')::double precision, 0);
  t.fire_for := make_interval(secs => coalesce((d->>'for_s')::double precision, 0));
  t.clear_for := make_interval(secs => coalesce((d->>'clear_for_s')::double precision, 0));
  t.stale := make_interval(secs => nullif((d->>'stale_s')::double precision, 0));
  t.repeat := make_interval(secs => nullif((d->>'repeat_s')::double precision, 0));
  t.lookback_days := (d->>'lookback_days')::integer;
  t.severity := d->>'severity';
  t.format := d->>'format';
  t.notify := ARRAY(SELECT jsonb_array_elements_text(coalesce(d->'notify', '[]'::jsonb)));
  t.created_at := now();
  t.updated_at := now();
  t.retired_at := NULL;

  -- goal_at needs a fixed goal's one undated point, or dated points in
  -- strictly increasing order.
  IF t.goal_kind = 'fixed' THEN
    IF cardinality(t.goal_dates) <> 1 OR t.goal_dates[1] IS NOT NULL THEN
      RAISE EXCEPTION 'target %: a fixed goal has exactly one point, with date null', $1;
    END IF;
  ELSIF EXISTS (SELECT 1 FROM generate_subscripts(t.goal_dates, 1) AS i
                WHERE t.goal_dates[i] IS NULL
                   OR (i > 1 AND t.goal_dates[i] <= t.goal_dates[i - 1])) THEN
    RAISE EXCEPTION 'target %: goal points need dates in strictly increasing order', $1;
  END IF;
  -- An unknown time zone would make target_status fail for every target.
  IF t.timezone IS NULL THEN
    RAISE EXCEPTION 'target %: the definition has no timezone', $1;
  END IF;
  BEGIN
    PERFORM now() AT TIME ZONE t.timezone;
  EXCEPTION WHEN invalid_parameter_value THEN
    RAISE EXCEPTION 'target %: unknown time zone "%"', $1, t.timezone;
  END;
  RETURN t;
END
$$;
COMMENT ON FUNCTION portalmetrics.target_from_definition(text, jsonb) IS
  'The portalmetrics.targets row (typed columns) of a target definition, as declare() stores it. Raises on a definition it cannot read.';

CREATE FUNCTION portalmetrics.declare(daemon_id text, collectors jsonb, targets jsonb)
RETURNS TABLE (target text, conflict_with text)
LANGUAGE plpgsql
AS $$
-- Column names win over the parameter and output names they share
-- (target, daemon_id); the parameters are read through the aliases.
#variable_conflict use_column
DECLARE
  p_daemon ALIAS FOR $1;
  p_collectors ALIAS FOR $2;
  p_targets ALIAS FOR $3;
  e jsonb;
  tname text;
  def jsonb;
  cur jsonb;
  known boolean;
  others text;
  r portalmetrics.targets;
BEGIN
  -- The declare lock: two daemons declaring at once run one after the
  -- other, each seeing the other's result.
  PERFORM pg_advisory_xact_lock(8101256395400422739);

  IF p_daemon IS NULL OR p_daemon = '' THEN
    RAISE EXCEPTION 'declare: daemon_id is empty';
  END IF;
  IF jsonb_typeof(p_collectors) IS DISTINCT FROM 'array' THEN
    RAISE EXCEPTION 'declare: collectors is not a JSON array';
  END IF;
  IF jsonb_typeof(p_targets) IS DISTINCT FROM 'array' THEN
    RAISE EXCEPTION 'declare: targets is not a JSON array';
  END IF;

  -- This daemon's collectors: exactly the given list.
  DELETE FROM portalmetrics.collectors c WHERE c.daemon_id = p_daemon;
  INSERT INTO portalmetrics.collectors AS c (name, daemon_id, plugin, interval_s)
  SELECT x->>'name', p_daemon, x->>'plugin', (x->>'interval_s')::double precision
  FROM jsonb_array_elements(p_collectors) AS x;

  FOR e IN SELECT x FROM jsonb_array_elements(p_targets) AS x LOOP
    tname := e->>'name';
    def := e->'definition';
    IF tname IS NULL OR def IS NULL THEN
      RAISE EXCEPTION 'declare: a target without name or definition: %', e;
    END IF;
    -- FOR UPDATE: the row cannot change under us (the advisory lock
    -- covers daemons; this also covers a hand-made change).
    SELECT t.definition INTO cur FROM portalmetrics.targets t WHERE t.name = tname FOR UPDATE;
    known := FOUND;

    IF known AND cur IS DISTINCT FROM def THEN
      -- A different definition: refused if any other daemon declares the
      -- target (they keep theirs; this one no longer declares it).
      SELECT string_agg(d.daemon_id, ',' ORDER BY d.daemon_id COLLATE "C") INTO others
      FROM portalmetrics.target_declarations d
      WHERE d.target = tname AND d.daemon_id <> p_daemon;
      IF others IS NOT NULL THEN
        DELETE FROM portalmetrics.target_declarations d
        WHERE d.target = tname AND d.daemon_id = p_daemon;
        target := tname;
        conflict_with := others;
        RETURN NEXT;
        CONTINUE;
      END IF;
    END IF;

    IF NOT known OR cur IS DISTINCT FROM def THEN
      -- New, or changed and declared by nobody else: (re)write the row.
      r := portalmetrics.target_from_definition(tname, def);
      INSERT INTO portalmetrics.targets AS t
      SELECT (r).*
      ON CONFLICT (name) DO UPDATE SET
        definition = EXCLUDED.definition, timezone = EXCLUDED.timezone,
        title = EXCLUDED.title, metric = EXCLUDED.metric, per = EXCLUDED.per,
        labels = EXCLUDED.labels, window_days = EXCLUDED.window_days,
        direction = EXCLUDED.direction, goal_kind = EXCLUDED.goal_kind,
        goal_dates = EXCLUDED.goal_dates, goal_values = EXCLUDED.goal_values,
        tolerance = EXCLUDED.tolerance, fire_for = EXCLUDED.fire_for,
        clear_for = EXCLUDED.clear_for, stale = EXCLUDED.stale,
        repeat = EXCLUDED.repeat, lookback_days = EXCLUDED.lookback_days,
        severity = EXCLUDED.severity, format = EXCLUDED.format,
        notify = EXCLUDED.notify, updated_at = now(), retired_at = NULL;
    ELSE
      -- The same definition: only un-retire it (when it was retired).
      UPDATE portalmetrics.targets t SET retired_at = NULL
      WHERE t.name = tname AND t.retired_at IS NOT NULL;
    END IF;

    INSERT INTO portalmetrics.target_declarations AS d (target, daemon_id)
    VALUES (tname, p_daemon)
    ON CONFLICT DO NOTHING;
  END LOOP;

  -- Targets this daemon no longer has.
  DELETE FROM portalmetrics.target_declarations d
  WHERE d.daemon_id = p_daemon
    AND d.target NOT IN (SELECT x->>'name' FROM jsonb_array_elements(p_targets) AS x);

  -- Retire what nobody declares any more. Checked for every target, not
  -- only this daemon's: whichever daemon declares next tidies up. (The
  -- declarations of a daemon taken out of service stay until it, or an
  -- operator, declares an empty list for it: declare('<id>', '[]', '[]').)
  UPDATE portalmetrics.targets t SET retired_at = now()
  WHERE t.retired_at IS NULL
    AND NOT EXISTS (SELECT 1 FROM portalmetrics.target_declarations d WHERE d.target = t.name);
END
$$;
COMMENT ON FUNCTION portalmetrics.declare(text, jsonb, jsonb) IS
  'Called by each daemon on connect and after each reload, in its own transaction (serialised by pg_advisory_xact_lock(8101256395400422739)): replaces the daemon''s collectors; declares its targets (collectors: [{"name","plugin","interval_s"}], targets: [{"name","definition"}]); drops its other declarations; retires targets nobody declares. A target whose definition differs from the one in the table is refused when another daemon declares it: one row (target, conflict_with = the other daemon ids, sorted, comma-separated) each; else it is updated. Returns only the refusals.';

-- ---------------------------------------------------------------------
-- The plan, and a metric's value for a local day.

CREATE FUNCTION portalmetrics.goal_at(dates date[], vals double precision[], d date)
RETURNS double precision
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
  n integer := cardinality(vals);
BEGIN
  IF n IS NULL OR n = 0 THEN
    RETURN NULL;
  END IF;
  IF dates[1] IS NULL THEN
    RETURN vals[1];                 -- fixed: the same every day
  END IF;
  IF d IS NULL OR d < dates[1] THEN
    RETURN NULL;                    -- the plan has not begun
  END IF;
  IF d >= dates[n] THEN
    RETURN vals[n];                 -- due (or past it): the final goal
  END IF;
  FOR i IN 2 .. n LOOP
    IF d = dates[i] THEN
      RETURN vals[i];               -- exactly, not through the division
    END IF;
    IF d < dates[i] THEN
      RETURN vals[i - 1] + (vals[i] - vals[i - 1])
             * (d - dates[i - 1])::double precision / (dates[i] - dates[i - 1]);
    END IF;
  END LOOP;
  RETURN vals[n];                   -- not reached (dates sorted)
END
$$;
COMMENT ON FUNCTION portalmetrics.goal_at(date[], double precision[], date) IS
  'The plan for day d: a fixed goal''s value; else NULL before the first point''s date (not begun), the last value on or after the last date, and in between the linear interpolation by days between the two surrounding points.';

CREATE FUNCTION portalmetrics.metric_kind(metric text)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT coalesce((SELECT m.kind FROM portalmetrics.metrics m WHERE m.metric = $1), 'gauge')
$$;
COMMENT ON FUNCTION portalmetrics.metric_kind(text) IS
  'gauge or count, from portalmetrics.metrics; gauge when the metric is not in the catalog (never sum what you do not know to be a count).';

-- Series are found first (series has (metric, labels) unique, so an
-- index on metric), then samples are read one series at a time through
-- the primary key (series_id, ts): a range scan for a count, one backward
-- probe for a gauge. Never a scan of samples by time alone; each probe
-- stays within one series (one shard under Citus).
CREATE FUNCTION portalmetrics.metric_value(metric text, labels jsonb, window_days integer, tz text, day date)
RETURNS double precision
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
AS $$
DECLARE
  -- The end of local day `day`: the local midnight that starts day + 1
  -- (so a day is 23 or 25 hours long across a DST change).
  hi timestamptz := (day + 1)::timestamp AT TIME ZONE tz;
  lo timestamptz;
  nseries bigint;
  v double precision;
BEGIN
  IF portalmetrics.metric_kind(metric_value.metric) = 'count' THEN
    -- window_days whole local days ending at hi.
    lo := (day - window_days + 1)::timestamp AT TIME ZONE tz;
    SELECT count(*), sum(w.total) INTO nseries, v
    FROM portalmetrics.series s
    CROSS JOIN LATERAL (
      SELECT sum(x.value) AS total
      FROM portalmetrics.samples x
      WHERE x.series_id = s.id AND x.ts >= lo AND x.ts < hi
    ) w
    WHERE s.metric = metric_value.metric AND s.labels @> metric_value.labels;
    IF nseries = 0 THEN
      RETURN NULL;                  -- nothing to count: unknown, not 0
    END IF;
    RETURN coalesce(v, 0);          -- series, but no events in the window
  END IF;

  -- A gauge: each series' newest value before hi, summed across series.
  SELECT sum(l.value) INTO v
  FROM portalmetrics.series s
  CROSS JOIN LATERAL (
    SELECT x.value
    FROM portalmetrics.samples x
    WHERE x.series_id = s.id AND x.ts < hi
    ORDER BY x.ts DESC
    LIMIT 1
  ) l
  WHERE s.metric = metric_value.metric AND s.labels @> metric_value.labels;
  RETURN v;
END
$$;
COMMENT ON FUNCTION portalmetrics.metric_value(text, jsonb, integer, text, date) IS
  'A metric as of the end of local day `day` in time zone tz, over the series with that metric whose labels contain `labels`. count: the sum of the samples with (day - window_days + 1)::timestamp AT TIME ZONE tz <= ts < (day + 1)::timestamp AT TIME ZONE tz (whole local days, 23/25 hours across DST), 0 when no sample falls there, NULL when no series matches. gauge (or not in the catalog): the sum over the series of each one''s newest sample before that end; NULL when none has one.';

CREATE FUNCTION portalmetrics.metric_last_ingest(metric text, labels jsonb)
RETURNS timestamptz
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$
  SELECT max(i.last_ingest)
  FROM portalmetrics.series s
  JOIN portalmetrics.series_ingest i ON i.series_id = s.id
  WHERE s.metric = $1 AND s.labels @> $2
$$;
COMMENT ON FUNCTION portalmetrics.metric_last_ingest(text, jsonb) IS
  'When a sample of the matching series was last shipped (max series_ingest.last_ingest); NULL if never.';

CREATE FUNCTION portalmetrics.metric_stale_after(metric text, labels jsonb)
RETURNS interval
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$
  -- Any daemon's collector of that name: an HA pair runs the same ones.
  SELECT make_interval(secs => 2 * max(c.interval_s))
  FROM portalmetrics.collectors c
  WHERE c.name IN (SELECT s.labels->>'collector'
                   FROM portalmetrics.series s
                   WHERE s.metric = $1 AND s.labels @> $2)
$$;
COMMENT ON FUNCTION portalmetrics.metric_stale_after(text, jsonb) IS
  'Twice the longest poll interval of the collectors that write the matching series (by their collector label, any daemon): how long without an ingest before the metric is stale. NULL when no such collector is known or all are listeners.';

-- ---------------------------------------------------------------------
-- A target's value, trend and status.

CREATE FUNCTION portalmetrics.target_value(t portalmetrics.targets, day date)
RETURNS double precision
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
  n double precision;
  d double precision;
BEGIN
  n := portalmetrics.metric_value(t.metric, t.labels, t.window_days, t.timezone, day);
  IF t.per IS NULL OR n IS NULL THEN
    RETURN n;
  END IF;
  d := portalmetrics.metric_value(t.per, t.labels, t.window_days, t.timezone, day);
  IF d IS NULL OR d = 0 THEN
    RETURN NULL;                    -- a rate of nothing is unknown
  END IF;
  RETURN n / d;
END
$$;
COMMENT ON FUNCTION portalmetrics.target_value(portalmetrics.targets, date) IS
  'The target''s value as of the end of local day `day`: metric_value of metric, divided by metric_value of per when per is set (NULL when that is NULL or 0). Usage: SELECT portalmetrics.target_value(t, ''2026-11-24'') FROM portalmetrics.targets t WHERE name = ''enrollment''.';

-- The value target_status shows as actual on local day `today`. A count's
-- window ends at today's local midnight (yesterday's end): a window still
-- filling up would make a rate dip every morning. A gauge is read as of
-- now (today's end). For a rate each side follows its own kind.
CREATE FUNCTION portalmetrics.target_actual(t portalmetrics.targets, today date)
RETURNS double precision
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
  n double precision;
  d double precision;
BEGIN
  n := portalmetrics.metric_value(t.metric, t.labels, t.window_days, t.timezone,
         CASE portalmetrics.metric_kind(t.metric) WHEN 'count' THEN today - 1 ELSE today END);
  IF t.per IS NULL OR n IS NULL THEN
    RETURN n;
  END IF;
  d := portalmetrics.metric_value(t.per, t.labels, t.window_days, t.timezone,
         CASE portalmetrics.metric_kind(t.per) WHEN 'count' THEN today - 1 ELSE today END);
  IF d IS NULL OR d = 0 THEN
    RETURN NULL;
  END IF;
  RETURN n / d;
END
$$;
COMMENT ON FUNCTION portalmetrics.target_actual(portalmetrics.targets, date) IS
  'target_status.actual for local day `today`: like target_value, but a count side is read for today - 1 (its window ends at today''s local midnight) and a gauge side for today (the newest values).';

CREATE FUNCTION portalmetrics.target_trend(target text)
RETURNS TABLE (day date, value double precision)
LANGUAGE sql STABLE
AS $$
  SELECT v.day, v.value
  FROM portalmetrics.targets t
  CROSS JOIN LATERAL generate_series(t.lookback_days, 1, -1) AS k
  CROSS JOIN LATERAL (
    SELECT (now() AT TIME ZONE t.timezone)::date - k AS day,
           portalmetrics.target_value(t, (now() AT TIME ZONE t.timezone)::date - k) AS value
    OFFSET 0                        -- a fence: target_value once per day
  ) v
  WHERE t.name = $1 AND v.value IS NOT NULL
  ORDER BY v.day
$$;
COMMENT ON FUNCTION portalmetrics.target_trend(text) IS
  'The target''s daily values (target_value) for the local days today - lookback_days .. today - 1 (today in the target''s time zone), days without a value omitted: what target_status.projected_date regresses on. SELECT * FROM portalmetrics.target_trend(''enrollment'').';

-- The status of every declared target, computed in its own time zone.
-- Each expensive part runs once per target: the values in the fenced
-- LATERAL `a` (OFFSET 0 keeps the planner from copying the function calls
-- into every expression that uses them), the trend in the aggregate
-- LATERAL `r`. The remaining LATERALs only name intermediate results.
CREATE VIEW portalmetrics.target_status AS
SELECT
  t.name AS target,
  t.title,
  t.metric,
  t.per,
  t.labels,
  t.timezone,
  t.direction,
  t.severity,
  t.format,
  p.plan_date,
  a.actual,
  a.expected,
  a.actual - a.expected AS gap,
  t.tolerance,
  s.status,
  a.goal_value,
  a.due,
  f.projected_date,
  l.late,
  CASE WHEN l.late AND f.projected_date IS NOT NULL THEN f.projected_date - a.due END AS days_late,
  b.last_ingest,
  now() AS evaluated_at
FROM portalmetrics.targets t
CROSS JOIN LATERAL (SELECT (now() AT TIME ZONE t.timezone)::date AS plan_date) p
CROSS JOIN LATERAL (
  SELECT portalmetrics.target_actual(t, p.plan_date) AS actual,
         portalmetrics.goal_at(t.goal_dates, t.goal_values, p.plan_date) AS expected,
         t.goal_values[cardinality(t.goal_values)] AS goal_value,
         t.goal_dates[cardinality(t.goal_dates)] AS due,
         portalmetrics.metric_stale_after(t.metric, t.labels) AS stale_metric,
         portalmetrics.metric_stale_after(t.per, t.labels) AS stale_per,
         portalmetrics.metric_last_ingest(t.metric, t.labels) AS ingest_metric,
         portalmetrics.metric_last_ingest(t.per, t.labels) AS ingest_per
  OFFSET 0
) a
CROSS JOIN LATERAL (
  SELECT
    -- The target's own stale, else twice the slowest collector's interval
    -- of either side; NULL: never stale (listeners only, or unknown).
    coalesce(t.stale, greatest(a.stale_metric, a.stale_per)) AS threshold,
    -- A rate is as fresh as its staler side; a side never ingested makes
    -- it never ingested.
    CASE WHEN t.per IS NULL THEN a.ingest_metric
         WHEN a.ingest_metric IS NULL OR a.ingest_per IS NULL THEN NULL
         ELSE least(a.ingest_metric, a.ingest_per) END AS last_ingest,
    CASE WHEN t.direction = 'at_most' THEN a.actual <= a.goal_value
         ELSE a.actual >= a.goal_value END AS meets_goal
) b
CROSS JOIN LATERAL (
  SELECT CASE
    WHEN a.actual IS NULL THEN 'nodata'
    -- The writer marks series_ingest at most every 10 seconds per series,
    -- so last_ingest may be up to 10 s older than the newest ingest: that
    -- much more is allowed before calling it stale.
    WHEN b.threshold IS NOT NULL
         AND (b.last_ingest IS NULL OR b.last_ingest < now() - b.threshold - interval '10 seconds')
      THEN 'nodata'
    WHEN a.expected IS NULL THEN 'on_track'      -- the plan has not begun
    WHEN t.direction = 'at_least' AND a.actual < a.expected - t.tolerance THEN 'behind'
    WHEN t.direction = 'at_most' AND a.actual > a.expected + t.tolerance THEN 'behind'
    ELSE 'on_track'
  END AS status
) s
CROSS JOIN LATERAL (
  -- Least squares over the trend, x = days from plan_date (small numbers
  -- keep the intercept precise), y = value.
  SELECT count(*) AS points,
         regr_slope(tr.value, (tr.day - p.plan_date)::double precision) AS slope,
         regr_intercept(tr.value, (tr.day - p.plan_date)::double precision) AS intercept
  FROM portalmetrics.target_trend(t.name) tr
) r
CROSS JOIN LATERAL (
  -- Where the line crosses the final goal, in days from plan_date.
  SELECT (a.goal_value - r.intercept) / nullif(r.slope, 0) AS x
) c
CROSS JOIN LATERAL (
  SELECT CASE
    WHEN b.meets_goal THEN p.plan_date                  -- already there
    WHEN r.points < 3 OR r.slope IS NULL OR r.slope = 0 THEN NULL
    WHEN t.direction = 'at_least' AND r.slope < 0 THEN NULL   -- moving away
    WHEN t.direction = 'at_most' AND r.slope > 0 THEN NULL
    -- Not within a million days (a slope of rounding noise): never.
    WHEN c.x > 1e6 THEN NULL
    WHEN c.x <= 0 THEN p.plan_date                      -- never before today
    -- The first whole day on or after the crossing. The 1e-6 day (< 0.1 s)
    -- absorbs rounding: a line that reaches the goal exactly on a day
    -- (x = 22.000000000004) is projected to that day, not the next.
    ELSE p.plan_date + ceil(c.x - 1e-6)::integer
  END AS projected_date
) f
CROSS JOIN LATERAL (
  SELECT coalesce(
    a.due IS NOT NULL AND s.status <> 'nodata' AND NOT b.meets_goal
    AND ((f.projected_date IS NULL AND r.points >= 3) OR f.projected_date > a.due),
    false) AS late
) l
WHERE t.retired_at IS NULL;

COMMENT ON VIEW portalmetrics.target_status IS
  'Every declared (not retired) target''s status right now, computed in its own time zone: the value (actual) against the plan (expected), on_track/behind/nodata, and the least-squares projection of when the final goal is reached (projected_date, late). The alert leader reads it every alerts.interval; analysts may query it any time (it reads samples, so filter on target when you need only one).';
COMMENT ON COLUMN portalmetrics.target_status.target IS 'Target name.';
COMMENT ON COLUMN portalmetrics.target_status.title IS 'Human title.';
COMMENT ON COLUMN portalmetrics.target_status.metric IS 'Metric measured (numerator of a rate).';
COMMENT ON COLUMN portalmetrics.target_status.per IS 'Denominator metric, or NULL.';
COMMENT ON COLUMN portalmetrics.target_status.labels IS 'Series selector (series.labels @> labels).';
COMMENT ON COLUMN portalmetrics.target_status.timezone IS 'Time zone of the local days.';
COMMENT ON COLUMN portalmetrics.target_status.direction IS 'at_least or at_most.';
COMMENT ON COLUMN portalmetrics.target_status.severity IS 'info, warning or critical.';
COMMENT ON COLUMN portalmetrics.target_status.format IS 'percent or number: how to show values.';
COMMENT ON COLUMN portalmetrics.target_status.plan_date IS 'Today in the target''s time zone: the day the plan is read for.';
COMMENT ON COLUMN portalmetrics.target_status.actual IS 'The value now: target_actual(t, plan_date). A count is summed over window_days whole local days ending at today''s local midnight (so it does not dip every morning); a gauge is the newest value of each matching series, summed. With per, each side by its own kind, divided; NULL when the denominator is NULL or 0.';
COMMENT ON COLUMN portalmetrics.target_status.expected IS 'The plan for plan_date: goal_at(goal_dates, goal_values, plan_date); NULL before the first point.';
COMMENT ON COLUMN portalmetrics.target_status.gap IS 'actual - expected (negative is behind for at_least).';
COMMENT ON COLUMN portalmetrics.target_status.tolerance IS 'How far past expected actual may be before behind.';
COMMENT ON COLUMN portalmetrics.target_status.status IS 'nodata: actual is NULL, or last_ingest is NULL or older than now() - threshold - 10 s, threshold being the target''s stale, else twice the collectors'' longest interval (NULL threshold: never stale); on_track when expected is NULL; behind when actual < expected - tolerance (at_least) or actual > expected + tolerance (at_most); else on_track.';
COMMENT ON COLUMN portalmetrics.target_status.goal_value IS 'The final goal: the last point''s value.';
COMMENT ON COLUMN portalmetrics.target_status.due IS 'The last point''s date (when the final goal is due); NULL for a fixed goal.';
COMMENT ON COLUMN portalmetrics.target_status.projected_date IS 'When the trend reaches goal_value: plan_date if actual already meets it; else the line fitted by least squares (regr_slope/regr_intercept) to target_trend with x = days, needing 3 points or more, gives the first day on or after plan_date where it is >= goal_value (at_least) or <= goal_value (at_most). NULL when the line is flat or moves away from the goal, or with fewer than 3 points.';
COMMENT ON COLUMN portalmetrics.target_status.late IS 'due is set, status is not nodata, actual does not meet goal_value, and the projection misses due (projected_date > due, or no projected_date from 3 or more trend points). False when unknown (fewer than 3 points).';
COMMENT ON COLUMN portalmetrics.target_status.days_late IS 'projected_date - due when late and projected_date is known; else NULL.';
COMMENT ON COLUMN portalmetrics.target_status.last_ingest IS 'When the measured series last received data (metric_last_ingest; for a rate the older of the two sides, NULL if either side never did).';
COMMENT ON COLUMN portalmetrics.target_status.evaluated_at IS 'now(): the transaction time the row was computed at.';

-- ---------------------------------------------------------------------
-- Alerts: the leader's memory, its events, and the notifiers' outbox.

CREATE TABLE portalmetrics.alert_state (
  target text PRIMARY KEY,
  state text NOT NULL CHECK (state IN ('ok', 'pending', 'firing', 'resolved', 'nodata')),
  since timestamptz NOT NULL,
  cond_since timestamptz,
  late boolean NOT NULL DEFAULT false,
  late_cond_since timestamptz,
  notified_at timestamptz,
  version bigint NOT NULL DEFAULT 1,
  updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE portalmetrics.alert_state IS
  'One row per target that has been evaluated: its alert state, so that a restart or a new leader neither re-fires nor forgets. Written by the alert leader only, each change fenced on version. Rows of retired targets stay.';
COMMENT ON COLUMN portalmetrics.alert_state.target IS 'portalmetrics.targets.name.';
COMMENT ON COLUMN portalmetrics.alert_state.state IS 'ok, pending (behind, waiting out fire_for), firing, resolved (back on track for clear_for) or nodata.';
COMMENT ON COLUMN portalmetrics.alert_state.since IS 'When the state was entered.';
COMMENT ON COLUMN portalmetrics.alert_state.cond_since IS 'pending: when behind began; firing: when on track began (NULL while still behind).';
COMMENT ON COLUMN portalmetrics.alert_state.late IS 'The late flag (target_status.late with the same hysteresis as the state).';
COMMENT ON COLUMN portalmetrics.alert_state.late_cond_since IS 'When target_status.late began to disagree with the flag; NULL while it agrees.';
COMMENT ON COLUMN portalmetrics.alert_state.notified_at IS 'Firing: when it was last notified (for repeat).';
COMMENT ON COLUMN portalmetrics.alert_state.version IS 'Incremented on each change; a leader writes only over the version it read.';
COMMENT ON COLUMN portalmetrics.alert_state.updated_at IS 'When the row last changed.';

CREATE TABLE portalmetrics.alert_events (
  event_id bigserial PRIMARY KEY,
  target text NOT NULL,
  kind text NOT NULL CHECK (kind IN ('state', 'late', 'late_cleared', 'repeat')),
  from_state text NOT NULL,
  to_state text NOT NULL,
  severity text NOT NULL,
  status text NOT NULL,
  actual double precision,
  expected double precision,
  projected_date date,
  late boolean NOT NULL,
  at timestamptz NOT NULL DEFAULT now(),
  message text NOT NULL,
  notify boolean NOT NULL,
  daemon_id text NOT NULL,
  body jsonb,
  delivered_at timestamptz
);
CREATE INDEX alert_events_target_at ON portalmetrics.alert_events (target, at);
COMMENT ON TABLE portalmetrics.alert_events IS
  'Alert history, one row per event (a state change, the late flag turning on or off, a repeat while firing), and the notifiers'' outbox. The leader inserts an event, its alert_deliveries and sends NOTIFY portalmetrics_alerts in one transaction; the payload is JSON {"event_id":"<id as a string>","target":"..","kind":"..","from":"..","to":".."} (read the row for the rest). LISTEN portalmetrics_alerts to follow alerts live.';
COMMENT ON COLUMN portalmetrics.alert_events.event_id IS 'Event id, increasing; notifiers put it in every message so a receiver can drop a repeat delivery.';
COMMENT ON COLUMN portalmetrics.alert_events.target IS 'portalmetrics.targets.name.';
COMMENT ON COLUMN portalmetrics.alert_events.kind IS 'state (a transition), late (the late flag turned on), late_cleared (turned off), repeat (still firing, repeat after the last notice).';
COMMENT ON COLUMN portalmetrics.alert_events.from_state IS 'State before (for late, late_cleared and repeat: the current state).';
COMMENT ON COLUMN portalmetrics.alert_events.to_state IS 'State after.';
COMMENT ON COLUMN portalmetrics.alert_events.severity IS 'The target''s severity at the time.';
COMMENT ON COLUMN portalmetrics.alert_events.status IS 'target_status.status at the time: on_track, behind or nodata.';
COMMENT ON COLUMN portalmetrics.alert_events.actual IS 'target_status.actual at the time.';
COMMENT ON COLUMN portalmetrics.alert_events.expected IS 'target_status.expected at the time.';
COMMENT ON COLUMN portalmetrics.alert_events.projected_date IS 'target_status.projected_date at the time.';
COMMENT ON COLUMN portalmetrics.alert_events.late IS 'target_status.late at the time.';
COMMENT ON COLUMN portalmetrics.alert_events.at IS 'When the event was recorded.';
COMMENT ON COLUMN portalmetrics.alert_events.message IS 'The sentence notifiers send.';
COMMENT ON COLUMN portalmetrics.alert_events.notify IS 'Whether notifiers send it (transitions into pending, pending -> ok and nodata -> pending are recorded only).';
COMMENT ON COLUMN portalmetrics.alert_events.daemon_id IS 'daemon.id of the leader that recorded it.';
COMMENT ON COLUMN portalmetrics.alert_events.body IS 'The JSON body notifiers send (webhook body, exec stdin), without event_id (that is the column).';
COMMENT ON COLUMN portalmetrics.alert_events.delivered_at IS 'When every notifier had delivered it (at once when there is nothing to deliver); NULL while some delivery is pending or was abandoned.';

CREATE TABLE portalmetrics.alert_deliveries (
  event_id bigint NOT NULL,
  notifier text NOT NULL,
  attempts integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  last_error text,
  delivered_at timestamptz,
  abandoned_at timestamptz,
  PRIMARY KEY (event_id, notifier)
);
-- The outbox: what is still to deliver, per notifier in event order.
CREATE INDEX alert_deliveries_outbox ON portalmetrics.alert_deliveries (notifier, event_id)
  WHERE delivered_at IS NULL AND abandoned_at IS NULL;
COMMENT ON TABLE portalmetrics.alert_deliveries IS
  'One row per notified event and notifier: the outbox the alert leader delivers from, at least once, one event at a time per notifier in event order, retrying with backoff until delivered or given up.';
COMMENT ON COLUMN portalmetrics.alert_deliveries.event_id IS 'portalmetrics.alert_events.event_id.';
COMMENT ON COLUMN portalmetrics.alert_deliveries.notifier IS 'Notifier name (in the daemons'' configs).';
COMMENT ON COLUMN portalmetrics.alert_deliveries.attempts IS 'Attempts so far.';
COMMENT ON COLUMN portalmetrics.alert_deliveries.next_attempt_at IS 'Not retried before this.';
COMMENT ON COLUMN portalmetrics.alert_deliveries.last_error IS 'Why the last attempt failed; NULL after a success.';
COMMENT ON COLUMN portalmetrics.alert_deliveries.delivered_at IS 'When it was delivered; NULL while not.';
COMMENT ON COLUMN portalmetrics.alert_deliveries.abandoned_at IS 'When the notifier gave up on it (give_up after the event); NULL while still tried or once delivered.';

-- ---------------------------------------------------------------------
-- Privileges. Functions are executable by PUBLIC (the default); none is
-- SECURITY DEFINER, so each reads with the caller's rights: the reader
-- and the writer can both read everything target_status reads.

GRANT SELECT ON portalmetrics.collectors, portalmetrics.series_ingest,
  portalmetrics.targets, portalmetrics.target_declarations,
  portalmetrics.target_status, portalmetrics.alert_state,
  portalmetrics.alert_events, portalmetrics.alert_deliveries
  TO portalmetrics_reader;
GRANT SELECT, INSERT, UPDATE, DELETE ON portalmetrics.collectors,
  portalmetrics.target_declarations TO portalmetrics_writer;
GRANT SELECT, INSERT, UPDATE ON portalmetrics.series_ingest,
  portalmetrics.targets, portalmetrics.alert_state,
  portalmetrics.alert_events, portalmetrics.alert_deliveries
  TO portalmetrics_writer;
GRANT SELECT ON portalmetrics.target_status TO portalmetrics_writer;
GRANT USAGE ON SEQUENCE portalmetrics.alert_events_event_id_seq TO portalmetrics_writer;
