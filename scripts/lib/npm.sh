# The test peers' node packages (tests/package.json, pinned by the committed
# tests/package-lock.json; today node-hl7-client for tests/hl7/), installed
# into tests/node_modules/ with `npm ci` from the npm registry.
#
#   . scripts/lib/npm.sh
#   pm_npm_ci [ROOT]   # ROOT: the source tree (default: this file's ../..)
#
# Idempotent: does nothing (and prints nothing) when tests/node_modules
# holds a finished install at least as new as tests/package-lock.json;
# otherwise runs `npm ci --prefix ROOT/tests --no-audit --no-fund`, printing
# one line, under a lock so that tests started in parallel install once.
# Returns non-zero, with npm's output on stderr, when the install fails.

pm_npm_ci() {
  local root=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
  local dir=$root/tests
  local stamp=$dir/node_modules/.pm-npm-ci-done
  local lock=$dir/package-lock.json

  [ -f "$lock" ] || { echo "npm.sh: no $lock" >&2; return 1; }
  # a finished install leaves the stamp; npm ci removes node_modules first
  if [ -f "$stamp" ] && ! [ "$lock" -nt "$stamp" ]; then return 0; fi
  command -v npm >/dev/null || { echo "npm.sh: npm not found (node and npm come with the machine; scripts/deps installs nodejs)" >&2; return 1; }
  (
    if command -v flock >/dev/null; then
      exec 9>"$dir/.npm-ci.lock"
      flock 9
    fi
    # another test may have installed while this one waited
    if [ -f "$stamp" ] && ! [ "$lock" -nt "$stamp" ]; then exit 0; fi
    echo "npm ci in tests/ (node $(node --version 2>/dev/null), npm $(npm --version 2>/dev/null))"
    log=$(mktemp)
    if ! npm ci --prefix "$dir" --no-audit --no-fund >"$log" 2>&1; then
      cat "$log" >&2
      rm -f "$log"
      echo "npm.sh: npm ci in $dir failed" >&2
      exit 1
    fi
    rm -f "$log"
    touch "$stamp"
  )
}
