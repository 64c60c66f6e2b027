#!/usr/bin/env bash
# Runs the end-to-end suite several times in a row on a clean copy of the current commit, to catch
# the tests that fail now and then: the tests are built once, then `cargo test --locked --test e2e`
# runs N times (default 5), stopping at the first run that fails and naming it and its failing
# tests. Exit status 0 only if every run passed.
#
#   scripts/e2e-repeat.sh                   # five runs
#   scripts/e2e-repeat.sh 20 shared_cache::  # twenty runs of the tests whose names match
#
# Needs the README's prerequisites (a Rust toolchain), git, and redis-server on PATH (the tests
# start Redis themselves). Only committed work is tested: the copy is of HEAD. It builds in a
# target directory of its own, in the temporary directory, unless CARGO_TARGET_DIR names another.
# The logs of the runs are kept when one fails (their directory is printed), or always with
# E2E_REPEAT_LOGS=<dir>.
set -euo pipefail

runs=${1:-5}
if ! [[ $runs =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [RUNS] [TEST NAME FILTER...]   (RUNS: a positive number, default 5)" >&2
  exit 2
fi
shift $(($# > 0 ? 1 : 0))
filters=("$@")

for tool in git cargo redis-server; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "$tool is not on PATH; the end-to-end tests need it (redis-server: apt-get install redis-server)" >&2
    exit 2
  fi
done

root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
head=$(git -C "$root" rev-parse HEAD)
if [ -n "$(git -C "$root" status --porcelain --untracked-files=no)" ]; then
  echo "note: uncommitted changes in $root are not tested; the copy is of $head" >&2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/e2e-repeat.XXXXXX")
trap 'rm -rf "$work"' EXIT
logs=${E2E_REPEAT_LOGS:-$(mktemp -d "${TMPDIR:-/tmp}/e2e-repeat-logs.XXXXXX")}
mkdir -p "$logs"

# A repository of its own holding HEAD (pushed, so that a detached HEAD works too).
git init --quiet "$work/src"
git -C "$root" push --quiet --no-verify "$work/src" "$head:refs/heads/under-test"
git -C "$work/src" checkout --quiet under-test
cd "$work/src"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$work/target}

echo "building the end-to-end tests of $(git log -1 --format='%h %s' | cut -c1-80)"
started=$SECONDS
cargo test --locked --test e2e --no-run
echo "built in $((SECONDS - started)) s"

for ((run = 1; run <= runs; run++)); do
  log="$logs/run-$run.log"
  started=$SECONDS
  if cargo test --locked --test e2e -- ${filters[@]+"${filters[@]}"} >"$log" 2>&1; then
    echo "run $run of $runs: passed in $((SECONDS - started)) s ($(grep -m1 '^test result:' "$log"))"
    continue
  fi
  echo "run $run of $runs: FAILED after $((SECONDS - started)) s"
  failing=$(grep -E '^test .* \.\.\. FAILED$' "$log" | sed -E 's/^test (.*) \.\.\. FAILED$/  \1/' || true)
  if [ -n "$failing" ]; then
    echo "failing tests:"
    echo "$failing"
    echo
    # What each failing test printed, its panic included.
    sed -n '/^failures:$/,/^test result:/p' "$log" | head -n 300
  else
    # Not a test that failed (the build, or the harness itself): the end of the output says why.
    tail -n 40 "$log"
  fi
  echo
  echo "logs of every run so far: $logs"
  exit 1
done

echo "all $runs runs passed"
if [ -z "${E2E_REPEAT_LOGS:-}" ]; then
  rm -rf "$logs"
fi
