# Shared by the HL7 listener tests (source after lib.sh): the npm client,
# a daemon with an hl7 collector, and the counts in PostgreSQL as the TSV
# tests/hl7/gen.js writes (metric, day, facility, type, trigger, value).
. "$PM_SRC/scripts/lib/npm.sh"
pm_npm_ci >/dev/null || fail "npm ci in tests/ failed"
HL7_TZ=America/Denver
# Below the kernel's ephemeral range (32768-60999 by default): a port
# there may be the local end of some test's outgoing connection, and the
# listener on 0.0.0.0 would find it in use.
HL7_PORT=$((10000 + RANDOM % 20000))

# hl7_conf FILE [SETTINGS...]: a daemon with one hl7 collector "feed".
hl7_conf() {
  local file=$1
  shift
  pm_conf "$file" <<CONF
collectors = (
  { name = "feed"; plugin = "hl7"; labels = { clinic = "north"; };
    settings = { listen = "127.0.0.1:$HL7_PORT"; $* }; }
);
CONF
  sed -i "s|timezone = \"UTC\"|timezone = \"$HL7_TZ\"|" "$file"
}

# hl7_counts: the counts as gen.js's expected.tsv has them.
hl7_counts() {
  q "SELECT s.metric, to_char(x.ts AT TIME ZONE '$HL7_TZ', 'YYYY-MM-DD'),
            s.labels->>'facility', coalesce(s.labels->>'type', ''),
            coalesce(s.labels->>'trigger', ''), x.value::bigint
     FROM portalmetrics.samples x JOIN portalmetrics.series s ON s.id = x.series_id
     WHERE s.labels->>'collector' = 'feed' AND s.metric <> 'hl7.errors'
       AND s.metric NOT LIKE 'portalmetricsd.%'
     ORDER BY 1, 2, 3, 4, 5" | tr '|' '\t' | LC_ALL=C sort
}

# hl7_errors REASON: hl7.errors counted for that reason.
hl7_errors() {
  q "SELECT coalesce(sum(value), 0)::bigint FROM portalmetrics.samples_v
     WHERE metric = 'hl7.errors' AND labels->>'reason' = '$1'"
}
