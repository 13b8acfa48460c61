-- Helpers of the targets SQL tests (test_targets_sql.sh loads this file
-- into the template database each test file's database is copied from).
-- Each assertion raises 'WHAT: expected X, got Y', which stops psql
-- (ON_ERROR_STOP) and fails the test with that message.

CREATE SCHEMA test;

-- got IS NOT DISTINCT FROM want (NULL equals NULL).
CREATE FUNCTION test.eq(what text, got anycompatible, want anycompatible)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF got IS DISTINCT FROM want THEN
    RAISE EXCEPTION '%: expected %, got %', what,
      coalesce(want::text, 'NULL'), coalesce(got::text, 'NULL');
  END IF;
END
$$;

-- |got - want| <= eps (both non-NULL).
CREATE FUNCTION test.near(what text, got double precision, want double precision,
                          eps double precision DEFAULT 1e-12)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF got IS NULL OR want IS NULL OR abs(got - want) > eps THEN
    RAISE EXCEPTION '%: expected % (within %), got %', what,
      coalesce(want::text, 'NULL'), eps, coalesce(got::text, 'NULL');
  END IF;
END
$$;

-- A catalog entry, a series, a sample.
CREATE FUNCTION test.metric(metric text, kind text) RETURNS void
LANGUAGE sql AS $$
  INSERT INTO portalmetrics.metrics (metric, kind, unit, description)
  VALUES ($1, $2, '1', 'test metric')
$$;
CREATE FUNCTION test.series(id bigint, metric text, labels jsonb) RETURNS void
LANGUAGE sql AS $$
  INSERT INTO portalmetrics.series (id, metric, labels, kind) VALUES ($1, $2, $3, 'set')
$$;
CREATE FUNCTION test.sample(series_id bigint, ts timestamptz, value double precision)
RETURNS void LANGUAGE sql AS $$
  INSERT INTO portalmetrics.samples (series_id, ts, value) VALUES ($1, $2, $3)
$$;

-- Local midnight starting day d in time zone tz.
CREATE FUNCTION test.midnight(d date, tz text) RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$ SELECT $1::timestamp AT TIME ZONE $2 $$;

-- A goal JSON object.
CREATE FUNCTION test.fixed(v double precision) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
  SELECT jsonb_build_object('kind', 'fixed', 'points',
    jsonb_build_array(jsonb_build_object('date', NULL, 'value', $1)))
$$;
CREATE FUNCTION test.ramp(d1 date, v1 double precision, d2 date, v2 double precision)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT jsonb_build_object('kind', 'ramp', 'points', jsonb_build_array(
    jsonb_build_object('date', $1, 'value', $2),
    jsonb_build_object('date', $3, 'value', $4)))
$$;

-- A full definition: these defaults overridden by the keys of `over`.
CREATE FUNCTION test.def(over jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
  SELECT '{"title":"t","metric":"m","per":null,"labels":{},"window_days":7,
           "direction":"at_least","goal":{"kind":"fixed","points":[{"date":null,"value":0.5}]},
           "tolerance":0,"for_s":0,"clear_for_s":0,"stale_s":null,"repeat_s":null,
           "lookback_days":28,"severity":"warning","format":"number","notify":[],
           "timezone":"UTC"}'::jsonb || $1
$$;

-- Declare target `name` (definition test.def(over)) as the only target of
-- daemon 'test-<name>', so test targets do not retire one another.
CREATE FUNCTION test.target(name text, over jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  c text;
BEGIN
  SELECT string_agg(d.target || ' vs ' || d.conflict_with, '; ') INTO c
  FROM portalmetrics.declare('test-' || name, '[]',
         jsonb_build_array(jsonb_build_object('name', name, 'definition', test.def(over)))) d;
  IF c IS NOT NULL THEN
    RAISE EXCEPTION 'declaring test target %: conflict %', name, c;
  END IF;
END
$$;

-- One row of target_status.
CREATE FUNCTION test.status(name text) RETURNS portalmetrics.target_status
LANGUAGE sql AS $$
  SELECT s FROM portalmetrics.target_status s WHERE s.target = $1
$$;
