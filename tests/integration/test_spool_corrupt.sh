#!/usr/bin/env bash
# A corrupted spool (flipped bytes mid-file in an older segment, a torn
# tail in the newest): at the next start the damaged range is quarantined
# (copied to quarantine/ and reported), the torn tail is truncated (and
# reported), the daemon starts anyway, and every other sample is shipped
# exactly once. The damaged records are found by parsing the segments
# (the format of daemon/spool.h) before corrupting them, so the test
# knows exactly which samples must be missing and which bytes must be in
# quarantine/.
#
# How it was checked that this fails when recovery breaks (sabotage in a
# scratch copy of the sources, built apart, then thrown away):
#  - resync() in spool_recover.c finding nothing (no skip to the next
#    valid record): the rest of the older segment is quarantined and cut
#    -> "run 2: 10680 of 11940 samples landed";
#  - the newest segment's bad tail handled like an older segment's
#    (quarantined, not reported as a torn tail) -> "torn tail ... was not
#    reported";
#  - quarantine_range() logging its line but copying nothing -> "no ...
#    under quarantine/".
# And by reasoning: a sample shipped twice shows as value 2; one from the
# damaged records (their bytes are gone) would be an unexpected row.
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || { echo "no python3: skipped"; exit 77; }
BATCH=20
BATCHES=600
pm_pg
pm_pg_stop "$T/pg"
pm_plugins testdurable
base=$(( $(date +%s) / 86400 * 86400 - 86400 ))
sdir=$T/state/collectors/d
spool=$T/state/spool
DB_EXTRA='drain_timeout = "1s";'

# Run 1, the database down: 600 batches of 20 distinguishable add samples
# (sample k: ts = base + k us, value 1) go to a spool of 64 KiB segments.
pm_conf "$T/c.conf" <<CONF
spool = { segment_size = "64KiB"; max_size = "16MiB"; };
collectors = ( { name = "d"; plugin = "testdurable";
  settings = { base = $base; every = "2ms"; batch = $BATCH; batches = $BATCHES; }; } );
CONF
pm_start "$T/c.conf" "$T/run1.log"
for _ in $(seq 400); do
  [ "$(sort -un "$sdir/completed" 2>/dev/null | wc -l)" -ge $BATCHES ] && break
  sleep 0.1
done
[ "$(sort -un "$sdir/completed" | wc -l)" = $BATCHES ] \
  || fail "run 1: $(sort -un "$sdir/completed" | wc -l) of $BATCHES batches completed"
pm_stop "$DPID" 15
grep -q "they stay in the spool" "$T/run1.log" || fail "run 1: the leftover was not reported"
nseg=$(ls "$spool"/seg-*.log | wc -l)
[ "$nseg" -ge 3 ] || fail "only $nseg segments: want at least 3"

# Corrupt, knowing exactly what is damaged. Older segment: the samples
# record nearest the middle of the second segment (A) gets its last 4
# bytes flipped, and the record after it (B) its length field: recovery
# must quarantine [A, C) where C is the record after B. Newest segment:
# cut in the middle of its last record of our samples (L): a torn tail
# of the bytes from L on. Missing: the samples of A, B and L, no others.
python3 - "$spool" "$base" "$T" >"$T/corrupt.out" <<'PY' || fail "corrupting failed: $(cat "$T/corrupt.out")"
import os, struct, sys
d, base, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
segs = sorted(f for f in os.listdir(d) if f.startswith("seg-") and f.endswith(".log"))
series = {}

def parse(name):
    b = bytearray(open(os.path.join(d, name), "rb").read())
    assert b[:8] == b"PMSEG001", name
    recs, off = [], 48
    while off < len(b):
        ln, _crc, typ = struct.unpack_from("<IIB", b, off)
        assert off + 9 + ln <= len(b), f"{name}: record past the end at {off}"
        p, ks = off + 9, []
        if typ == 1:
            sid, _kind, ml = struct.unpack_from("<qBH", b, p)
            series[sid] = bytes(b[p + 11:p + 11 + ml]).decode()
        elif typ == 2:
            _first, _at, n = struct.unpack_from("<QqI", b, p)
            for i in range(n):
                sid, ts, _v = struct.unpack_from("<qqd", b, p + 20 + 24 * i)
                if series.get(sid) == "portal.messages_sent":
                    ks.append(ts - base * 1000000)
        recs.append((off, 9 + ln, ks))
        off += 9 + ln
    return b, recs

