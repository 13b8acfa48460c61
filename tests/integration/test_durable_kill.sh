#!/usr/bin/env bash
# kill -9 at random moments under load, ROUNDS times (default 20): after a
# restart and a drain, every sample whose completion the plugin received
# is in PostgreSQL exactly once, nothing is there twice, and nothing is
# there that was never emitted. With KEYS=true the plugin re-emits, with
# the same idempotency key, every batch it has no completion for (as an
# HL7 sender retransmits): then PostgreSQL holds every batch, once.
. "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-20}
KEYS=${KEYS:-false}
BATCH=10
pm_pg
pm_plugins testdurable
base=$(( $(date +%s) / 86400 * 86400 - 86400 ))
sdir=$T/state/collectors/d

write_conf() {  # write_conf CAP
  pm_conf "$T/k.conf" <<CONF
collectors = ( { name = "d"; plugin = "testdurable";
  settings = { base = $base; every = "2ms"; batch = $BATCH; keys = $KEYS; batches = $1; }; } );
CONF
}

write_conf 0
for ((r = 1; r <= ROUNDS; r++)); do
  pm_start "$T/k.conf"
  sleep "$(awk -v s=$RANDOM 'BEGIN { srand(s); printf "%.2f", 0.3 + rand() * 1.2 }')"
  kill -9 "$DPID"; wait "$DPID" 2>/dev/null || true
done
reserved=$(cat "$sdir/reserved")
[ "$reserved" -gt 0 ] || fail "the plugin emitted nothing"

# The last run makes no new batches; with keys it re-emits what it has no
# completion for. Then a clean stop drains the spool.
write_conf "$reserved"
pm_start "$T/k.conf"
if [ "$KEYS" = true ]; then
  for _ in $(seq 300); do
    [ "$(sort -un "$sdir/completed" | wc -l)" -ge "$reserved" ] && break
    sleep 0.1
  done
fi
sleep 2
pm_stop "$DPID" 30

q "SELECT (extract(epoch FROM ts) * 1000000)::bigint - $base::bigint * 1000000, value
   FROM portalmetrics.samples_v
   WHERE metric = 'portal.messages_sent' AND labels->>'collector' = 'd'" | tr '|' ' ' > "$T/rows"
twice=$(awk '$2 != 1' "$T/rows" | wc -l)
[ "$twice" = 0 ] || fail "$twice samples are in PostgreSQL more than once: $(awk '$2 != 1' "$T/rows" | head -3)"
never=$(awk -v max=$((reserved * BATCH)) '$1 < 0 || $1 >= max' "$T/rows" | wc -l)
[ "$never" = 0 ] || fail "$never rows were never emitted"
missing=$(sort -un "$sdir/completed" | awk -v B=$BATCH '{ for (i = 0; i < B; i++) print $1 * B + i }' \
  | LC_ALL=C sort | LC_ALL=C comm -23 - <(cut -d' ' -f1 "$T/rows" | LC_ALL=C sort) | wc -l)
[ "$missing" = 0 ] || fail "$missing completed samples are not in PostgreSQL"
if [ "$KEYS" = true ]; then
  rows=$(wc -l < "$T/rows")
  [ "$rows" = $((reserved * BATCH)) ] || fail "keys: $rows rows, want every emitted sample once: $((reserved * BATCH))"
fi
echo "durable_kill (keys=$KEYS, $ROUNDS rounds, $reserved batches, $(wc -l < "$T/rows") samples): OK"
