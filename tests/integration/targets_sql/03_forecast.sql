-- The projection: target_trend, and target_status's projected_date, late
-- and days_late, on lines whose answers are known. Dates are relative to
-- today (the file runs in one transaction, so now() does not move).

SELECT portalmetrics.ensure_partitions((now() - interval '70 days')::date, (now() + interval '40 days')::date);

DO $$
DECLARE
  T date := (now() AT TIME ZONE 'UTC')::date;             -- today in UTC
  D date := (now() AT TIME ZONE 'America/Denver')::date;  -- today in Denver
BEGIN
  -- f.rise (Denver): a gauge rising exactly 0.01 a day, 0.10 four weeks
  -- ago to 0.38 today; a sample a day, at local midnight. The trend
  -- (D-28 .. D-1) is 0.10 .. 0.37: the line y = 0.38 + 0.01 x (x = days
  -- from today) reaches 0.60 at x = 22.
  PERFORM test.metric('f.rise', 'gauge');
  PERFORM test.series(100, 'f.rise', '{"collector":"fc"}');
  FOR k IN 0 .. 28 LOOP
    PERFORM test.sample(100, test.midnight(D - k, 'America/Denver'), 0.38 - 0.01 * k);
  END LOOP;
  -- Due in 12 days: 10 days late. The plan today: 0.10 + 0.5 * 28/40 =
  -- 0.45, so behind too.
  PERFORM test.target('rise_late', jsonb_build_object('metric', 'f.rise', 'timezone', 'America/Denver',
    'goal', test.ramp(D - 28, 0.10, D + 12, 0.60), 'tolerance', 0.02, 'format', 'percent'));
  -- Due in 30 days: on time (and on track: the plan is 0.3414).
  PERFORM test.target('rise_ontime', jsonb_build_object('metric', 'f.rise', 'timezone', 'America/Denver',
    'goal', test.ramp(D - 28, 0.10, D + 30, 0.60), 'tolerance', 0.02));
  -- A final goal already met: projected today, not late.
  PERFORM test.target('rise_met', jsonb_build_object('metric', 'f.rise', 'timezone', 'America/Denver',
    'goal', test.ramp(D - 28, 0.10, D + 10, 0.35)));
  -- A fixed goal: a projection, never late (no due date).
  PERFORM test.target('rise_fixed', jsonb_build_object('metric', 'f.rise', 'timezone', 'America/Denver',
    'goal', test.fixed(0.60)));
  -- at_most on a rising line: moving away from the ceiling.
  PERFORM test.target('rise_at_most', jsonb_build_object('metric', 'f.rise', 'timezone', 'America/Denver',
    'direction', 'at_most', 'goal', test.ramp(D - 28, 0.30, D + 30, 0.20)));
  -- Due in 2 days at 0.40: the fitted line reaches 0.40 at
  -- x = 2.0000000000000013 (rounding in the regression), which must still
  -- be day 2: on the due date, so not late.
  PERFORM test.target('rise_near', jsonb_build_object('metric', 'f.rise', 'timezone', 'America/Denver',
    'goal', test.ramp(D - 28, 0.10, D + 2, 0.40)));
  -- A shorter lookback: the same line from 7 points.
  PERFORM test.target('rise_week', jsonb_build_object('metric', 'f.rise', 'timezone', 'America/Denver',
    'lookback_days', 7, 'goal', test.ramp(D - 28, 0.10, D + 12, 0.60)));

  -- f.flat (UTC): 0.25 every day. Flat: never reaches 0.6.
  PERFORM test.metric('f.flat', 'gauge');
  PERFORM test.series(101, 'f.flat', '{"collector":"fc"}');
  FOR k IN 0 .. 28 LOOP
    PERFORM test.sample(101, test.midnight(T - k, 'UTC'), 0.25);
  END LOOP;
  PERFORM test.target('flat', jsonb_build_object('metric', 'f.flat',
    'goal', test.ramp(T - 28, 0.10, T + 30, 0.60)));

  -- A final goal already met on the flat line: projected today (the
  -- slope does not matter then).
  PERFORM test.target('flat_met', jsonb_build_object('metric', 'f.flat',
    'goal', test.ramp(T - 28, 0.10, T + 30, 0.20)));

  -- f.creep (UTC): rising 1e-9 a day: the line reaches 0.6 in 350
  -- million days, which is never (and past the last date PostgreSQL has).
  PERFORM test.metric('f.creep', 'gauge');
  PERFORM test.series(108, 'f.creep', '{"collector":"fc"}');
  FOR k IN 0 .. 28 LOOP
    PERFORM test.sample(108, test.midnight(T - k, 'UTC'), 0.25 - 1e-9 * k);
  END LOOP;
  PERFORM test.target('creep', jsonb_build_object('metric', 'f.creep',
    'goal', test.ramp(T - 28, 0.10, T + 30, 0.60)));

  -- f.few: samples on the last two days only: two trend points.
  PERFORM test.metric('f.few', 'gauge');
  PERFORM test.series(102, 'f.few', '{"collector":"fc"}');
  PERFORM test.sample(102, test.midnight(T - 2, 'UTC'), 0.1);
  PERFORM test.sample(102, test.midnight(T - 1, 'UTC'), 0.2);
  PERFORM test.target('few', jsonb_build_object('metric', 'f.few',
    'goal', test.ramp(T - 28, 0.10, T + 1, 0.60)));

  -- f.three: three points, 0.125 0.25 0.375 (exact in binary): the line
  -- y = 0.5 + 0.125 x reaches 0.75 at x = 2; due tomorrow: a day late.
  PERFORM test.metric('f.three', 'gauge');
  PERFORM test.series(103, 'f.three', '{"collector":"fc"}');
  PERFORM test.sample(103, test.midnight(T - 3, 'UTC'), 0.125);
  PERFORM test.sample(103, test.midnight(T - 2, 'UTC'), 0.25);
  PERFORM test.sample(103, test.midnight(T - 1, 'UTC'), 0.375);
  PERFORM test.target('three', jsonb_build_object('metric', 'f.three',
    'goal', test.ramp(T - 28, 0.10, T + 1, 0.75)));

  -- f.down (UTC), at_most: falling 0.01 a day to 0.30 today; the line
  -- y = 0.30 - 0.01 x reaches the ceiling 0.10 at x = 20; due in 10 days.
  -- The plan today: 0.6 - 0.5 * 28/38 = 0.2316; 0.30 is above it by more
  -- than the tolerance: behind.
  PERFORM test.metric('f.down', 'gauge');
  PERFORM test.series(104, 'f.down', '{"collector":"fc"}');
  FOR k IN 0 .. 28 LOOP
    PERFORM test.sample(104, test.midnight(T - k, 'UTC'), 0.30 + 0.01 * k);
  END LOOP;
  PERFORM test.target('down', jsonb_build_object('metric', 'f.down', 'direction', 'at_most',
    'goal', test.ramp(T - 28, 0.60, T + 10, 0.10), 'tolerance', 0.02));
  -- Ceiling 0.10 fixed; and an at_least goal on the falling line: away.
  PERFORM test.target('down_away', jsonb_build_object('metric', 'f.down',
    'goal', test.ramp(T - 28, 0.30, T + 10, 0.60)));

  -- f.dip (UTC): rising 0.01 a day to 0.57 yesterday, then 0.2 today.
  -- The line (0.58 + 0.01 x) crossed 0.5 eight days ago, but a
  -- projection is never before today.
  PERFORM test.metric('f.dip', 'gauge');
  PERFORM test.series(107, 'f.dip', '{"collector":"fc"}');
  FOR k IN 1 .. 28 LOOP
    PERFORM test.sample(107, test.midnight(T - k, 'UTC'), 0.58 - 0.01 * k);
  END LOOP;
  PERFORM test.sample(107, test.midnight(T, 'UTC'), 0.2);
  PERFORM test.target('dip', jsonb_build_object('metric', 'f.dip',
    'goal', test.ramp(T - 28, 0.1, T + 5, 0.5)));

  -- f.cnt (UTC), a count: 1, 2, 3, ... a day (one sample at each
  -- midnight), window 1 day. actual is yesterday's count (today's window
  -- is still filling up); the trend is 1 .. 28 over D-28 .. D-1.
  PERFORM test.metric('f.cnt', 'count');
  PERFORM test.series(105, 'f.cnt', '{"collector":"fc"}');
  FOR k IN 0 .. 28 LOOP
    PERFORM test.sample(105, test.midnight(T - k, 'UTC'), 29 - k);
  END LOOP;
  PERFORM test.target('cnt', jsonb_build_object('metric', 'f.cnt', 'window_days', 1,
    'goal', test.ramp(T - 28, 0, T + 10, 40)));
