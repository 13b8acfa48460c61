-- target_status: its columns, status (on_track / behind / nodata, both
-- directions, tolerance, staleness by ingest time), rates, and that it
-- computes each target's values once.

SELECT portalmetrics.ensure_partitions((now() - interval '40 days')::date, (now() + interval '40 days')::date);

SELECT test.eq('target_status columns',
  (SELECT string_agg(a.attname, ',' ORDER BY a.attnum) FROM pg_attribute a
   WHERE a.attrelid = 'portalmetrics.target_status'::regclass AND a.attnum > 0),
  'target,title,metric,per,labels,timezone,direction,severity,format,plan_date,actual,expected,gap,tolerance,status,goal_value,due,projected_date,late,days_late,last_ingest,evaluated_at');

DO $$
DECLARE
  T date := (now() AT TIME ZONE 'UTC')::date;
BEGIN
  -- ---- on_track / behind, tolerance, both directions ----------------
  -- st.level: a gauge at 0.375 (values exact in binary, so the edges are
  -- exact too).
  PERFORM test.metric('st.level', 'gauge');
  PERFORM test.series(200, 'st.level', '{"collector":"nowhere"}');
  PERFORM test.sample(200, test.midnight(T - 3, 'UTC'), 0.125);
  PERFORM test.sample(200, test.midnight(T, 'UTC'), 0.375);
  PERFORM test.target('least_edge', '{"metric":"st.level","goal":{"kind":"fixed","points":[{"date":null,"value":0.5}]},"tolerance":0.125}');
  PERFORM test.target('least_behind', '{"metric":"st.level","goal":{"kind":"fixed","points":[{"date":null,"value":0.5}]},"tolerance":0.0625}');
  PERFORM test.target('least_above', '{"metric":"st.level","goal":{"kind":"fixed","points":[{"date":null,"value":0.25}]}}');
  PERFORM test.target('most_edge', '{"metric":"st.level","direction":"at_most","goal":{"kind":"fixed","points":[{"date":null,"value":0.25}]},"tolerance":0.125}');
  PERFORM test.target('most_behind', '{"metric":"st.level","direction":"at_most","goal":{"kind":"fixed","points":[{"date":null,"value":0.25}]},"tolerance":0.0625}');
  PERFORM test.target('most_below', '{"metric":"st.level","direction":"at_most","goal":{"kind":"fixed","points":[{"date":null,"value":0.5}]}}');
  -- A ramp that starts in 5 days: no plan yet.
  PERFORM test.target('not_begun', jsonb_build_object('metric', 'st.level', 'goal', test.ramp(T + 5, 0.5, T + 50, 0.9)));
  -- No series at all.
  PERFORM test.target('no_series', '{"metric":"st.none"}');
  PERFORM test.target('no_match', '{"metric":"st.level","labels":{"clinic":"nowhere"}}');

  -- ---- staleness by ingest time --------------------------------------
  -- Collector sc polls every 60 s (another daemon's sc every 30 s): stale
  -- after 120 s, plus the writer's 10 s marking granularity.
  INSERT INTO portalmetrics.collectors (name, daemon_id, plugin, interval_s) VALUES
    ('sc', 'x', 'demo', 60), ('sc', 'y', 'demo', 30), ('lc', 'x', 'hl7', NULL);
  PERFORM test.metric('st.ingest', 'gauge');
  PERFORM test.series(201, 'st.ingest', '{"collector":"sc","age":"129"}');
  PERFORM test.series(202, 'st.ingest', '{"collector":"sc","age":"130"}');
  PERFORM test.series(203, 'st.ingest', '{"collector":"sc","age":"131"}');
  PERFORM test.series(204, 'st.ingest', '{"collector":"sc","age":"never"}');
  PERFORM test.series(205, 'st.ingest', '{"collector":"lc","age":"year"}');
  PERFORM test.sample(s, test.midnight(T, 'UTC'), 0.5) FROM generate_series(201, 205) s;
  INSERT INTO portalmetrics.series_ingest (series_id, last_ingest) VALUES
    (201, now() - interval '129 seconds'), (202, now() - interval '130 seconds'),
    (203, now() - interval '131 seconds'), (205, now() - interval '1 year');
  PERFORM test.target('ingest_129', '{"metric":"st.ingest","labels":{"age":"129"}}');
  PERFORM test.target('ingest_130', '{"metric":"st.ingest","labels":{"age":"130"}}');
  PERFORM test.target('ingest_131', '{"metric":"st.ingest","labels":{"age":"131"}}');
  PERFORM test.target('ingest_never', '{"metric":"st.ingest","labels":{"age":"never"}}');
  PERFORM test.target('ingest_listener', '{"metric":"st.ingest","labels":{"age":"year"}}');
  -- The target's own stale wins over the collectors' interval.
  PERFORM test.target('own_stale_long', '{"metric":"st.ingest","labels":{"age":"131"},"stale_s":3600}');
  PERFORM test.target('own_stale_short', '{"metric":"st.ingest","labels":{"age":"129"},"stale_s":60}');
  PERFORM test.target('own_stale_listener', '{"metric":"st.ingest","labels":{"age":"year"},"stale_s":86400}');
  -- Every series at once: the newest ingest counts.
  PERFORM test.target('ingest_all_sc', '{"metric":"st.ingest","labels":{"collector":"sc"}}');

  -- ---- rates ---------------------------------------------------------
  -- Lab reports viewed / sent, both counts, 3 and 4 a day over the last
  -- 10 days, and 100 each today (today's window is not read). The 7-day
  -- window ending at today's midnight: 21 / 28.
  INSERT INTO portalmetrics.collectors (name, daemon_id, plugin, interval_s) VALUES
    ('rc', 'x', 'demo', 300), ('rc2', 'x', 'demo', 1000);
  PERFORM test.metric('r.viewed', 'count');
  PERFORM test.metric('r.sent', 'count');
  PERFORM test.metric('r.sent2', 'count');
  PERFORM test.metric('r.pop', 'gauge');
  PERFORM test.metric('r.zero', 'gauge');
  PERFORM test.metric('r.slow', 'gauge');
  PERFORM test.series(210, 'r.viewed', '{"clinic":"n","collector":"rc"}');
  PERFORM test.series(211, 'r.sent', '{"clinic":"n","collector":"rc"}');
  PERFORM test.series(212, 'r.pop', '{"clinic":"n","collector":"rc"}');
  PERFORM test.series(213, 'r.sent2', '{"clinic":"n","collector":"rc"}');
  PERFORM test.series(214, 'r.slow', '{"clinic":"n","collector":"rc2"}');
  PERFORM test.series(215, 'r.zero', '{"clinic":"n","collector":"rc"}');
  FOR k IN 0 .. 10 LOOP
    PERFORM test.sample(210, test.midnight(T - k, 'UTC'), CASE WHEN k = 0 THEN 100 ELSE 3 END);
    PERFORM test.sample(211, test.midnight(T - k, 'UTC'), CASE WHEN k = 0 THEN 100 ELSE 4 END);
    PERFORM test.sample(213, test.midnight(T - k, 'UTC'), 4);
  END LOOP;
  -- A gauge denominator: 50 yesterday, 60 now.
  PERFORM test.sample(212, test.midnight(T - 1, 'UTC'), 50);
  PERFORM test.sample(212, test.midnight(T, 'UTC'), 60);
  PERFORM test.sample(214, test.midnight(T, 'UTC'), 60);
  PERFORM test.sample(215, test.midnight(T, 'UTC'), 0);
  INSERT INTO portalmetrics.series_ingest (series_id, last_ingest) VALUES
    (210, now() - interval '100 seconds'), (211, now() - interval '200 seconds'),
    (212, now() - interval '5 seconds'), (214, now() - interval '1000 seconds'),
    (215, now());
  -- count / count: 21 / 28 = 0.75.
  PERFORM test.target('rate', '{"metric":"r.viewed","per":"r.sent","labels":{"clinic":"n"},"format":"percent","goal":{"kind":"fixed","points":[{"date":null,"value":0.75}]}}');
  PERFORM test.target('rate_behind', '{"metric":"r.viewed","per":"r.sent","labels":{"clinic":"n"},"goal":{"kind":"fixed","points":[{"date":null,"value":0.8}]},"tolerance":0.03}');
  -- count / gauge: yesterday's window over the newest gauge, 21 / 60.
  PERFORM test.target('rate_mixed', '{"metric":"r.viewed","per":"r.pop","labels":{"clinic":"n"}}');
  -- A denominator of 0, or with no series: no rate.
  PERFORM test.target('rate_zero', '{"metric":"r.viewed","per":"r.zero","labels":{"clinic":"n"}}');
  PERFORM test.target('rate_nothing', '{"metric":"r.viewed","per":"r.nothing","labels":{"clinic":"n"}}');
  -- A side never ingested: stale (rc polls, so there is a threshold).
  PERFORM test.target('rate_side_never', '{"metric":"r.viewed","per":"r.sent2","labels":{"clinic":"n"}}');
  -- The slower side's threshold: rc2 (2000 s) for r.slow, ingested
  -- 1000 s ago, fresh although rc's own threshold is 600 s.
  PERFORM test.target('rate_slow', '{"metric":"r.viewed","per":"r.slow","labels":{"clinic":"n"},"goal":{"kind":"fixed","points":[{"date":null,"value":0.25}]}}');
END
$$;

DO $$
DECLARE
  T date := (now() AT TIME ZONE 'UTC')::date;
  s portalmetrics.target_status;
BEGIN
  s := test.status('least_edge');
  PERFORM test.eq('least_edge actual', s.actual, 0.375::float8);
  PERFORM test.eq('least_edge expected', s.expected, 0.5::float8);
  PERFORM test.eq('least_edge gap', s.gap, -0.125::float8);
  PERFORM test.eq('least_edge tolerance', s.tolerance, 0.125::float8);
  PERFORM test.eq('least_edge: exactly at the tolerance is on track', s.status, 'on_track');
  PERFORM test.eq('least_edge plan_date', s.plan_date, T);
  PERFORM test.eq('least_edge evaluated_at', s.evaluated_at, now());
  PERFORM test.eq('least_edge direction', s.direction, 'at_least');
  PERFORM test.eq('least_edge format', s.format, 'number');
  PERFORM test.eq('least_edge labels', s.labels, '{}'::jsonb);
  PERFORM test.eq('least_behind', (test.status('least_behind')).status, 'behind');
  PERFORM test.eq('least_above', (test.status('least_above')).status, 'on_track');
  PERFORM test.eq('most_edge: exactly at the tolerance is on track', (test.status('most_edge')).status, 'on_track');
  PERFORM test.eq('most_behind', (test.status('most_behind')).status, 'behind');
  PERFORM test.eq('most_below', (test.status('most_below')).status, 'on_track');

  s := test.status('not_begun');
  PERFORM test.eq('not_begun expected', s.expected, NULL::float8);
  PERFORM test.eq('not_begun gap', s.gap, NULL::float8);
  PERFORM test.eq('not_begun status', s.status, 'on_track');
  PERFORM test.eq('not_begun due', s.due, T + 50);

  s := test.status('no_series');
  PERFORM test.eq('no_series actual', s.actual, NULL::float8);
  PERFORM test.eq('no_series status', s.status, 'nodata');
  PERFORM test.eq('no_series late', s.late, false);
  PERFORM test.eq('no_match status', (test.status('no_match')).status, 'nodata');

  s := test.status('ingest_129');
  PERFORM test.eq('ingest 129 s ago (threshold 120 s + 10 s)', s.status, 'on_track');
  PERFORM test.eq('ingest_129 last_ingest', s.last_ingest, now() - interval '129 seconds');
  PERFORM test.eq('ingest 130 s ago', (test.status('ingest_130')).status, 'on_track');
  PERFORM test.eq('ingest 131 s ago', (test.status('ingest_131')).status, 'nodata');
  PERFORM test.eq('ingest 131 s ago: actual is still shown', (test.status('ingest_131')).actual, 0.5::float8);
  PERFORM test.eq('never ingested', (test.status('ingest_never')).status, 'nodata');
  PERFORM test.eq('never ingested: last_ingest', (test.status('ingest_never')).last_ingest, NULL::timestamptz);
  PERFORM test.eq('a listener''s metric is never stale', (test.status('ingest_listener')).status, 'on_track');
  PERFORM test.eq('own stale 3600 s, ingest 131 s ago', (test.status('own_stale_long')).status, 'on_track');
  PERFORM test.eq('own stale 60 s, ingest 129 s ago', (test.status('own_stale_short')).status, 'nodata');
  PERFORM test.eq('own stale on a listener''s metric', (test.status('own_stale_listener')).status, 'nodata');
  PERFORM test.eq('several series: the newest ingest', (test.status('ingest_all_sc')).last_ingest, now() - interval '129 seconds');
  PERFORM test.eq('several series: fresh', (test.status('ingest_all_sc')).status, 'on_track');

  s := test.status('rate');
  PERFORM test.eq('rate actual (21 / 28, yesterday''s window)', s.actual, 0.75::float8);
  PERFORM test.eq('rate status', s.status, 'on_track');
  PERFORM test.eq('rate per', s.per, 'r.sent');
  PERFORM test.eq('rate last_ingest (the older side)', s.last_ingest, now() - interval '200 seconds');
  PERFORM test.eq('rate_behind status', (test.status('rate_behind')).status, 'behind');
  PERFORM test.eq('rate_mixed actual (21 / the newest 60)', (test.status('rate_mixed')).actual, 21::float8 / 60);
  PERFORM test.eq('rate_mixed last_ingest', (test.status('rate_mixed')).last_ingest, now() - interval '100 seconds');
  PERFORM test.eq('rate_zero actual', (test.status('rate_zero')).actual, NULL::float8);
  PERFORM test.eq('rate_zero status', (test.status('rate_zero')).status, 'nodata');
  PERFORM test.eq('rate_nothing status', (test.status('rate_nothing')).status, 'nodata');
  s := test.status('rate_side_never');
  PERFORM test.eq('rate_side_never actual', s.actual, 0.75::float8);
  PERFORM test.eq('rate_side_never last_ingest', s.last_ingest, NULL::timestamptz);
  PERFORM test.eq('rate_side_never status', s.status, 'nodata');
  s := test.status('rate_slow');
  PERFORM test.eq('rate_slow last_ingest', s.last_ingest, now() - interval '1000 seconds');
  PERFORM test.eq('rate_slow status (the slower side''s threshold)', s.status, 'on_track');

  -- target_value for a day reads both sides for that day.
  PERFORM test.eq('target_value of a rate for yesterday',
    (SELECT portalmetrics.target_value(x, T - 1) FROM portalmetrics.targets x WHERE x.name = 'rate_mixed'), 21::float8 / 50);
  PERFORM test.eq('target_value of a rate for today (the window with today''s 100)',
    (SELECT portalmetrics.target_value(x, T) FROM portalmetrics.targets x WHERE x.name = 'rate'), 118::float8 / 124);
END
$$;

-- Each target's values are computed once: target_actual once per target,
-- target_value once per trend day, whatever the columns read.
SET LOCAL track_functions = 'pl';
SELECT count(*) FROM (SELECT * FROM portalmetrics.target_status WHERE status IS NOT NULL AND late IS NOT NULL) x;
SELECT test.eq('target_actual calls',
  (SELECT calls FROM pg_stat_xact_user_functions WHERE schemaname = 'portalmetrics' AND funcname = 'target_actual'),
  (SELECT count(*) FROM portalmetrics.targets WHERE retired_at IS NULL));
SELECT test.eq('target_value calls (one per trend day)',
  (SELECT calls FROM pg_stat_xact_user_functions WHERE schemaname = 'portalmetrics' AND funcname = 'target_value'),
  (SELECT sum(lookback_days) FROM portalmetrics.targets WHERE retired_at IS NULL));
