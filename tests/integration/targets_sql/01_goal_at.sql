-- goal_at: the plan for a day.

-- A fixed goal: one point without a date, the same value every day.
SELECT test.eq('fixed', portalmetrics.goal_at(ARRAY[NULL]::date[], ARRAY[0.5], '2026-11-25'), 0.5::float8);
SELECT test.eq('fixed, long ago', portalmetrics.goal_at(ARRAY[NULL]::date[], ARRAY[0.5], '1990-01-01'), 0.5::float8);

-- A ramp from (2026-09-01, 0.1) to (2027-06-30, 0.6): 302 days.
SELECT test.eq('ramp before start', portalmetrics.goal_at(ARRAY['2026-09-01', '2027-06-30']::date[], ARRAY[0.1, 0.6], '2026-08-31'), NULL::float8);
SELECT test.eq('ramp at start', portalmetrics.goal_at(ARRAY['2026-09-01', '2027-06-30']::date[], ARRAY[0.1, 0.6], '2026-09-01'), 0.1::float8);
SELECT test.near('ramp 30 of 302 days', portalmetrics.goal_at(ARRAY['2026-09-01', '2027-06-30']::date[], ARRAY[0.1, 0.6], '2026-10-01'),
                 0.1 + 0.5 * 30 / 302.0);
SELECT test.near('ramp on 2026-11-25 (85 days)', portalmetrics.goal_at(ARRAY['2026-09-01', '2027-06-30']::date[], ARRAY[0.1, 0.6], '2026-11-25'),
                 0.24072847682119206);
SELECT test.eq('ramp at due', portalmetrics.goal_at(ARRAY['2026-09-01', '2027-06-30']::date[], ARRAY[0.1, 0.6], '2027-06-30'), 0.6::float8);
SELECT test.eq('ramp after due', portalmetrics.goal_at(ARRAY['2026-09-01', '2027-06-30']::date[], ARRAY[0.1, 0.6], '2028-01-01'), 0.6::float8);
-- Values exact in binary: 0 -> 100 over 10 days is 10 a day, exactly.
SELECT test.eq('ramp 3 of 10 days', portalmetrics.goal_at(ARRAY['2027-01-01', '2027-01-11']::date[], ARRAY[0, 100], '2027-01-04'), 30::float8);
SELECT test.eq('ramp 9 of 10 days', portalmetrics.goal_at(ARRAY['2027-01-01', '2027-01-11']::date[], ARRAY[0, 100], '2027-01-10'), 90::float8);
-- A falling ramp (an at_most ceiling coming down).
SELECT test.eq('falling ramp', portalmetrics.goal_at(ARRAY['2027-01-01', '2027-01-05']::date[], ARRAY[0.5, 0.25], '2027-01-02'), 0.4375::float8);
-- A ramp across a DST change counts calendar days, not hours.
SELECT test.eq('ramp across DST', portalmetrics.goal_at(ARRAY['2026-10-30', '2026-11-03']::date[], ARRAY[0, 4], '2026-11-02'), 3::float8);

-- Milestones: 10 on 2027-01-01, 20 on 2027-02-01, 50 on 2027-04-01.
SELECT test.eq('milestones before the first', portalmetrics.goal_at(ARRAY['2027-01-01', '2027-02-01', '2027-04-01']::date[], ARRAY[10, 20, 50], '2026-12-31'), NULL::float8);
SELECT test.eq('milestones on the first', portalmetrics.goal_at(ARRAY['2027-01-01', '2027-02-01', '2027-04-01']::date[], ARRAY[10, 20, 50], '2027-01-01'), 10::float8);
SELECT test.near('milestones between the first two', portalmetrics.goal_at(ARRAY['2027-01-01', '2027-02-01', '2027-04-01']::date[], ARRAY[10, 20, 50], '2027-01-11'),
                 10 + 10 * 10 / 31.0);
SELECT test.eq('milestones on the second', portalmetrics.goal_at(ARRAY['2027-01-01', '2027-02-01', '2027-04-01']::date[], ARRAY[10, 20, 50], '2027-02-01'), 20::float8);
SELECT test.near('milestones between the last two', portalmetrics.goal_at(ARRAY['2027-01-01', '2027-02-01', '2027-04-01']::date[], ARRAY[10, 20, 50], '2027-03-01'),
                 20 + 30 * 28 / 59.0);
SELECT test.eq('milestones on the last', portalmetrics.goal_at(ARRAY['2027-01-01', '2027-02-01', '2027-04-01']::date[], ARRAY[10, 20, 50], '2027-04-01'), 50::float8);
SELECT test.eq('milestones after the last', portalmetrics.goal_at(ARRAY['2027-01-01', '2027-02-01', '2027-04-01']::date[], ARRAY[10, 20, 50], '2030-01-01'), 50::float8);
-- One milestone: nothing before it, its value from then on.
SELECT test.eq('one milestone, before', portalmetrics.goal_at(ARRAY['2027-01-01']::date[], ARRAY[7], '2026-12-31'), NULL::float8);
SELECT test.eq('one milestone, on', portalmetrics.goal_at(ARRAY['2027-01-01']::date[], ARRAY[7], '2027-01-01'), 7::float8);
SELECT test.eq('one milestone, after', portalmetrics.goal_at(ARRAY['2027-01-01']::date[], ARRAY[7], '2027-05-01'), 7::float8);

-- IMMUTABLE, so analysts may index or precompute it.
SELECT test.eq('goal_at volatility', (SELECT provolatile FROM pg_proc WHERE oid = 'portalmetrics.goal_at(date[], double precision[], date)'::regprocedure), 'i'::"char");
