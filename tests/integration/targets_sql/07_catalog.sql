-- The analysts' contract: the objects, a comment on each (tables, views,
-- every column, functions), the indexes, and nothing Citus would refuse.

SELECT test.eq('relkinds',
  (SELECT string_agg(c.relname || ':' || c.relkind::text, ' ' ORDER BY c.relname) FROM pg_class c
   WHERE c.relnamespace = 'portalmetrics'::regnamespace
     AND c.relname IN ('collectors', 'series_ingest', 'targets', 'target_declarations', 'target_status',
                       'alert_state', 'alert_events', 'alert_deliveries')),
  'alert_deliveries:r alert_events:r alert_state:r collectors:r series_ingest:r target_declarations:r target_status:v targets:r');

SELECT test.eq('relations or columns without a comment',
  (SELECT string_agg(x, ', ') FROM (
     SELECT c.relname AS x FROM pg_class c
     WHERE c.relnamespace = 'portalmetrics'::regnamespace AND c.relkind IN ('r', 'v', 'p')
       AND c.relname !~ '^samples_[0-9]{6}$' AND obj_description(c.oid, 'pg_class') IS NULL
     UNION ALL
     SELECT c.relname || '.' || a.attname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
     WHERE c.relnamespace = 'portalmetrics'::regnamespace AND c.relkind IN ('r', 'v', 'p')
       AND c.relname !~ '^samples_[0-9]{6}$'
       AND a.attnum > 0 AND NOT a.attisdropped AND col_description(c.oid, a.attnum) IS NULL) m),
  NULL::text);

SELECT test.eq('functions without a comment',
  (SELECT string_agg(p.oid::regprocedure::text, ', ') FROM pg_proc p
   WHERE p.pronamespace = 'portalmetrics'::regnamespace AND obj_description(p.oid, 'pg_proc') IS NULL),
  NULL::text);

SELECT test.eq('functions',
  (SELECT string_agg(p.oid::regprocedure::text, ' ' ORDER BY p.proname) FROM pg_proc p
   WHERE p.pronamespace = 'portalmetrics'::regnamespace
     AND p.proname IN ('declare', 'goal_at', 'metric_value', 'metric_last_ingest', 'metric_stale_after',
                       'target_value', 'target_trend')),
  'portalmetrics.declare(text,jsonb,jsonb) portalmetrics.goal_at(date[],double precision[],date) '
  'portalmetrics.metric_last_ingest(text,jsonb) portalmetrics.metric_stale_after(text,jsonb) '
  'portalmetrics.metric_value(text,jsonb,integer,text,date) portalmetrics.target_trend(text) '
  'portalmetrics.target_value(portalmetrics.targets,date)');
SELECT test.eq('declare is not SECURITY DEFINER',
  (SELECT prosecdef FROM pg_proc WHERE oid = 'portalmetrics.declare(text,jsonb,jsonb)'::regprocedure), false);
SELECT test.eq('volatility (goal_at immutable, the readers stable)',
  (SELECT string_agg(proname || ':' || provolatile::text, ' ' ORDER BY proname) FROM pg_proc
   WHERE pronamespace = 'portalmetrics'::regnamespace
     AND proname IN ('goal_at', 'metric_value', 'metric_last_ingest', 'metric_stale_after', 'target_value', 'target_trend')),
  'goal_at:i metric_last_ingest:s metric_stale_after:s metric_value:s target_trend:s target_value:s');

SELECT test.eq('indexes',
  (SELECT string_agg(pg_get_indexdef(i.indexrelid), E'\n' ORDER BY pg_get_indexdef(i.indexrelid)) FROM pg_index i
   WHERE i.indrelid IN ('portalmetrics.alert_events'::regclass, 'portalmetrics.alert_deliveries'::regclass)
     AND NOT i.indisprimary),
  'CREATE INDEX alert_deliveries_outbox ON portalmetrics.alert_deliveries USING btree (notifier, event_id) WHERE ((delivered_at IS NULL) AND (abandoned_at IS NULL))'
  || E'\n' || 'CREATE INDEX alert_events_target_at ON portalmetrics.alert_events USING btree (target, at)');

SELECT test.eq('foreign keys in the schema',
  (SELECT count(*) FROM pg_constraint WHERE connamespace = 'portalmetrics'::regnamespace AND contype = 'f'), 0::bigint);

SELECT test.eq('schema version name', (SELECT name FROM portalmetrics.schema_version WHERE version = 3), '003_targets');
