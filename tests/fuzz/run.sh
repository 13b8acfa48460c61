#!/usr/bin/env bash
# Run every libFuzzer harness for SECONDS seconds on a scratch copy of its
# seed corpus (the checked-in corpus is never modified). Fails if any
# harness crashes, leaks, trips a sanitizer or an oracle; the crashing
# inputs are kept in BUILD_DIR/fuzz-artifacts/<harness>/.
#   tests/fuzz/run.sh BUILD_DIR SECONDS
# BUILD_DIR was configured with: CC=clang cmake -DPM_FUZZ=ON -DBUILD_TESTING=ON
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 BUILD_DIR SECONDS" >&2
  exit 2
fi
build=$1
secs=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
harnesses=(fuzz_config fuzz_settings fuzz_units fuzz_spool fuzz_hl7_frame
  fuzz_hl7_msg fuzz_fhir_bundle fuzz_fhir_caps fuzz_fhir_token)

# Known leaks of libraries we cannot fix (see lsan.supp).
export LSAN_OPTIONS="suppressions=$here/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

work=$(mktemp -d "${TMPDIR:-/tmp}/pm-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

status=0
for h in "${harnesses[@]}"; do
  bin=$build/tests/fuzz/$h
  if [ ! -x "$bin" ]; then
    echo "fuzz: $bin is missing: configure $build with CC=clang -DPM_FUZZ=ON and build it" >&2
    exit 2
  fi
  mkdir -p "$work/$h/corpus" "$work/$h/artifacts"
  cp "$here/corpus/$h/"* "$work/$h/corpus/"
  if "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
      -max_len=8192 -artifact_prefix="$work/$h/artifacts/" \
      "$work/$h/corpus" >"$work/$h/log" 2>&1; then
    runs=$(grep -o 'Done [0-9]* runs' "$work/$h/log" | tail -1 || true)
    echo "fuzz: $h: ok (${runs:-no summary} in ${secs}s)"
  else
    status=1
    echo "fuzz: $h: FAILED" >&2
    tail -n 40 "$work/$h/log" >&2
    mkdir -p "$build/fuzz-artifacts/$h"
    cp "$work/$h/artifacts/"* "$build/fuzz-artifacts/$h/" 2>/dev/null || true
    echo "fuzz: $h: crashing inputs in $build/fuzz-artifacts/$h/" >&2
  fi
done
exit $status
