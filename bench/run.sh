#!/bin/sh
# run.sh BUILD - the benchmark: corpus, DNS and Redis servers on loopback, every measurement, one table.
#
# Run by `make bench` (which installs the Debian packages and builds first; BENCH_ITEMS="1 redis 7"
# measures only those items, keeping the other figures of the last run).  Writes into BUILD/bench/:
# corpus/ (generated once, again only when bench/corpus.py changes), machine.txt, authscore.json,
# results.json (every *.json fragment merged) and the callgrind profiles.
#
# bench/rspamd.sh (with RSPAMD=1) and bench/exim.sh, when present, run after the measurements while
# the servers are still up, as `sh bench/NAME.sh BUILD`, with this environment:
#   BUILD, AUTHSCORE   the build folder and build/authscore
#   BENCH_DIR          BUILD/bench (also BENCH_OUT): they write BENCH_DIR/NAME.json, merged into
#                      results.json and shown in the table (see rows_of in measure.py)
#   CORPUS, MANIFEST, ZONES   the corpus folder, its manifest (ip TAB helo TAB mail_from TAB path,
#                      paths relative to CORPUS) and the zone file NSD serves
#   DNS (also BENCH_DNS)   NSD serving ZONES, 127.0.0.1:PORT, without rate limiting
#   AUTHSCORE_MSGS_PER_S   item 1's figure (warm cache, one core, per CPU second), for ratios
BUILD=${1:-build}
export PATH="/usr/bin:/bin:/usr/sbin:/sbin:$PATH"   # Debian's python3 and its modules, not a pyenv shim
PY=/usr/bin/python3
OUT=$BUILD/bench
CORPUS=$OUT/corpus
CC=${CC:-cc}
BENCH_CFLAGS=${BENCH_CFLAGS:--std=gnu11 -Wall -Wextra -Werror -O2 -g}
SLOW_MS=20
failed=""

die() { echo "bench: FAILED: $*" >&2; exit 1; }
[ -x "$BUILD/authscore" ] && [ -f "$BUILD/authscore.so" ] && [ -f "$BUILD/libauthscore.a" ] ||
    die "build first: make all"
[ -n "${BENCH_LIBS:-}" ] || die "BENCH_LIBS is empty: run through make bench"

