#!/usr/bin/env bash
# A batch whose COMMIT fails (the server rolls it back) is neither acked
# nor lost: the writer logs the failure once (rate-limited), backs off,
# retries, and the records land exactly once when the database accepts
# them. A deferred constraint trigger that raises at COMMIT makes the
# failure.
. "$(dirname "$0")/lib.sh"
DRV=${WRITER_DRIVER:-$PM_BUILD/tests/writer_driver}
[ -x "$DRV" ] || fail "no writer_driver at $DRV"
pm_pg
"$DRV" --migrate "$PM_CONNINFO" >"$T/m.out" 2>"$T/m.log" || fail "--migrate failed"
psql -qX -v ON_ERROR_STOP=1 >/dev/null <<'SQL' || fail "cannot install the failing trigger"
CREATE TABLE public.pm_test_flag (fail boolean NOT NULL);
INSERT INTO public.pm_test_flag VALUES (true);
CREATE FUNCTION public.pm_test_fail() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT fail FROM public.pm_test_flag) THEN
    RAISE EXCEPTION 'pm_test: commit refused';
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER pm_test_fail AFTER INSERT OR UPDATE ON portalmetrics.samples
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.pm_test_fail();
SQL

cat >"$T/script" <<SCRIPT
push t.cfail add now-1h 5 site=a
push t.cfail set now-1h 6 site=b
wait 60
SCRIPT
"$DRV" "$PM_CONNINFO" <"$T/script" >"$T/driver.out" 2>"$T/driver.log" &
DRV_PID=$!
DAEMON_PIDS+=("$DRV_PID")
pm_wait_log "committing a batch failed: pm_test: commit refused" 30 "$T/driver.log" \
  || fail "the failing COMMIT was not logged"
# let it retry a few times (100 ms, 200 ms, 400 ms, ... with jitter)
sleep 2
kill -0 "$DRV_PID" 2>/dev/null || fail "driver gave up while COMMIT failed"
[ "$(q "SELECT count(*) FROM portalmetrics.samples_v WHERE metric = 't.cfail'")" = 0 ] \
  || fail "samples visible although every COMMIT failed"
q "UPDATE public.pm_test_flag SET fail = false" >/dev/null
rc=0
wait "$DRV_PID" || rc=$?
[ "$rc" -eq 0 ] || fail "driver exited $rc"

r=$(q "SELECT string_agg(labels->>'site' || '=' || value, ',' ORDER BY labels->>'site') FROM portalmetrics.samples_v WHERE metric = 't.cfail'")
[ "$r" = "a=5,b=6" ] || fail "after the failed commits: got '$r', want 'a=5,b=6'"
errors=$(tail -1 "$T/driver.out" | sed -n 's/.* errors=\([0-9]*\).*/\1/p')
[ "${errors:-0}" -ge 3 ] || fail "expected several failed attempts, driver says errors=$errors"
n=$(grep -c "committing a batch failed" "$T/driver.log" || true)
[ "$n" = 1 ] || fail "the repeating failure was logged $n times, want once (rate-limited)"
tail -1 "$T/driver.out" | grep -q "^pushed=2 shipped=2 " || fail "driver counters: $(tail -1 "$T/driver.out")"
echo "writer failed commit: OK"