parsed = [parse(s) for s in segs]
missing = []
# the flip
b, recs = parsed[1]
cand = [i for i in range(len(recs) - 2) if recs[i][2]]
assert cand, f"{segs[1]}: no samples record to damage"
i = min(cand, key=lambda i: abs(recs[i][0] - len(b) // 2))
(a, asz, aks), (boff, _, bks), (c, _, _) = recs[i], recs[i + 1], recs[i + 2]
assert a > 4096, f"{segs[1]}: the damaged record is at {a}, not mid-file"
for o in list(range(a + asz - 4, a + asz)) + list(range(boff, boff + 4)):
    b[o] ^= 0xFF
open(os.path.join(d, segs[1]), "r+b").write(b)
open(os.path.join(out, "expect_quar"), "wb").write(b[a:c])
missing += aks + bks
print("QUAR", segs[1], a, c)
# the torn tail
b, recs = parsed[-1]
withks = [r for r in recs if r[2]]
assert withks, f"{segs[-1]}: no samples record to tear"
loff, lsz, lks = withks[-1]
cut = loff + lsz // 2
os.truncate(os.path.join(d, segs[-1]), cut)
missing += lks
print("TORN", segs[-1], cut - loff, loff)
with open(os.path.join(out, "expect_missing"), "w") as f:
    for k in sorted(missing):
        print(k, file=f)
PY
read -r _ qseg qa qc < <(grep '^QUAR ' "$T/corrupt.out")
read -r _ tseg tlen toff < <(grep '^TORN ' "$T/corrupt.out")
nmiss=$(wc -l <"$T/expect_missing")
[ "$nmiss" -gt 0 ] && [ "$nmiss" -le $((3 * BATCH)) ] || fail "bad setup: $nmiss samples in the damaged records"

# Run 2, the database up, no collectors: recovery, then the leftover ships.
pm_pg_start "$T/pg" >/dev/null
pm_conf "$T/c.conf" <<'CONF'
collectors = ( );
CONF
pm_start "$T/c.conf" "$T/run2.log"
want=$((BATCHES * BATCH - nmiss))
pm_wait_sql "SELECT count(*) >= $want FROM portalmetrics.samples_v WHERE metric = 'portal.messages_sent'" 40 \
  || fail "run 2: $(q "SELECT count(*) FROM portalmetrics.samples_v WHERE metric = 'portal.messages_sent'") of $want samples landed"
kill -0 "$DPID" 2>/dev/null || fail "run 2: the daemon is not running"
sleep 1
pm_stop "$DPID" 15

grep -q "spool: $qseg: bytes $qa-$qc are damaged: skipped, copied to $spool/quarantine/$qseg.$qa-$qc" "$T/run2.log" \
  || fail "the quarantined range $qseg $qa-$qc was not reported: $(grep 'spool' "$T/run2.log" | head -5)"
grep -q "spool: $tseg: torn tail of $tlen bytes at $toff: truncated" "$T/run2.log" \
  || fail "the torn tail ($tseg, $tlen bytes at $toff) was not reported: $(grep 'spool' "$T/run2.log" | head -5)"
grep -q "$tlen torn tail byte(s) truncated, 1 range(s) quarantined ($((qc - qa)) bytes)" "$T/run2.log" \
  || fail "recovery summary: $(grep 'recovered' "$T/run2.log")"
[ -f "$spool/quarantine/$qseg.$qa-$qc" ] || fail "no $qseg.$qa-$qc under quarantine/: $(ls "$spool/quarantine" 2>&1)"
cmp -s "$spool/quarantine/$qseg.$qa-$qc" "$T/expect_quar" || fail "quarantine/$qseg.$qa-$qc does not hold the damaged bytes"
[ "$(q "SELECT coalesce(sum(value),0)::bigint FROM portalmetrics.samples_v WHERE metric = 'portalmetricsd.spool_quarantined'")" = 1 ] \
  || fail "portalmetricsd.spool_quarantined is not 1"

q "SELECT (extract(epoch FROM ts) * 1000000)::bigint - $base::bigint * 1000000, value
   FROM portalmetrics.samples_v
   WHERE metric = 'portal.messages_sent' AND labels->>'collector' = 'd'" | tr '|' ' ' >"$T/rows"
twice=$(awk '$2 != 1' "$T/rows" | wc -l)
[ "$twice" = 0 ] || fail "$twice samples landed more than once: $(awk '$2 != 1' "$T/rows" | head -3)"
never=$(awk -v max=$((BATCHES * BATCH)) '$1 < 0 || $1 >= max' "$T/rows" | wc -l)
[ "$never" = 0 ] || fail "$never rows were never emitted"
# expected: every completed sample but the damaged ones
sort -un "$sdir/completed" | awk -v B=$BATCH '{ for (i = 0; i < B; i++) print $1 * B + i }' | LC_ALL=C sort >"$T/completed_k"
LC_ALL=C comm -23 "$T/completed_k" <(LC_ALL=C sort "$T/expect_missing") >"$T/expect_k"
cut -d' ' -f1 "$T/rows" | LC_ALL=C sort >"$T/rows_k"
lost=$(LC_ALL=C comm -23 "$T/expect_k" "$T/rows_k" | wc -l)
[ "$lost" = 0 ] || fail "$lost undamaged samples did not land: $(LC_ALL=C comm -23 "$T/expect_k" "$T/rows_k" | head -3 | tr '\n' ' ')"
extra=$(LC_ALL=C comm -13 "$T/expect_k" "$T/rows_k" | wc -l)
[ "$extra" = 0 ] || fail "$extra samples of the damaged records landed"
echo "spool_corrupt ($nseg segments, $(wc -l <"$T/rows") samples shipped, $nmiss in the damaged records): OK"
