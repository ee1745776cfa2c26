#!/bin/sh
# exim.sh - authscore.so inside a real Exim (Debian's exim4-daemon-heavy), with the plugin against
# the same Exim without it, on the benchmark corpus:
#   (a) messages per second through a loopback daemon delivering to a maildir;
#   (b) the time the plugin adds at the end of DATA with a warm cache (a long connection);
#   (c) the CPU the plugin adds to the first message of a fresh Exim process (dlopen, Lua, rules,
#       a cold check): median of -bh sessions of one message.
# Called by bench/run.sh.  Environment: BUILD, BENCH_DIR, CORPUS (manifest.tsv + messages), DNS
# (HOST:PORT of the NSD serving ZONES), ZONES.  Knobs: EXIM_BENCH_MESSAGES (400 through the
# daemon), EXIM_BENCH_CLIENTS (8 connections at a time), EXIM_BENCH_LONG (50 messages on one
# connection), EXIM_BENCH_RUNS (50 fresh -bh sessions), EXIM_BENCH_ROUNDS (2 daemon runs of each).
# Prints a few lines; writes $BENCH_DIR/exim.json.  Exit 1 with one line on a hard failure.
#
# Exim runs as tests/exim_test.sh runs it: unprivileged (nobody when we are root), with its own
# spool, log and maildir (on tmpfs, see below), on tests/exim/test.conf and the shipped ACL
# statements, with PROXY headers telling it the corpus's client addresses.  The
# "without" Exim is the same configuration and daemon with every client in relay_from_hosts, which
# the ACL does not check: the plugin is never called, everything else is the same.
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
BENCH_DIR=${BENCH_DIR:-$BUILD/bench}
SO=$BUILD/authscore.so
EXIM=/usr/sbin/exim4
PY=/usr/bin/python3          # Debian's python3: the one on PATH may be a shim without its modules
N=${EXIM_BENCH_MESSAGES:-400}
CLIENTS=${EXIM_BENCH_CLIENTS:-8}
LONG=${EXIM_BENCH_LONG:-50}
RUNS=${EXIM_BENCH_RUNS:-50}
ROUNDS=${EXIM_BENCH_ROUNDS:-2}
MANIFEST=${CORPUS:-}/manifest.tsv

die() { echo "exim: $*"; exit 1; }
[ -n "${CORPUS:-}" ] && [ -f "$MANIFEST" ] || die "CORPUS must name a folder holding manifest.tsv"
[ -n "${DNS:-}" ] || die "DNS must be HOST:PORT of the DNS server serving the corpus's zones"
[ -x "$EXIM" ] || die "$EXIM is missing (apt-get install exim4-daemon-heavy)"
[ -f "$SO" ] || die "$SO is not built"
ldd "$SO" 2>/dev/null | grep -q libasan && die "$SO is built with ASan and cannot be loaded into Exim"
mkdir -p "$BENCH_DIR" || die "cannot create $BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)

# Exim looks up the names of proxied clients with the system resolver.  As root, a private mount
# namespace points resolv.conf at an address where nothing listens: those lookups fail at once,
# cost the same in both runs, and never leave the machine.
if [ "$(id -u)" = 0 ] && [ -z "${AS_EXIM_NS:-}" ] && unshare -m true 2>/dev/null; then
    AS_EXIM_NS=1 exec unshare -m sh "$SELF" "$@"
fi

