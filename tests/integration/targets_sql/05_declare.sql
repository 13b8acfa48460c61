-- declare(): the daemons' mirror of their collectors and targets; one
-- namespace of target names; conflicts; retiring and un-retiring.

-- The definition of DESIGN.md's example, and a different one.
CREATE TEMP TABLE defs (k text PRIMARY KEY, d jsonb);
INSERT INTO defs VALUES
 ('one', '{"title":"Portal enrollment at North Clinic","metric":"portal.patients_enrolled","per":"clinic.patients_seen","labels":{"clinic":"north"},"window_days":7,"direction":"at_least","goal":{"kind":"ramp","points":[{"date":"2026-09-01","value":0.1},{"date":"2027-06-30","value":0.6}]},"tolerance":0.02,"for_s":172800,"clear_for_s":0,"stale_s":null,"repeat_s":86400,"lookback_days":28,"severity":"warning","format":"percent","notify":["ops"],"timezone":"America/Denver"}'),
 ('two', '{"title":"Portal enrollment at North Clinic","metric":"portal.patients_enrolled","per":"clinic.patients_seen","labels":{"clinic":"north"},"window_days":7,"direction":"at_least","goal":{"kind":"ramp","points":[{"date":"2026-09-01","value":0.1},{"date":"2027-06-30","value":0.7}]},"tolerance":0.02,"for_s":172800,"clear_for_s":0,"stale_s":null,"repeat_s":86400,"lookback_days":28,"severity":"warning","format":"percent","notify":["ops"],"timezone":"America/Denver"}'),
 ('fixed', '{"title":"No-shows","metric":"portal.appointments_noshow","per":null,"labels":{},"window_days":30,"direction":"at_most","goal":{"kind":"fixed","points":[{"date":null,"value":12}]},"tolerance":0,"for_s":1.5,"clear_for_s":3600,"stale_s":7200,"repeat_s":0,"lookback_days":14,"severity":"critical","format":"number","notify":[],"timezone":"UTC"}'),
 ('miles', '{"title":"Messages","metric":"portal.secure_messages_sent","per":null,"labels":{"clinic":"north"},"window_days":7,"direction":"at_least","goal":{"kind":"milestones","points":[{"date":"2027-01-01","value":10},{"date":"2027-03-01","value":20},{"date":"2027-06-01","value":40}]},"tolerance":1,"for_s":0,"clear_for_s":0,"stale_s":null,"repeat_s":null,"lookback_days":28,"severity":"info","format":"number","notify":["ops","pager"],"timezone":"UTC"}');

-- declare(daemon, collectors, targets as (name, defs.k) pairs) -> the
-- conflicts as 'target:others' sorted, or '' when none.
CREATE FUNCTION pg_temp.decl(daemon text, collectors jsonb, targets text[][])
RETURNS text LANGUAGE sql AS $$
  SELECT coalesce(string_agg(c.target || ':' || c.conflict_with, ' ' ORDER BY c.target), '')
  FROM portalmetrics.declare($1, $2,
    coalesce((SELECT jsonb_agg(jsonb_build_object('name', $3[i][1], 'definition', (SELECT d FROM defs WHERE k = $3[i][2])))
              FROM generate_subscripts($3, 1) i), '[]')) c
$$;
-- The declaring daemons of a target, sorted.
CREATE FUNCTION pg_temp.declarers(target text) RETURNS text LANGUAGE sql AS $$
  SELECT coalesce(string_agg(daemon_id, ',' ORDER BY daemon_id), '')
  FROM portalmetrics.target_declarations WHERE target = $1
$$;

-- ---- two daemons, the same definition: one target, two declarations -----
SELECT test.eq('b-daemon declares', pg_temp.decl('b-daemon',
  '[{"name":"north","plugin":"demo","interval_s":1.0},{"name":"adt","plugin":"hl7","interval_s":null}]',
  ARRAY[['enrollment', 'one']]), '');
SELECT test.eq('a-daemon declares the same', pg_temp.decl('a-daemon',
  '[{"name":"north","plugin":"demo","interval_s":1.0}]', ARRAY[['enrollment', 'one']]), '');
SELECT test.eq('one target row', (SELECT count(*) FROM portalmetrics.targets), 1::bigint);
SELECT test.eq('two declarations', pg_temp.declarers('enrollment'), 'a-daemon,b-daemon');
SELECT test.eq('in target_status', (SELECT count(*) FROM portalmetrics.target_status WHERE target = 'enrollment'), 1::bigint);

