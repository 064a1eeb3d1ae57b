#!/usr/bin/env bash
# Runs every fuzz target of the module for a given duration each.
#   fuzz/run.sh            # 5 minutes per target
#   fuzz/run.sh 30s        # 30 seconds per target
# New crashers are written under <package>/testdata/fuzz/<Target>/ by go test;
# commit them as seeds once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
dur="${1:-5m}"
status=0
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "== $pkg $target ($dur)"
    if ! go test "$pkg" -run '^$' -fuzz "^${target}\$" -fuzztime "$dur"; then
      echo "FAILED: $pkg $target"
      status=1
    fi
  done
done
exit $status