# Spool, log and maildir on tmpfs (/dev/shm) when there is one: Exim fsyncs every message several
# times, and this machine's disk flushes cost milliseconds that vary from one fsync to the next,
# which would drown the fraction of a millisecond being measured.  A real MX adds its disk's
# flush time to both runs alike.  EXIM_BENCH_TMP chooses another place.
TMPBASE=${EXIM_BENCH_TMP:-/dev/shm}
[ -d "$TMPBASE" ] && [ -w "$TMPBASE" ] || TMPBASE=/tmp
D=$(mktemp -d "$TMPBASE/authscore-eximbench.XXXXXX") || die "mktemp failed"
chmod 755 "$D"
daemon= LOG= NSD_PID= CG=
stop_daemon() {   # by the pid Exim logs, and the one the shell started
    if [ -n "$daemon" ]; then
        p=$(sed -n 's/.*daemon started: pid=\([0-9]*\),.*/\1/p' "$LOG" 2>/dev/null | head -n 1)
        [ -n "$p" ] && kill "$p" 2>/dev/null
        kill "$daemon" 2>/dev/null
        wait "$daemon" 2>/dev/null
        daemon=
    fi
    # The CPU accounting group goes once its last process (a delivery, maybe) has gone.
    if [ -n "$CG" ]; then
        i=0
        while ! rmdir "$CG" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
        CG=
    fi
}
cleanup() {
    stop_daemon
    [ -n "$NSD_PID" ] && kill "$NSD_PID" 2>/dev/null
    [ -n "${EXIM_BENCH_KEEP:-}" ] && echo "exim: kept $D" || rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

if [ -n "${AS_EXIM_NS:-}" ]; then
    echo 'nameserver 127.0.0.254' > "$D/resolv.conf"
    mount --bind "$D/resolv.conf" /etc/resolv.conf 2>/dev/null ||
        echo "exim: note: resolv.conf not replaced: Exim's PTR lookups of proxied clients use the system resolver"
fi

# ---- DNS: the driver's server, unless it rate-limits (see bench/rspamd_dns.py) -------------------
# Every connection is a fresh Exim process with a cold cache, so each message asks all its questions.
probe_name=$(awk -F'\t' '!/^#/ && NF >= 4 { d = $3; sub(/.*@/, "", d); if (d == "") d = $2; print d; exit }' "$MANIFEST")
EXIM_DNS=$DNS DNS_NOTE="the driver's server"
if ! $PY bench/rspamd_dns.py probe "$DNS" "$probe_name" > "$D/probe.out"; then
    cat "$D/probe.out"
    [ -n "${ZONES:-}" ] || die "$DNS does not answer a burst of questions in full (no server, or rate limiting: NSD rrl-ratelimit) and no ZONES were given to serve privately"
    served=$($PY bench/rspamd_dns.py serve "$D/nsd" $ZONES) || die "cannot start a private NSD on ZONES: $served"
    set -- $served    # HOST:PORT PIDFILE
    EXIM_DNS=$1 NSD_PID=$(cat "$2") DNS_NOTE="private NSD on the same zones ($DNS did not answer a burst in full: rrl-ratelimit: 0?)"
    echo "exim: $DNS does not answer a burst in full; the plugin asks a private NSD ($EXIM_DNS) on the same zone files"
fi

# ---- the per-run Exim (as tests/exim_test.sh builds it) -----------------------------------------------
if [ "$(id -u)" = 0 ]; then
    RUN_USER=nobody
    if ! id "$RUN_USER" >/dev/null 2>&1; then
        RUN_USER=authscore-test
        id "$RUN_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$RUN_USER"
    fi
    RUN_GROUP=$(id -gn "$RUN_USER")
    AS_USER="setpriv --reuid=$RUN_USER --regid=$RUN_GROUP --clear-groups --"
else
    RUN_USER=$(id -un) RUN_GROUP=$(id -gn) AS_USER=
fi
mkdir -p "$D/spool" "$D/log" "$D/maildir" "$D/acl" "$D/out" "$D/corpus"
# Copies: the tree (and the corpus) may not be readable by the unprivileged user.
cp "$SO" "$D/authscore.so"
cp examples/exim/authscore/rcpt.acl examples/exim/authscore/data.acl "$D/acl/"
# tests/exim/test.conf, with the switch: -DBENCH_NO_PLUGIN puts every client in relay_from_hosts.
grep -q '^hostlist relay_from_hosts = ' tests/exim/test.conf || die "tests/exim/test.conf has no relay_from_hosts line to switch"
sed -e "s#@DIR@#$D#g" -e "s#@SO@#$D/authscore.so#g" -e "s#@ACLDIR@#$D/acl#g" \
    -e "s#@USER@#$RUN_USER#g" -e "s#@GROUP@#$RUN_GROUP#g" \
    -e 's#^\(hostlist relay_from_hosts = .*\)$#.ifdef BENCH_NO_PLUGIN\nhostlist relay_from_hosts = <; 0.0.0.0/0 ; ::/0\n.else\n\1\n.endif#' \
    tests/exim/test.conf > "$D/exim.conf"
{
    echo 'authserv_id = "mx.receiver.test"'
    echo "dns = { servers = { \"$EXIM_DNS\" } }"
    echo 'allowlist = { ips = {} }'
} > "$D/authscore.conf"
# The corpus, readable by Exim's user; the client reads it as we do.
awk -F'\t' -v OFS='\t' '!/^#/ && NF >= 4' "$MANIFEST" > "$D/corpus/manifest.tsv"
M=$D/corpus/manifest.tsv
base=$(cd "$(dirname "$MANIFEST")" && pwd)
awk -F'\t' -v OFS='\t' -v b="$base" '{ if (substr($4, 1, 1) != "/") $4 = b "/" $4; print }' "$M" > "$M.abs" && mv "$M.abs" "$M"
if [ "$(id -u)" = 0 ]; then
    chown -R "$RUN_USER:$RUN_GROUP" "$D/spool" "$D/log" "$D/maildir"
    chmod 644 "$D"/*.conf
fi
$AS_USER "$EXIM" -C "$D/exim.conf" -bV > "$D/out/bV" 2>&1 || { tail -n 3 "$D/out/bV"; die "Exim rejects the configuration"; }
$AS_USER "$EXIM" -C "$D/exim.conf" -DBENCH_NO_PLUGIN -bV > "$D/out/bV" 2>&1 || { tail -n 3 "$D/out/bV"; die "Exim rejects the configuration without the plugin"; }

# ---- (a) and (b): a loopback daemon ----------------------------------------------------------------
PORT=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
delivered() { find "$D/maildir" -type f -path '*/new/*' | wc -l; }
accepted() { $PY -c 'import json, sys; print(json.load(open(sys.argv[1]))["codes"].get("250", 0))' "$1"; }
wait_delivered() {   # wait_delivered COUNT WHAT: up to 60 s for COUNT messages in the maildir
    i=0
    while [ "$(delivered)" -lt "$1" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i + 1)); done
    [ "$(delivered)" -ge "$1" ] || die "$2: $(delivered) of $1 accepted messages delivered after 60 s"
}
# The CPU of the daemon and every process it forks (receptions, deliveries), whatever else runs
# on the machine: a cgroup v1 cpuacct group, when we are root and one can be made.
CG_BASE=/sys/fs/cgroup/cpuacct
cg_usage() { if [ -n "$CG" ]; then cat "$CG/cpuacct.usage"; else echo 0; fi; }
# daemon_run MODE ROUND [EXIM-OPTIONS]: start the daemon, send N messages (a), wait for their
# deliveries, then one long connection (b); $D/out/MODE.ROUND.* hold the client's JSON and timings.
daemon_run() {
    name=$1.$2; shift 2
    rm -rf "$D/maildir"/* "$D/maildir"/.[!.]* "$D/spool/input" "$D/spool/msglog"
    LOG=$D/out/$name.log
    : > "$LOG"    # before the background job opens it: the wait below reads it at once
    CG=$CG_BASE/authscore-eximbench-$$-$name
    [ "$(id -u)" = 0 ] && mkdir "$CG" 2>/dev/null || CG=
    # With an untrusted -C Exim writes no log files: -v sends every log line to stderr, our log.
    sh -c '[ -z "$1" ] || echo $$ > "$1/tasks"; shift; exec "$@"' sh "$CG" \
        $AS_USER "$EXIM" -C "$D/exim.conf" "$@" -bdf -v -oX "$PORT" > "$LOG" 2>&1 &
    daemon=$!
    i=0
    while [ $i -lt 100 ] && ! grep -q 'daemon started' "$LOG"; do sleep 0.1; i=$((i + 1)); done
    grep -q "listening for SMTP on \[127.0.0.1\]:$PORT" "$LOG" || { tail -n 5 "$LOG"; die "the $name daemon did not start"; }
    # A few messages first: the executable, the .so and the corpus's pages are in memory.
    $PY bench/exim_client.py send "$PORT" "$M" "$CLIENTS" "$CLIENTS" > "$D/out/$name.warm" ||
        die "the $name warm-up failed: $(cat "$D/out/$name.warm")"
    wait_delivered "$(accepted "$D/out/$name.warm")" "$name warm-up"
    want=$(delivered)
    c0=$(cg_usage)
    $PY bench/exim_client.py send "$PORT" "$M" "$N" "$CLIENTS" > "$D/out/$name.send" ||
        die "the $name run failed: $(cat "$D/out/$name.send")"
    t0=$($PY -c 'import json, sys; print(json.load(open(sys.argv[1]))["start"])' "$D/out/$name.send")
    # Deliveries run in their own processes: the run ends when every accepted message is in the maildir.
    t1=$($PY bench/exim_client.py wait "$D/maildir" $((want + $(accepted "$D/out/$name.send"))) 120) ||
        die "the $name run: $t1"
    c1=$(cg_usage)
    echo "$t0 $t1" > "$D/out/$name.times"
    [ -z "$CG" ] || echo $((c1 - c0)) > "$D/out/$name.cpu_ns"
    # Our header in the delivered messages: proof the plugin ran (or did not).
    echo "$(grep -l -r '^Authentication-Results: mx.receiver.test;' "$D/maildir" 2>/dev/null | wc -l) $(delivered)" > "$D/out/$name.ar"
    $PY bench/exim_client.py long "$PORT" "$M" "$LONG" > "$D/out/$name.long" ||
        die "the $name long connection failed: $(cat "$D/out/$name.long")"
    stop_daemon
    panics=$(awk '/LOG: .*PANIC/ { getline; print }' "$LOG" | grep -v 'exim user lost privilege for using -C option' | head -n 1)
    [ -z "$panics" ] || die "the $name daemon logged a panic: $panics"
    if grep -q 'dlfunc{.*failed' "$LOG"; then die "the $name daemon: $(grep -m 1 'dlfunc{.*failed' "$LOG")"; fi
}
# Rounds alternate the two daemons and the best round of each counts: other work on the machine
# only ever slows a round down.
r=1
while [ $r -le "$ROUNDS" ]; do
    daemon_run without $r -DBENCH_NO_PLUGIN
    daemon_run with $r
    r=$((r + 1))
done

# ---- (b) and (c): -bh sessions, CPU of whole fresh processes ----------------------------------------
IP=$($PY bench/exim_client.py session "$M" 1 "$D/out/one.session")
$PY bench/exim_client.py session "$M" "$LONG" "$D/out/long.session" > /dev/null
if [ "$(id -u)" = 0 ]; then chmod 644 "$D/out"/*.session; fi
bh() {   # bh NAME RUNS SESSION [EXIM-OPTIONS]
    name=$1 runs=$2 session=$3; shift 3
    $PY bench/exim_client.py bh "$runs" "$D/out/$session.session" "$IP" -- $AS_USER "$EXIM" -C "$D/exim.conf" "$@" > "$D/out/$name.bh" ||
        die "-bh sessions ($name) failed"
}
# A check that the -bh switch works: the plugin's verdict is logged with it, not without it.
$AS_USER "$EXIM" -C "$D/exim.conf" -bh "$IP" < "$D/out/one.session" > /dev/null 2> "$D/out/probe-with.err"
$AS_USER "$EXIM" -C "$D/exim.conf" -DBENCH_NO_PLUGIN -bh "$IP" < "$D/out/one.session" > /dev/null 2> "$D/out/probe-without.err"
grep -q 'LOG: authscore:' "$D/out/probe-with.err" || die "-bh with the plugin: no verdict logged: $(grep -m 1 -i 'authscore\|dlfunc' "$D/out/probe-with.err")"
! grep -q 'LOG: authscore:' "$D/out/probe-without.err" || die "-bh without the plugin: the plugin ran"
verdict=$(sed -n 's/^LOG: authscore: \([a-z_]* [-0-9.]*\).*/\1/p' "$D/out/probe-with.err" | head -n 1)
LRUNS=$(( RUNS / 5 )); [ "$LRUNS" -ge 5 ] || LRUNS=5
bh one-without "$RUNS" one -DBENCH_NO_PLUGIN
bh one-with "$RUNS" one
bh long-without "$LRUNS" long -DBENCH_NO_PLUGIN
bh long-with "$LRUNS" long

# ---- the figures ---------------------------------------------------------------------------------------
$PY - "$D/out" "$BENCH_DIR/exim.json" "$N" "$CLIENTS" "$LONG" "$RUNS" "$LRUNS" "$ROUNDS" "$IP" "$verdict" "$DNS_NOTE" \
    "$($EXIM -bV 2>/dev/null | sed -n 's/^Exim version \([^ ]*\).*/\1/p' | head -n 1)" "$TMPBASE" <<'EOF'
import json, sys
out, dest = sys.argv[1:3]
n, clients, long_n, runs, lruns, rounds = (int(x) for x in sys.argv[3:9])
ip, verdict, dns_note, version, spool = sys.argv[9:14]
def j(name):
    return json.load(open(f"{out}/{name}"))
def rate(mode, r):
    t0, t1 = (float(x) for x in open(f"{out}/{mode}.{r}.times").read().split())
    return n / (t1 - t0)
def best(mode):   # the fastest round, and every round's rate
    rates = [rate(mode, r) for r in range(1, rounds + 1)]
    r = rates.index(max(rates)) + 1
    return max(rates), rates, j(f"{mode}.{r}.send")
def quickest(mode):   # the long connection with the lowest median
    longs = [j(f"{mode}.{r}.long") for r in range(1, rounds + 1)]
    return min(longs, key=lambda x: x["median_ms"])
with_rate, with_rates, with_send = best("with")
without_rate, without_rates, without_send = best("without")
lw, lo = quickest("with"), quickest("without")
def cpu_ms(mode):   # Exim's CPU a message (daemon, receptions, deliveries), the least of the rounds
    try:
        return min(int(open(f"{out}/{mode}.{r}.cpu_ns").read()) for r in range(1, rounds + 1)) / 1e6 / n
    except OSError:
        return None
cpu_with, cpu_without = cpu_ms("with"), cpu_ms("without")
ow, oo = j("one-with.bh"), j("one-without.bh")
gw, go = j("long-with.bh"), j("long-without.bh")
# Per further message on one connection: (session of L messages - session of 1) / (L - 1), with
# minus without; the first message's cost stays out of it.
def per_msg(key):
    return ((gw[key] - ow[key]) - (go[key] - oo[key])) / (long_n - 1)
ar_with, total_with = (int(x) for x in open(f"{out}/with.{rounds}.ar").read().split())
ar_without, total_without = (int(x) for x in open(f"{out}/without.{rounds}.ar").read().split())
r = {
    "exim_daemon_msgs_per_s_with": round(with_rate, 1),
    "exim_daemon_msgs_per_s_without": round(without_rate, 1),
    "data_acl_added_ms_warm": round(lw["median_ms"] - lo["median_ms"], 3),
    "first_message_added_cpu_ms": round(ow["cpu_ms"] - oo["cpu_ms"], 2),
    # CPU of every Exim process per message through the daemon: steadier than the rates on a
    # shared machine; 1000 / it is what one core would take
    "exim_daemon_cpu_ms_per_msg_with": round(cpu_with, 3) if cpu_with else None,
    "exim_daemon_cpu_ms_per_msg_without": round(cpu_without, 3) if cpu_without else None,
    "data_acl_added_cpu_ms_warm_bh": round(per_msg("cpu_ms"), 3),
    "data_acl_added_wall_ms_warm_bh": round(per_msg("wall_ms"), 3),
    "daemon": {"messages": n, "clients": clients, "one_message_per_connection": True, "rounds": rounds,
               "rates_with": [round(x, 1) for x in with_rates], "rates_without": [round(x, 1) for x in without_rates],
               "codes_with": with_send["codes"], "codes_without": without_send["codes"],
               "our_header_with": f"{ar_with}/{total_with}", "our_header_without": f"{ar_without}/{total_without}"},
    "long_connection": {"messages": long_n, "end_of_data_median_ms_with": round(lw["median_ms"], 3),
                        "end_of_data_median_ms_without": round(lo["median_ms"], 3),
                        "first_message_ms_with": round(lw["first_ms"], 3),
                        "first_message_ms_without": round(lo["first_ms"], 3), "codes_with": lw["codes"]},
    "fresh_process": {"runs": runs, "client": ip, "verdict": verdict,
                      "cpu_ms_with": round(ow["cpu_ms"], 2), "cpu_ms_without": round(oo["cpu_ms"], 2),
                      "wall_ms_with": round(ow["wall_ms"], 2), "wall_ms_without": round(oo["wall_ms"], 2)},
    "bh_long_sessions": {"runs": lruns, "cpu_ms_with": round(gw["cpu_ms"], 2), "cpu_ms_without": round(go["cpu_ms"], 2)},
    "exim_version": version, "dns": dns_note, "spool_on": spool,
}
json.dump(r, open(dest, "w"), indent=1)
print(f"exim {version}: daemon, {n} messages, {clients} clients, one per connection: "
      f"{with_rate:.0f} msgs/s with the plugin, {without_rate:.0f} without "
      f"(our Authentication-Results in {ar_with}/{total_with} delivered with, {ar_without}/{total_without} without)")
if cpu_with and cpu_without:
    print(f"exim: daemon CPU a message (receptions and deliveries): {cpu_with:.2f} ms with the plugin, "
          f"{cpu_without:.2f} ms without (+{cpu_with - cpu_without:.2f} ms)")
print(f"exim: added at the end of DATA, warm cache, one connection of {long_n}: "
      f"{r['data_acl_added_ms_warm']:.3f} ms (median {lw['median_ms']:.3f} vs {lo['median_ms']:.3f} ms); "
      f"-bh: {r['data_acl_added_cpu_ms_warm_bh']:.3f} ms CPU a message")
print(f"exim: first message of a fresh process (dlopen, Lua, rules, cold check; {verdict}): "
      f"+{r['first_message_added_cpu_ms']:.2f} ms CPU (median of {runs}: {ow['cpu_ms']:.2f} vs {oo['cpu_ms']:.2f} ms)")
if without_send["first_error"] or with_send["first_error"]:
    print(f"exim: client errors: {with_send['first_error'] or without_send['first_error']}")
EOF
