#!/usr/bin/env bash
# Every C source is formatted as .clang-format says: clang-format
# --dry-run --Werror over daemon/*.[ch], include/**/*.h, plugins/**/*.c
# and tests/**/*.c. Lists the files that are not; exits 1 if any, 77
# (skipped) without clang-format. $CLANG_FORMAT picks the binary.
#
# Usage: format.sh [SOURCE_DIR]
# Fix a file with: clang-format -i FILE
set -u

src=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$src" || exit 2

cf=${CLANG_FORMAT:-}
if [ -z "$cf" ]; then
  for c in clang-format-14 clang-format; do
    if command -v "$c" >/dev/null 2>&1; then
      cf=$c
      break
    fi
  done
fi
if [ -z "$cf" ] || ! command -v "$cf" >/dev/null 2>&1; then
  echo "format: clang-format not found: skipped"
  exit 77
fi
if [ ! -f .clang-format ]; then
  echo "format: no .clang-format in $src"
  exit 1
fi

mapfile -t files < <(
  {
    find daemon -maxdepth 1 -type f \( -name '*.c' -o -name '*.h' \)
    find include -type f -name '*.h'
    find plugins tests -type f -name '*.c'
  } 2>/dev/null | sort
)
if [ ${#files[@]} -eq 0 ]; then
  echo "format: no sources found under $src"
  exit 1
fi

bad=()
for f in "${files[@]}"; do
  if ! "$cf" --style=file --dry-run --Werror "$f" >/dev/null 2>&1; then
    bad+=("$f")
  fi
done

if [ ${#bad[@]} -ne 0 ]; then
  echo "format: ${#bad[@]} of ${#files[@]} files are not formatted ($("$cf" --version | head -1)):"
  printf '  %s\n' "${bad[@]}"
  echo "format: fix with: $cf -i FILE (see one's diff with: $cf FILE | diff FILE -)"
  exit 1
fi
echo "format: OK (${#files[@]} files)"
exit 0