mkdir -p "$OUT"
# An earlier run's figures must not mix with this one's; BENCH_ITEMS="1 7" redoes only those items.
[ -n "${BENCH_ITEMS:-}" ] || rm -f "$OUT"/*.json
rm -rf "$OUT/tmp"
{
    echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -n 1), $(nproc) cores"
    echo "kernel: $(uname -srm); $(. /etc/os-release && echo "$PRETTY_NAME"); $(openssl version | cut -d' ' -f1-2)"
    commit=$(git rev-parse --short HEAD 2>/dev/null) &&
        { git diff --quiet HEAD -- plugin include lua Makefile || commit="$commit with local changes"; }
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit ${commit:-unknown}"
} > "$OUT/machine.txt"

# The two helpers: fresh (a process as Exim makes it; no library linked, the .so is dlopened)
# and loop (the engine's C API in one process).
$CC $BENCH_CFLAGS -I/usr/include/exim4 -rdynamic -o "$OUT/fresh" bench/fresh.c -ldl || die "cannot build bench/fresh.c"
$CC $BENCH_CFLAGS -Iinclude -o "$OUT/loop" bench/loop.c "$BUILD/libauthscore.a" $BENCH_LIBS || die "cannot build bench/loop.c"

stamp=$(sha256sum bench/corpus.py | cut -d' ' -f1)
if [ "$(cat "$CORPUS/stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "bench: generating the corpus (once: about half a minute)"
    rm -rf "$CORPUS" "$CORPUS.tmp"
    $PY bench/corpus.py "$CORPUS.tmp" || die "bench/corpus.py failed"
    echo "$stamp" > "$CORPUS.tmp/stamp"
    mv "$CORPUS.tmp" "$CORPUS"
fi
export BUILD BENCH_OUT="$OUT" BENCH_DIR="$OUT" CORPUS AUTHSCORE="$BUILD/authscore" MANIFEST="$CORPUS/manifest.tsv"
# Offline first: a corpus the engine does not pass would make every figure meaningless.
$PY bench/measure.py verify || die "the corpus does not pass SPF, DKIM and DMARC offline"

tmp=$(mktemp -d /tmp/authscore-bench.XXXXXX)
pids=""
cleanup() {
    [ -f "$tmp/nsd.pid" ] && kill "$(cat "$tmp/nsd.pid")" 2>/dev/null
    for p in $pids; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$tmp" "$OUT/tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
free_port() { $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# NSD serving the corpus zone, as tests/lib.sh starts it for the tests.
port=$(free_port)
{
    echo "server:"
    echo "  ip-address: 127.0.0.1"
    echo "  port: $port"
    echo "  username: \"\""
    echo "  zonesdir: \"$(cd "$CORPUS" && pwd)\""
    echo "  pidfile: \"$tmp/nsd.pid\""
    echo "  database: \"\""
    echo "  xfrdfile: \"$tmp/xfrd.state\""
    echo "  zonelistfile: \"$tmp/zone.list\""
    echo "  logfile: \"$tmp/nsd.log\""
    echo "  server-count: 1"
    echo "  rrl-ratelimit: 0"             # a benchmark asks the same names hundreds of times a second:
    echo "  rrl-whitelist-ratelimit: 0"   # rate limiting would truncate answers and send clients to TCP
    echo "remote-control:"
    echo "  control-enable: no"
    echo "zone:"
    echo "  name: \"test\""
    echo "  zonefile: \"bench.zone\""
} > "$tmp/nsd.conf"
/usr/sbin/nsd -c "$tmp/nsd.conf" -P "$tmp/nsd.pid" || die "nsd: $(cat "$tmp/nsd.log" 2>/dev/null)"
i=0
until drill -p "$port" @127.0.0.1 sender00.test TXT 2>/dev/null | grep -q 'v=spf1'; do
    i=$((i + 1)); [ $i -lt 100 ] || die "nsd does not answer: $(cat "$tmp/nsd.log")"; sleep 0.1
done
export BENCH_DNS="127.0.0.1:$port" DNS="127.0.0.1:$port" ZONES="$CORPUS/bench.zone"

# A server that answers every question SLOW_MS late and logs it (item 5 and the Redis figures).
$PY tests/zone_dns.py "$tmp/slowport" "$tmp/slow.log" "$CORPUS/bench.zone" --delay-ms $SLOW_MS 2>"$tmp/slow.err" &
pids="$pids $!"
i=0
until [ -s "$tmp/slowport" ]; do
    i=$((i + 1)); [ $i -lt 100 ] || die "tests/zone_dns.py did not start: $(cat "$tmp/slow.err")"; sleep 0.05
done
export SLOW_DNS="127.0.0.1:$(cat "$tmp/slowport")" SLOW_LOG="$tmp/slow.log" SLOW_MS

# A throwaway Redis on a unix socket, nothing saved.
redis-server --port 0 --unixsocket "$tmp/redis.sock" --save "" --appendonly no --dir "$tmp" >"$tmp/redis.log" 2>&1 &
pids="$pids $!"
i=0
until redis-cli -s "$tmp/redis.sock" ping 2>/dev/null | grep -q PONG; do
    i=$((i + 1)); [ $i -lt 100 ] || die "redis-server did not start: $(tail -n 3 "$tmp/redis.log")"; sleep 0.05
done
export REDIS_SOCK="$tmp/redis.sock"

$PY bench/measure.py run ${BENCH_ITEMS:-} || die "measurements failed"

AUTHSCORE_MSGS_PER_S=$($PY -c 'import json, sys; print(round(json.load(open(sys.argv[1]))["throughput"]["batch_1core_msgs_per_s"]))' "$OUT/authscore.json")
export AUTHSCORE_MSGS_PER_S
if [ "${RSPAMD:-}" = 1 ]; then
    if [ -f bench/rspamd.sh ]; then
        rm -f "$OUT/rspamd.json"    # a failed run must not leave the last run's figures standing
        sh bench/rspamd.sh "$BUILD" || failed="$failed bench/rspamd.sh"
    else
        echo "bench: RSPAMD=1 but bench/rspamd.sh does not exist yet: item 3 left out"
    fi
else
    echo "bench: item 3 (rspamd side by side) left out: make bench RSPAMD=1"
fi
if [ -f bench/exim.sh ]; then
    rm -f "$OUT/exim.json"
    sh bench/exim.sh "$BUILD" || failed="$failed bench/exim.sh"
fi

$PY bench/measure.py report || die "report failed"
[ -z "$failed" ] || die "failed:$failed (their figures may be missing above)"