END
$$;

-- The trend itself.
DO $$
DECLARE
  D date := (now() AT TIME ZONE 'America/Denver')::date;
  T date := (now() AT TIME ZONE 'UTC')::date;
  n bigint;
BEGIN
  SELECT count(*) INTO n FROM portalmetrics.target_trend('rise_late');
  PERFORM test.eq('trend points over 28 days', n, 28::bigint);
  PERFORM test.eq('trend first day', (SELECT min(day) FROM portalmetrics.target_trend('rise_late')), D - 28);
  PERFORM test.eq('trend last day (yesterday)', (SELECT max(day) FROM portalmetrics.target_trend('rise_late')), D - 1);
  PERFORM test.near('trend value 28 days ago', (SELECT value FROM portalmetrics.target_trend('rise_late') WHERE day = D - 28), 0.10);
  PERFORM test.near('trend value yesterday', (SELECT value FROM portalmetrics.target_trend('rise_late') WHERE day = D - 1), 0.37);
  PERFORM test.eq('trend sorted by day',
    (SELECT array_agg(day) FROM portalmetrics.target_trend('rise_late')),
    (SELECT array_agg(D - k ORDER BY k DESC) FROM generate_series(1, 28) k));
  PERFORM test.eq('trend over 7 days', (SELECT count(*) FROM portalmetrics.target_trend('rise_week')), 7::bigint);
  PERFORM test.eq('trend omits days without a value', (SELECT array_agg(day ORDER BY day) FROM portalmetrics.target_trend('few')), ARRAY[T - 2, T - 1]);
  PERFORM test.eq('trend of an unknown target', (SELECT count(*) FROM portalmetrics.target_trend('no such target')), 0::bigint);
  PERFORM test.eq('count trend, yesterday', (SELECT value FROM portalmetrics.target_trend('cnt') WHERE day = T - 1), 28::float8);