-- The typed columns, from the definition.
DO $$
DECLARE
  t portalmetrics.targets;
BEGIN
  SELECT * INTO t FROM portalmetrics.targets WHERE name = 'enrollment';
  PERFORM test.eq('definition', t.definition, (SELECT d FROM defs WHERE k = 'one'));
  PERFORM test.eq('timezone', t.timezone, 'America/Denver');
  PERFORM test.eq('title', t.title, 'Portal enrollment at North Clinic');
  PERFORM test.eq('metric', t.metric, 'portal.patients_enrolled');
  PERFORM test.eq('per', t.per, 'clinic.patients_seen');
  PERFORM test.eq('labels', t.labels, '{"clinic":"north"}'::jsonb);
  PERFORM test.eq('window_days', t.window_days, 7);
  PERFORM test.eq('direction', t.direction, 'at_least');
  PERFORM test.eq('goal_kind', t.goal_kind, 'ramp');
  PERFORM test.eq('goal_dates', t.goal_dates, ARRAY['2026-09-01', '2027-06-30']::date[]);
  PERFORM test.eq('goal_values', t.goal_values, ARRAY[0.1, 0.6]::float8[]);
  PERFORM test.eq('tolerance', t.tolerance, 0.02::float8);
  PERFORM test.eq('fire_for', t.fire_for, interval '2 days');
  PERFORM test.eq('clear_for', t.clear_for, interval '0');
  PERFORM test.eq('stale', t.stale, NULL::interval);
  PERFORM test.eq('repeat', t.repeat, interval '1 day');
  PERFORM test.eq('lookback_days', t.lookback_days, 28);
  PERFORM test.eq('severity', t.severity, 'warning');
  PERFORM test.eq('format', t.format, 'percent');
  PERFORM test.eq('notify', t.notify, ARRAY['ops']);
  PERFORM test.eq('created_at', t.created_at, now());
  PERFORM test.eq('retired_at', t.retired_at, NULL::timestamptz);
END
$$;

-- The collectors, per daemon.
SELECT test.eq('collectors',
  (SELECT string_agg(daemon_id || '/' || name || '/' || plugin || '/' || coalesce(interval_s::text, 'null'), ' ' ORDER BY daemon_id, name) FROM portalmetrics.collectors),
  'a-daemon/north/demo/1 b-daemon/adt/hl7/null b-daemon/north/demo/1');

-- ---- a different definition from a third daemon: refused, nothing changes
UPDATE portalmetrics.targets SET updated_at = '2001-01-01', created_at = '2000-01-01';
SELECT test.eq('c-daemon declares it differently', pg_temp.decl('c-daemon', '[]', ARRAY[['enrollment', 'two']]),
  'enrollment:a-daemon,b-daemon');
SELECT test.eq('refused: the definition stays', (SELECT definition FROM portalmetrics.targets WHERE name = 'enrollment'), (SELECT d FROM defs WHERE k = 'one'));
SELECT test.eq('refused: the typed columns stay', (SELECT goal_values FROM portalmetrics.targets WHERE name = 'enrollment'), ARRAY[0.1, 0.6]::float8[]);
SELECT test.eq('refused: updated_at stays', (SELECT updated_at FROM portalmetrics.targets WHERE name = 'enrollment'), '2001-01-01'::timestamptz);
SELECT test.eq('refused: not declared by c-daemon', pg_temp.declarers('enrollment'), 'a-daemon,b-daemon');

-- c-daemon had declared the same definition, then changes its own: its
-- declaration goes, the others stay; its other targets are declared.
SELECT test.eq('c-daemon declares the same', pg_temp.decl('c-daemon', '[]', ARRAY[['enrollment', 'one']]), '');
SELECT test.eq('three declarations', pg_temp.declarers('enrollment'), 'a-daemon,b-daemon,c-daemon');
SELECT test.eq('c-daemon changes its definition', pg_temp.decl('c-daemon', '[]', ARRAY[['enrollment', 'two'], ['noshow', 'fixed']]),
  'enrollment:a-daemon,b-daemon');
SELECT test.eq('c-daemon''s declaration removed', pg_temp.declarers('enrollment'), 'a-daemon,b-daemon');
SELECT test.eq('still the first definition', (SELECT definition FROM portalmetrics.targets WHERE name = 'enrollment'), (SELECT d FROM defs WHERE k = 'one'));
SELECT test.eq('c-daemon''s other target declared', pg_temp.declarers('noshow'), 'c-daemon');

