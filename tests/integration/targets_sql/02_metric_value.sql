-- metric_value: a metric as of the end of a local day; metric_last_ingest
-- and metric_stale_after. America/Denver: 2026-11-01 falls back (a 25-hour
-- day, MDT -06 then MST -07), 2027-03-14 springs forward (23 hours).

SELECT portalmetrics.ensure_partitions('2026-10-01', '2027-04-01');

-- The boundaries the cases below are built on.
SELECT test.eq('Denver midnight 2026-11-01 (MDT)', test.midnight('2026-11-01', 'America/Denver'), '2026-11-01 06:00:00+00'::timestamptz);
SELECT test.eq('Denver midnight 2026-11-02 (MST)', test.midnight('2026-11-02', 'America/Denver'), '2026-11-02 07:00:00+00'::timestamptz);
SELECT test.eq('Denver midnight 2027-03-14 (MST)', test.midnight('2027-03-14', 'America/Denver'), '2027-03-14 07:00:00+00'::timestamptz);
SELECT test.eq('Denver midnight 2027-03-15 (MDT)', test.midnight('2027-03-15', 'America/Denver'), '2027-03-15 06:00:00+00'::timestamptz);

-- ---- counts: one-day windows on the DST days ---------------------------
-- Values are powers of two, so a sum names the samples it took.
SELECT test.metric('t.fall', 'count');
SELECT test.series(1, 't.fall', '{"collector":"c"}');
SELECT test.sample(1, '2026-11-01 05:59:59.999999+00', 1);   -- 10-31 23:59:59.999999 MDT: out
SELECT test.sample(1, '2026-11-01 06:00:00+00', 2);          -- 11-01 00:00 MDT: in
SELECT test.sample(1, '2026-11-02 06:00:00+00', 4);          -- 11-01 23:00 MST, the 25th hour: in
SELECT test.sample(1, '2026-11-02 06:59:59.999999+00', 8);   -- 11-01 23:59:59.999999 MST: in
SELECT test.sample(1, '2026-11-02 07:00:00+00', 16);         -- 11-02 00:00 MST: out
SELECT test.eq('count, fall-back day (25 h)', portalmetrics.metric_value('t.fall', '{}', 1, 'America/Denver', '2026-11-01'), 14::float8);
SELECT test.eq('count, the day after fall-back', portalmetrics.metric_value('t.fall', '{}', 1, 'America/Denver', '2026-11-02'), 16::float8);
SELECT test.eq('count, two days', portalmetrics.metric_value('t.fall', '{}', 2, 'America/Denver', '2026-11-02'), 30::float8);
SELECT test.eq('count, the day before fall-back', portalmetrics.metric_value('t.fall', '{}', 1, 'America/Denver', '2026-10-31'), 1::float8);
-- The same samples in UTC days.
SELECT test.eq('count, UTC day', portalmetrics.metric_value('t.fall', '{}', 1, 'UTC', '2026-11-01'), 3::float8);
SELECT test.eq('count, next UTC day', portalmetrics.metric_value('t.fall', '{}', 1, 'UTC', '2026-11-02'), 28::float8);

SELECT test.metric('t.spring', 'count');
SELECT test.series(2, 't.spring', '{"collector":"c"}');
SELECT test.sample(2, '2027-03-14 06:59:59.999999+00', 1);   -- 03-13 23:59:59.999999 MST: out
SELECT test.sample(2, '2027-03-14 07:00:00+00', 2);          -- 03-14 00:00 MST: in
SELECT test.sample(2, '2027-03-15 05:59:59.999999+00', 4);   -- 03-14 23:59:59.999999 MDT: in
SELECT test.sample(2, '2027-03-15 06:00:00+00', 8);          -- 03-15 00:00 MDT: out
SELECT test.sample(2, '2027-03-15 06:59:59.999999+00', 16);  -- would be 03-14 in a 24-hour day: out
SELECT test.eq('count, spring-forward day (23 h)', portalmetrics.metric_value('t.spring', '{}', 1, 'America/Denver', '2027-03-14'), 6::float8);
SELECT test.eq('count, the day after spring-forward', portalmetrics.metric_value('t.spring', '{}', 1, 'America/Denver', '2027-03-15'), 24::float8);

