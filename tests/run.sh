#!/bin/sh
# run.sh BUILD - run every test: C test binaries, then scripts, against a real NSD on loopback.
BUILD=${1:-build}
# Debian's python3 (with python3-yaml, python3-authres), not a pyenv shim that lacks them.
export PATH="/usr/bin:/bin:/usr/sbin:/sbin:$PATH"
export BUILD AUTHSCORE="$BUILD/authscore" TESTDATA=tests/data
. tests/lib.sh
trap 'dns_stop' EXIT INT TERM
dns_start || { echo "run.sh: cannot start nsd" >&2; exit 1; }
fail=0; n=0
for t in "$BUILD"/tests/*; do
    [ -x "$t" ] || continue
    n=$((n + 1))
    if "$t" >"$BUILD/tests/$(basename "$t").log" 2>&1; then
        echo "ok   $(basename "$t"): $(tail -n 1 "$BUILD/tests/$(basename "$t").log")"
    else
        echo "FAIL $(basename "$t") (log: $BUILD/tests/$(basename "$t").log)"; tail -n 20 "$BUILD/tests/$(basename "$t").log"; fail=$((fail + 1))
    fi
done
for t in tests/*_test.sh tests/*_test.py; do
    [ -f "$t" ] || continue
    n=$((n + 1))
    log="$BUILD/tests/$(basename "$t").log"
    case "$t" in *.py) cmd="/usr/bin/python3 $t" ;; *) cmd="sh $t" ;; esac
    if $cmd >"$log" 2>&1; then
        echo "ok   $(basename "$t"): $(tail -n 1 "$log")"
    else
        echo "FAIL $(basename "$t") (log: $log)"; tail -n 20 "$log"; fail=$((fail + 1))
    fi
done
echo "run.sh: $((n - fail))/$n test programs passed ($BUILD)"
[ "$fail" -eq 0 ]