-- A fixed goal and durations.
DO $$
DECLARE
  t portalmetrics.targets;
BEGIN
  SELECT * INTO t FROM portalmetrics.targets WHERE name = 'noshow';
  PERFORM test.eq('fixed goal_kind', t.goal_kind, 'fixed');
  PERFORM test.eq('fixed goal_dates', t.goal_dates, ARRAY[NULL]::date[]);
  PERFORM test.eq('fixed goal_values', t.goal_values, ARRAY[12]::float8[]);
  PERFORM test.eq('per null', t.per, NULL::text);
  PERFORM test.eq('direction at_most', t.direction, 'at_most');
  PERFORM test.eq('for_s 1.5', t.fire_for, interval '1.5 seconds');
  PERFORM test.eq('clear_for_s 3600', t.clear_for, interval '1 hour');
  PERFORM test.eq('stale_s 7200', t.stale, interval '2 hours');
  PERFORM test.eq('repeat_s 0: never', t.repeat, NULL::interval);
  PERFORM test.eq('notify empty', t.notify, ARRAY[]::text[]);
  PERFORM test.eq('timezone UTC', t.timezone, 'UTC');
END
$$;

-- ---- dropping a target; the last declaration retires it ----------------
INSERT INTO portalmetrics.alert_state (target, state, since) VALUES ('enrollment', 'firing', now());
SELECT test.eq('a-daemon drops enrollment', pg_temp.decl('a-daemon', '[]', ARRAY[]::text[]), '');
SELECT test.eq('a-daemon''s declaration removed', pg_temp.declarers('enrollment'), 'b-daemon');
SELECT test.eq('a-daemon''s collectors removed', (SELECT count(*) FROM portalmetrics.collectors WHERE daemon_id = 'a-daemon'), 0::bigint);
SELECT test.eq('b-daemon''s collectors kept', (SELECT count(*) FROM portalmetrics.collectors WHERE daemon_id = 'b-daemon'), 2::bigint);
SELECT test.eq('still declared: not retired', (SELECT retired_at FROM portalmetrics.targets WHERE name = 'enrollment'), NULL::timestamptz);

SELECT test.eq('b-daemon drops it too', pg_temp.decl('b-daemon', '[{"name":"north","plugin":"demo","interval_s":5}]', ARRAY[]::text[]), '');
SELECT test.eq('no declarations left', pg_temp.declarers('enrollment'), '');
SELECT test.eq('retired', (SELECT retired_at FROM portalmetrics.targets WHERE name = 'enrollment'), now());
SELECT test.eq('the row is kept', (SELECT definition FROM portalmetrics.targets WHERE name = 'enrollment'), (SELECT d FROM defs WHERE k = 'one'));
SELECT test.eq('its alert state is kept', (SELECT state FROM portalmetrics.alert_state WHERE target = 'enrollment'), 'firing');
SELECT test.eq('not in target_status', (SELECT count(*) FROM portalmetrics.target_status WHERE target = 'enrollment'), 0::bigint);
SELECT test.eq('other targets stay', (SELECT string_agg(target, ',') FROM portalmetrics.target_status), 'noshow');
SELECT test.eq('b-daemon''s collectors replaced',
  (SELECT string_agg(name || '/' || interval_s, ',') FROM portalmetrics.collectors WHERE daemon_id = 'b-daemon'), 'north/5');

-- ---- redeclared: un-retired ---------------------------------------------
UPDATE portalmetrics.targets SET retired_at = '2002-01-01' WHERE name = 'enrollment';
SELECT test.eq('a-daemon declares it again', pg_temp.decl('a-daemon', '[]', ARRAY[['enrollment', 'one']]), '');
SELECT test.eq('un-retired', (SELECT retired_at FROM portalmetrics.targets WHERE name = 'enrollment'), NULL::timestamptz);
SELECT test.eq('the same definition: updated_at stays', (SELECT updated_at FROM portalmetrics.targets WHERE name = 'enrollment'), '2001-01-01'::timestamptz);
SELECT test.eq('created_at stays', (SELECT created_at FROM portalmetrics.targets WHERE name = 'enrollment'), '2000-01-01'::timestamptz);
SELECT test.eq('declared by a-daemon', pg_temp.declarers('enrollment'), 'a-daemon');
SELECT test.eq('back in target_status', (SELECT count(*) FROM portalmetrics.target_status WHERE target = 'enrollment'), 1::bigint);