-- ---- counts: 7-day windows across the changes (169 and 167 hours) ------
SELECT test.metric('t.week', 'count');
SELECT test.series(3, 't.week', '{"collector":"c"}');
SELECT test.sample(3, '2026-10-28 05:59:59.999999+00', 1);   -- before 10-28 00:00 MDT: out
SELECT test.sample(3, '2026-10-28 06:00:00+00', 2);          -- 10-28 00:00 MDT: in
SELECT test.sample(3, '2026-10-31 12:00:00+00', 4);          -- in
SELECT test.sample(3, '2026-11-04 06:59:59.999999+00', 8);   -- 11-03 23:59:59.999999 MST: in
SELECT test.sample(3, '2026-11-04 07:00:00+00', 16);         -- 11-04 00:00 MST: out
SELECT test.eq('count, 7 days across fall-back', portalmetrics.metric_value('t.week', '{}', 7, 'America/Denver', '2026-11-03'), 14::float8);
SELECT test.eq('that window is 169 hours', test.midnight('2026-11-04', 'America/Denver') - test.midnight('2026-10-28', 'America/Denver'), interval '169 hours');

SELECT test.metric('t.week2', 'count');
SELECT test.series(4, 't.week2', '{"collector":"c"}');
SELECT test.sample(4, '2027-03-10 06:59:59.999999+00', 1);   -- before 03-10 00:00 MST: out
SELECT test.sample(4, '2027-03-10 07:00:00+00', 2);          -- 03-10 00:00 MST: in
SELECT test.sample(4, '2027-03-17 05:59:59.999999+00', 4);   -- 03-16 23:59:59.999999 MDT: in
SELECT test.sample(4, '2027-03-17 06:00:00+00', 8);          -- 03-17 00:00 MDT: out
SELECT test.eq('count, 7 days across spring-forward', portalmetrics.metric_value('t.week2', '{}', 7, 'America/Denver', '2027-03-16'), 6::float8);
SELECT test.eq('that window is 167 hours', test.midnight('2027-03-17', 'America/Denver') - test.midnight('2027-03-10', 'America/Denver'), interval '167 hours');

-- ---- counts: across series, 0 versus NULL ------------------------------
SELECT test.metric('t.multi', 'count');
SELECT test.series(5, 't.multi', '{"clinic":"north","collector":"a"}');
SELECT test.series(6, 't.multi', '{"clinic":"north","collector":"b"}');
SELECT test.series(7, 't.multi', '{"clinic":"south","collector":"a"}');
SELECT test.sample(5, test.midnight('2026-11-10', 'America/Denver'), 3);
SELECT test.sample(6, test.midnight('2026-11-10', 'America/Denver'), 4);
SELECT test.sample(7, test.midnight('2026-11-10', 'America/Denver'), 100);
SELECT test.eq('count, summed over the matching series', portalmetrics.metric_value('t.multi', '{"clinic":"north"}', 1, 'America/Denver', '2026-11-10'), 7::float8);
SELECT test.eq('count, all series', portalmetrics.metric_value('t.multi', '{}', 1, 'America/Denver', '2026-11-10'), 107::float8);
SELECT test.eq('count, series but no sample in the window: 0', portalmetrics.metric_value('t.multi', '{"clinic":"north"}', 7, 'America/Denver', '2026-11-20'), 0::float8);
SELECT test.eq('count, no series with these labels: NULL', portalmetrics.metric_value('t.multi', '{"clinic":"east"}', 7, 'America/Denver', '2026-11-10'), NULL::float8);
SELECT test.metric('t.none', 'count');
SELECT test.eq('count, no series at all: NULL', portalmetrics.metric_value('t.none', '{}', 7, 'America/Denver', '2026-11-10'), NULL::float8);

