-- What the roles may do: a daemon login in portalmetrics_writer declares,
-- marks ingest, reads target_status and records alerts as alerter.c and
-- the writer do; an analyst in portalmetrics_reader reads everything and
-- writes nothing. (Roles are cluster-wide: this cluster is the test's own.)

CREATE ROLE test_daemon LOGIN IN ROLE portalmetrics_writer;
CREATE ROLE test_analyst LOGIN IN ROLE portalmetrics_reader;
GRANT USAGE ON SCHEMA test TO test_daemon, test_analyst;   -- the assertions

SELECT portalmetrics.ensure_partitions((now() - interval '40 days')::date, (now() + interval '40 days')::date);
SELECT test.metric('p.level', 'gauge');
SELECT test.series(300, 'p.level', '{"collector":"pc"}');
SELECT test.sample(300, test.midnight((now() AT TIME ZONE 'UTC')::date - k, 'UTC'), 0.5 + 0.01 * k) FROM generate_series(0, 10) k;

SET ROLE test_daemon;
SELECT test.eq('writer: declare', (SELECT count(*) FROM portalmetrics.declare('w1',
  '[{"name":"pc","plugin":"demo","interval_s":10}]',
  jsonb_build_array(jsonb_build_object('name', 'p', 'definition', test.def('{"metric":"p.level"}'))))), 0::bigint);
SELECT test.eq('writer: declare a change', (SELECT count(*) FROM portalmetrics.declare('w1',
  '[{"name":"pc","plugin":"demo","interval_s":20}]',
  jsonb_build_array(jsonb_build_object('name', 'p', 'definition', test.def('{"metric":"p.level","tolerance":0.1}'))))), 0::bigint);
SELECT test.eq('writer: declare a drop (retire)', (SELECT count(*) FROM portalmetrics.declare('w2', '[]',
  jsonb_build_array(jsonb_build_object('name', 'q', 'definition', test.def('{}'))))), 0::bigint);
SELECT test.eq('writer: declare a drop (retire)', (SELECT count(*) FROM portalmetrics.declare('w2', '[]', '[]')), 0::bigint);
-- the writer's mark, as writer.c sends it
INSERT INTO portalmetrics.series_ingest (series_id, last_ingest) SELECT unnest('{300}'::bigint[]), now()
  ON CONFLICT (series_id) DO UPDATE SET last_ingest = EXCLUDED.last_ingest;
INSERT INTO portalmetrics.series_ingest (series_id, last_ingest) SELECT unnest('{300}'::bigint[]), now()
  ON CONFLICT (series_id) DO UPDATE SET last_ingest = EXCLUDED.last_ingest;
SELECT test.eq('writer: target_status', (SELECT status FROM portalmetrics.target_status WHERE target = 'p'), 'on_track');
SELECT test.eq('writer: target_status late', (SELECT late FROM portalmetrics.target_status WHERE target = 'p'), false);
-- an alert transition, its event, delivery and notification
INSERT INTO portalmetrics.alert_state AS a (target, state, since) VALUES ('p', 'ok', now())
  ON CONFLICT (target) DO UPDATE SET state = EXCLUDED.state, version = a.version + 1;
INSERT INTO portalmetrics.alert_state AS a (target, state, since) VALUES ('p', 'firing', now())
  ON CONFLICT (target) DO UPDATE SET state = EXCLUDED.state, version = a.version + 1 WHERE a.version = 1;
WITH ev AS (
  INSERT INTO portalmetrics.alert_events (target, kind, from_state, to_state, severity, status,
    actual, expected, projected_date, late, message, notify, daemon_id, body)
  VALUES ('p', 'state', 'ok', 'firing', 'warning', 'behind', 0.3, 0.5, NULL, false, 'behind', true, 'w1', '{"title":"p"}')
  RETURNING event_id, target, kind, from_state, to_state),
dl AS (INSERT INTO portalmetrics.alert_deliveries (event_id, notifier) SELECT event_id, 'ops' FROM ev)
SELECT pg_notify('portalmetrics_alerts', json_build_object('event_id', event_id::text, 'target', target,
  'kind', kind, 'from', from_state, 'to', to_state)::text) FROM ev;
UPDATE portalmetrics.alert_deliveries SET attempts = attempts + 1, delivered_at = now() WHERE notifier = 'ops';
UPDATE portalmetrics.alert_events SET delivered_at = now() WHERE target = 'p';
SELECT test.eq('writer: alert state version', (SELECT version FROM portalmetrics.alert_state WHERE target = 'p'), 2::bigint);
RESET ROLE;

SET ROLE test_analyst;
SELECT test.eq('reader: target_status', (SELECT count(*) FROM portalmetrics.target_status), 1::bigint);
SELECT test.eq('reader: target_trend', (SELECT count(*) FROM portalmetrics.target_trend('p')), 10::bigint);
SELECT test.eq('reader: tables',
  (SELECT count(*) FROM portalmetrics.targets) + (SELECT count(*) FROM portalmetrics.target_declarations)
  + (SELECT count(*) FROM portalmetrics.collectors) + (SELECT count(*) FROM portalmetrics.series_ingest)
  + (SELECT count(*) FROM portalmetrics.alert_state) + (SELECT count(*) FROM portalmetrics.alert_events)
  + (SELECT count(*) FROM portalmetrics.alert_deliveries),
  2 + 1 + 1 + 1 + 1 + 1 + 1::bigint);
DO $$
DECLARE
  stmt text;
  denied boolean;
BEGIN
  FOREACH stmt IN ARRAY ARRAY[
    'SELECT portalmetrics.declare(''r'', ''[]'', ''[]'')',
    'INSERT INTO portalmetrics.alert_events (target, kind, from_state, to_state, severity, status, late, message, notify, daemon_id) VALUES (''p'', ''state'', ''ok'', ''ok'', ''info'', ''on_track'', false, ''x'', false, ''r'')',
    'UPDATE portalmetrics.targets SET title = ''x''',
    'DELETE FROM portalmetrics.alert_state'] LOOP
    denied := false;
    BEGIN
      EXECUTE stmt;
    EXCEPTION WHEN insufficient_privilege THEN
      denied := true;
    END;
    IF NOT denied THEN
      RAISE EXCEPTION 'the reader could run: %', stmt;
    END IF;
  END LOOP;
END
$$;
RESET ROLE;