-- ---- a new definition from its only declarer: updated ------------------
SELECT test.eq('a-daemon changes enrollment', pg_temp.decl('a-daemon', '[]', ARRAY[['enrollment', 'two']]), '');
SELECT test.eq('updated definition', (SELECT definition FROM portalmetrics.targets WHERE name = 'enrollment'), (SELECT d FROM defs WHERE k = 'two'));
SELECT test.eq('updated typed columns', (SELECT goal_values FROM portalmetrics.targets WHERE name = 'enrollment'), ARRAY[0.1, 0.7]::float8[]);
SELECT test.eq('updated_at moves', (SELECT updated_at FROM portalmetrics.targets WHERE name = 'enrollment'), now());
SELECT test.eq('created_at stays', (SELECT created_at FROM portalmetrics.targets WHERE name = 'enrollment'), '2000-01-01'::timestamptz);

-- ---- a retired target redeclared differently by a new daemon: updated ---
SELECT test.eq('c-daemon drops noshow', pg_temp.decl('c-daemon', '[]', ARRAY[]::text[]), '');
SELECT test.eq('noshow retired', (SELECT retired_at IS NOT NULL FROM portalmetrics.targets WHERE name = 'noshow'), true);
SELECT test.eq('d-daemon declares noshow as milestones', pg_temp.decl('d-daemon', '[]', ARRAY[['noshow', 'miles']]), '');
DO $$
DECLARE
  t portalmetrics.targets;
BEGIN
  SELECT * INTO t FROM portalmetrics.targets WHERE name = 'noshow';
  PERFORM test.eq('redefined: retired_at', t.retired_at, NULL::timestamptz);
  PERFORM test.eq('redefined: goal_kind', t.goal_kind, 'milestones');
  PERFORM test.eq('redefined: goal_dates', t.goal_dates, ARRAY['2027-01-01', '2027-03-01', '2027-06-01']::date[]);
  PERFORM test.eq('redefined: goal_values', t.goal_values, ARRAY[10, 20, 40]::float8[]);
  PERFORM test.eq('redefined: notify', t.notify, ARRAY['ops', 'pager']);
  PERFORM test.eq('redefined: stale', t.stale, NULL::interval);
  PERFORM test.eq('redefined: repeat', t.repeat, NULL::interval);
  PERFORM test.eq('redefined: declarers', pg_temp.declarers('noshow'), 'd-daemon');
END
$$;

-- ---- the serialising lock is held until the transaction ends -----------
SELECT test.eq('declare holds pg_advisory_xact_lock(8101256395400422739)',
  (SELECT count(*) FROM pg_locks
   WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted AND objsubid = 1
     AND ((classid::bigint << 32) | objid::bigint) = 8101256395400422739),
  1::bigint);

-- ---- bad input is refused with a clear error ---------------------------
DO $$
DECLARE
  msg text;
  bad jsonb;
BEGIN
  FOR bad IN VALUES
    ((SELECT d FROM defs WHERE k = 'one') || '{"timezone":"Mars/Olympus_Mons"}'),
    ((SELECT d FROM defs WHERE k = 'one') || '{"direction":"sideways"}'),
    ((SELECT d FROM defs WHERE k = 'one') || '{"goal":{"kind":"ramp","points":[{"date":"2027-06-30","value":0.6},{"date":"2026-09-01","value":0.1}]}}'),
    ((SELECT d FROM defs WHERE k = 'one') || '{"goal":{"kind":"ramp","points":[]}}'),
    ('"not an object"'::jsonb)
  LOOP
    msg := NULL;
    BEGIN
      PERFORM portalmetrics.declare('e-daemon', '[]', jsonb_build_array(jsonb_build_object('name', 'bad', 'definition', bad)));
    EXCEPTION WHEN OTHERS THEN
      msg := SQLERRM;
    END;
    IF msg IS NULL THEN
      RAISE EXCEPTION 'declare accepted a bad definition: %', bad;
    END IF;
  END LOOP;
  PERFORM test.eq('nothing of the bad ones stored', (SELECT count(*) FROM portalmetrics.targets WHERE name = 'bad'), 0::bigint);
END
$$;