-- ---- gauges: the newest value per series, summed across series ---------
SELECT test.metric('t.g', 'gauge');
SELECT test.series(8, 't.g', '{"clinic":"north","collector":"a"}');
SELECT test.series(9, 't.g', '{"clinic":"north","collector":"b"}');
SELECT test.series(10, 't.g', '{"clinic":"south","collector":"a"}');
SELECT test.sample(8, '2026-11-05 12:00:00+00', 10);
SELECT test.sample(8, '2026-11-06 12:00:00+00', 11);
SELECT test.sample(8, '2026-11-07 06:59:59.999999+00', 12);  -- 11-06 23:59:59.999999 MST
SELECT test.sample(8, '2026-11-07 07:00:00+00', 13);         -- 11-07 00:00 MST
SELECT test.sample(9, '2026-11-01 00:00:00+00', 100);        -- 10-31 18:00 MDT
SELECT test.sample(9, '2026-11-20 00:00:00+00', 200);
SELECT test.sample(10, '2026-11-06 12:00:00+00', 1000);
SELECT test.eq('gauge, latest per series summed', portalmetrics.metric_value('t.g', '{"clinic":"north"}', 7, 'America/Denver', '2026-11-06'), 112::float8);
SELECT test.eq('gauge, window_days does not matter', portalmetrics.metric_value('t.g', '{"clinic":"north"}', 1, 'America/Denver', '2026-11-06'), 112::float8);
SELECT test.eq('gauge, a day earlier', portalmetrics.metric_value('t.g', '{"clinic":"north"}', 7, 'America/Denver', '2026-11-05'), 110::float8);
SELECT test.eq('gauge, a sample at local midnight is the next day''s', portalmetrics.metric_value('t.g', '{"clinic":"north"}', 7, 'America/Denver', '2026-11-07'), 113::float8);
SELECT test.eq('gauge, later', portalmetrics.metric_value('t.g', '{"clinic":"north"}', 7, 'America/Denver', '2026-11-25'), 213::float8);
SELECT test.eq('gauge, a series without a sample yet adds nothing', portalmetrics.metric_value('t.g', '{"clinic":"north"}', 7, 'America/Denver', '2026-10-31'), 100::float8);
SELECT test.eq('gauge, no sample yet in any series: NULL', portalmetrics.metric_value('t.g', '{"clinic":"north"}', 7, 'America/Denver', '2026-10-30'), NULL::float8);
SELECT test.eq('gauge, all series', portalmetrics.metric_value('t.g', '{}', 7, 'America/Denver', '2026-11-06'), 1112::float8);
SELECT test.eq('gauge, no series with these labels: NULL', portalmetrics.metric_value('t.g', '{"clinic":"east"}', 7, 'America/Denver', '2026-11-06'), NULL::float8);
-- Not in the catalog: a gauge (never summed over time).
SELECT test.series(11, 't.uncataloged', '{"collector":"a"}');
SELECT test.sample(11, '2026-11-05 12:00:00+00', 5);
SELECT test.sample(11, '2026-11-06 12:00:00+00', 7);
SELECT test.eq('uncataloged metric is a gauge', portalmetrics.metric_value('t.uncataloged', '{}', 7, 'America/Denver', '2026-11-06'), 7::float8);
SELECT test.eq('metric_kind of an uncataloged metric', portalmetrics.metric_kind('t.uncataloged'), 'gauge');
SELECT test.eq('metric_kind of a count', portalmetrics.metric_kind('t.multi'), 'count');

-- ---- metric_last_ingest and metric_stale_after -------------------------
INSERT INTO portalmetrics.series_ingest (series_id, last_ingest) VALUES
  (8, '2026-11-20 00:00:00+00'), (9, '2026-11-21 00:00:00+00'), (10, '2026-11-22 00:00:00+00');
SELECT test.eq('last ingest of the matching series', portalmetrics.metric_last_ingest('t.g', '{"clinic":"north"}'), '2026-11-21 00:00:00+00'::timestamptz);
SELECT test.eq('last ingest, never', portalmetrics.metric_last_ingest('t.fall', '{}'), NULL::timestamptz);
SELECT test.eq('last ingest, no series', portalmetrics.metric_last_ingest('t.g', '{"clinic":"east"}'), NULL::timestamptz);

INSERT INTO portalmetrics.collectors (name, daemon_id, plugin, interval_s) VALUES
  ('a', 'd1', 'demo', 60), ('a', 'd2', 'demo', 90), ('b', 'd1', 'hl7', NULL);
-- t.g north: collectors a (60 s on d1, 90 s on d2) and b (a listener).
SELECT test.eq('stale after: twice the longest interval', portalmetrics.metric_stale_after('t.g', '{"clinic":"north"}'), interval '180 seconds');
SELECT test.eq('stale after: a listener has none', portalmetrics.metric_stale_after('t.multi', '{"collector":"b"}'), NULL::interval);
SELECT test.eq('stale after: unknown collector', portalmetrics.metric_stale_after('t.fall', '{}'), NULL::interval);
SELECT test.eq('stale after: no series', portalmetrics.metric_stale_after('t.nothing', '{}'), NULL::interval);