END
$$;

-- projected_date, late, days_late.
DO $$
DECLARE
  D date := (now() AT TIME ZONE 'America/Denver')::date;
  T date := (now() AT TIME ZONE 'UTC')::date;
  s portalmetrics.target_status;
BEGIN
  s := test.status('rise_late');
  PERFORM test.eq('rise_late plan_date', s.plan_date, D);
  PERFORM test.near('rise_late actual (the newest gauge value)', s.actual, 0.38);
  PERFORM test.near('rise_late expected', s.expected, 0.45);
  PERFORM test.near('rise_late gap', s.gap, -0.07);
  PERFORM test.eq('rise_late status', s.status, 'behind');
  PERFORM test.eq('rise_late goal_value', s.goal_value, 0.6::float8);
  PERFORM test.eq('rise_late due', s.due, D + 12);
  PERFORM test.eq('rise_late projected_date', s.projected_date, D + 22);
  PERFORM test.eq('rise_late late', s.late, true);
  PERFORM test.eq('rise_late days_late', s.days_late, 10);

  s := test.status('rise_week');
  PERFORM test.eq('rise_week projected_date (7 points)', s.projected_date, D + 22);
  PERFORM test.eq('rise_week days_late', s.days_late, 10);

  s := test.status('rise_ontime');
  PERFORM test.eq('rise_ontime status', s.status, 'on_track');
  PERFORM test.eq('rise_ontime projected_date', s.projected_date, D + 22);
  PERFORM test.eq('rise_ontime late', s.late, false);
  PERFORM test.eq('rise_ontime days_late', s.days_late, NULL::integer);

  s := test.status('rise_met');
  PERFORM test.eq('rise_met projected_date (already met: today)', s.projected_date, D);
  PERFORM test.eq('rise_met late', s.late, false);

  s := test.status('rise_fixed');
  PERFORM test.eq('rise_fixed due', s.due, NULL::date);
  PERFORM test.eq('rise_fixed goal_value', s.goal_value, 0.6::float8);
  PERFORM test.eq('rise_fixed expected', s.expected, 0.6::float8);
  PERFORM test.eq('rise_fixed projected_date', s.projected_date, D + 22);
  PERFORM test.eq('rise_fixed late (no due date)', s.late, false);

  s := test.status('rise_at_most');
  PERFORM test.eq('rise_at_most projected_date (moving away)', s.projected_date, NULL::date);
  PERFORM test.eq('rise_at_most late', s.late, true);
  PERFORM test.eq('rise_at_most days_late', s.days_late, NULL::integer);

  s := test.status('flat');
  PERFORM test.near('flat actual', s.actual, 0.25);
  PERFORM test.eq('flat projected_date', s.projected_date, NULL::date);
  PERFORM test.eq('flat late', s.late, true);
  PERFORM test.eq('flat days_late', s.days_late, NULL::integer);

  s := test.status('flat_met');
  PERFORM test.eq('flat_met projected_date (met: today)', s.projected_date, T);
  PERFORM test.eq('flat_met late', s.late, false);

  s := test.status('creep');
  PERFORM test.eq('creep projected_date (a million days or more: never)', s.projected_date, NULL::date);
  PERFORM test.eq('creep late', s.late, true);

  s := test.status('few');
  PERFORM test.eq('few (2 points) projected_date', s.projected_date, NULL::date);
  PERFORM test.eq('few (2 points) late: unknown, false', s.late, false);
  PERFORM test.eq('few days_late', s.days_late, NULL::integer);

  s := test.status('three');
  PERFORM test.eq('three (3 points) projected_date', s.projected_date, T + 2);
  PERFORM test.eq('three late', s.late, true);
  PERFORM test.eq('three days_late', s.days_late, 1);

  s := test.status('down');
  PERFORM test.near('down actual', s.actual, 0.30);
  PERFORM test.near('down expected', s.expected, 0.6 - 0.5 * 28 / 38.0);
  PERFORM test.eq('down status (at_most, above the ceiling)', s.status, 'behind');
  PERFORM test.eq('down projected_date', s.projected_date, T + 20);
  PERFORM test.eq('down late', s.late, true);
  PERFORM test.eq('down days_late', s.days_late, 10);

  s := test.status('down_away');
  PERFORM test.eq('down_away projected_date (at_least, falling)', s.projected_date, NULL::date);
  PERFORM test.eq('down_away late', s.late, true);

  s := test.status('rise_near');
  PERFORM test.eq('rise_near projected_date (rounding absorbed)', s.projected_date, D + 2);
  PERFORM test.eq('rise_near: projected on the due date is not late', s.late, false);

  s := test.status('dip');
  PERFORM test.eq('dip actual', s.actual, 0.2::float8);
  PERFORM test.eq('dip projected_date (never before today)', s.projected_date, T);
  PERFORM test.eq('dip late', s.late, false);

  -- Count: actual is yesterday's window (28), not today's (29); the
  -- trend 1..28 is y = 29 + x, reaching 40 at x = 11; due in 10 days.
  s := test.status('cnt');
  PERFORM test.eq('cnt actual (yesterday''s window)', s.actual, 28::float8);
  PERFORM test.eq('cnt projected_date', s.projected_date, T + 11);
  PERFORM test.eq('cnt days_late', s.days_late, 1);
END
$$;
