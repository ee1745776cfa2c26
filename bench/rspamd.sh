#!/bin/sh
# rspamd.sh - rspamd 3.4 (Debian's package) with only its spf, dkim and dmarc modules, fed the
# benchmark corpus over loopback HTTP: warm-cache messages per second, and whether its verdicts
# agree with authscore's.  Called by bench/run.sh under `make bench RSPAMD=1`.
#
# Environment (from the driver): BUILD, BENCH_DIR, CORPUS (manifest.tsv + messages), DNS
# (HOST:PORT of the NSD serving ZONES), ZONES (its zone files), AUTHSCORE (the command).
# Knobs: RSPAMD_WORKERS (1), RSPAMD_CONCURRENCY (32 requests in flight), RSPAMD_REQUESTS
# (measured requests: the corpus, at least 5000).
# Prints a few lines; writes $BENCH_DIR/rspamd.json.  Exit 1 with one line on a hard failure.
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
BENCH_DIR=${BENCH_DIR:-$BUILD/bench}
AUTHSCORE=${AUTHSCORE:-$BUILD/authscore}
WORKERS=${RSPAMD_WORKERS:-1}
CONC=${RSPAMD_CONCURRENCY:-32}
PY=/usr/bin/python3          # Debian's python3: the one on PATH may be a shim without its modules
MANIFEST=${CORPUS:-}/manifest.tsv

die() { echo "rspamd: $*"; exit 1; }
[ -n "${CORPUS:-}" ] && [ -f "$MANIFEST" ] || die "CORPUS must name a folder holding manifest.tsv"
[ -n "${DNS:-}" ] || die "DNS must be HOST:PORT of the DNS server serving the corpus's zones"
[ -x "$AUTHSCORE" ] || die "$AUTHSCORE is not built"
mkdir -p "$BENCH_DIR" || die "cannot create $BENCH_DIR"

# Installed when missing (as root; otherwise deps.sh prints the apt-get line and we stop).
if ! command -v rspamd >/dev/null 2>&1 || ! command -v rspamadm >/dev/null 2>&1; then
    sh tests/deps.sh rspamd || die "rspamd is not installed and cannot be installed here"
fi
VERSION=$(rspamd --version 2>/dev/null | sed -n 's/.*version \([0-9.]*\).*/\1/p' | head -n 1)

D=$(mktemp -d /tmp/authscore-rspamd.XXXXXX) || die "mktemp failed"
chmod 755 "$D"
MAIN= NSD_PID=
cleanup() {
    [ -n "$MAIN" ] && kill "$MAIN" 2>/dev/null && wait "$MAIN" 2>/dev/null
    [ -n "$NSD_PID" ] && kill "$NSD_PID" 2>/dev/null
    [ -n "${RSPAMD_KEEP:-}" ] && echo "rspamd: kept $D" || rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# ---- DNS: the driver's server, unless it rate-limits (see bench/rspamd_dns.py) ----------------
# The probe asks for a name the corpus needs: the envelope domain of the first message.
probe_name=$(awk -F'\t' '!/^#/ && NF >= 4 { d = $3; sub(/.*@/, "", d); if (d == "") d = $2; print d; exit }' "$MANIFEST")
RSPAMD_DNS=$DNS DNS_NOTE="the driver's server"
if ! $PY bench/rspamd_dns.py probe "$DNS" "$probe_name" > "$D/probe.out"; then
    cat "$D/probe.out"
    [ -n "${ZONES:-}" ] || die "$DNS does not answer a burst of questions in full (no server, or rate limiting: NSD rrl-ratelimit) and no ZONES were given to serve privately"
    served=$($PY bench/rspamd_dns.py serve "$D/nsd" $ZONES) || die "cannot start a private NSD on ZONES: $served"
    set -- $served    # HOST:PORT PIDFILE
    RSPAMD_DNS=$1 NSD_PID=$(cat "$2") DNS_NOTE="private NSD on the same zones ($DNS did not answer a burst in full: rrl-ratelimit: 0?)"
    echo "rspamd: $DNS does not answer a burst in full; rspamd asks a private NSD ($RSPAMD_DNS) on the same zone files"
fi

# ---- the configuration --------------------------------------------------------------------------
PORT=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
if [ "$(id -u)" = 0 ]; then
    # rspamd refuses to run workers as root: nobody, owning only this run's folder.
    RUN_USER=nobody RUN_GROUP=$(id -gn nobody)
    set -- -u "$RUN_USER" -g "$RUN_GROUP"
    chown "$RUN_USER:$RUN_GROUP" "$D"
else
    set --
fi
# A configuration of our own, none of /etc/rspamd: rspamd enables a Lua plugin only when it has a
# section, and a C module only when listed in `filters`, so what is not named here does not run
# (no regexp rules, fuzzy, bayes, RBLs, reputation, history in Redis, greylisting, ...).
cat > "$D/rspamd.conf" <<EOF
options {
  pidfile = "$D/rspamd.pid";
  # C modules: dkim only (spf and dmarc are Lua plugins, enabled by their sections below).
  filters = "dkim";
  # The corpus's DNS server and nothing else; rspamd has no DNS cache of its own (it expects a
  # local caching resolver), so the DMARC record is asked for every message.
  dns {
    nameserver = ["$RSPAMD_DNS"];
    timeout = 2s;      # authscore's per-query default
    retransmits = 2;
  }
  # Every path in this run's folder: nothing under /var/lib/rspamd or /run.
  tempdir = "$D";
  cache_file = "$D/symbols.cache";
  hs_cache_dir = "$D";
  stats_file = "$D/stats.ucl";
}
# Errors only: a log line per message would cost rspamd time authscore batch does not spend.
logging { type = "file"; filename = "$D/rspamd.log"; level = "error"; }
# One normal worker (the scanner) per authscore process; no controller, no proxy, no fuzzy.
worker "normal" { bind_socket = "127.0.0.1:$PORT"; count = $WORKERS; }
modules { path = "\${PLUGINSDIR}"; }
# Loopback and authenticated clients are checked too (the corpus's clients are neither, but a
# generated corpus may use private addresses); per-process record caches stay on, like
# authscore's warm cache.
spf   { check_local = true; check_authed = true; spf_cache_size = 2k; spf_cache_expire = 1d; }
dkim  { check_local = true; check_authed = true; dkim_cache_size = 2k; dkim_cache_expire = 1d; }
# DMARC reports would need Redis: off.
dmarc { check_local = true; check_authed = true; reporting { enabled = false; } }
# The stock actions and the scores of the symbols of these three modules (policies group).
.include "\$CONFDIR/actions.conf"
group "policies" { .include "\$CONFDIR/scores.d/policies_group.conf" }
EOF
rspamadm configtest -c "$D/rspamd.conf" > "$D/configtest.out" 2>&1 ||
    { cat "$D/configtest.out"; die "configuration rejected by rspamadm configtest"; }

# ---- start ---------------------------------------------------------------------------------------
# One worker is pinned to core 0 (its children inherit the mask) and the client to core 1, so the
# scanner has one whole core, as authscore batch does on one core.  With more workers, no pinning.
NCPU=$(nproc 2>/dev/null || echo 1)
if [ "$WORKERS" = 1 ] && [ "$NCPU" -ge 2 ]; then
    PIN_SERVER="taskset -c 0" PIN_CLIENT="taskset -c 1" PINNING="rspamd worker on cpu 0, client on cpu 1"
else
    PIN_SERVER= PIN_CLIENT= PINNING="none ($WORKERS workers, $NCPU cpus)"
fi
$PIN_SERVER rspamd -f -c "$D/rspamd.conf" "$@" --var=DBDIR="$D" --var=RUNDIR="$D" --var=LOGDIR="$D" \
    > "$D/stdout.log" 2>&1 &
MAIN=$!
# Start-up compiles the public suffix list (no hyperscan in Debian's build): allow a minute.
$PY - "$PORT" "$MAIN" <<'EOF' || { tail -n 5 "$D/stdout.log" "$D/rspamd.log" 2>/dev/null; die "rspamd did not answer /ping within 60 s"; }
import os, sys, time, urllib.request
port, pid = sys.argv[1], int(sys.argv[2])
direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # loopback only, whatever http_proxy says
for _ in range(600):
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("rspamd exited at start-up")
    try:
        if direct.open(f"http://127.0.0.1:{port}/ping", timeout=1).read().startswith(b"pong"):
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit(1)
EOF
workers=$(pgrep -P "$MAIN" -f 'rspamd: normal' | tr '\n' ' ')
[ -n "$workers" ] || die "no rspamd normal worker found"
cpu_ticks() {   # utime + stime of the workers, in clock ticks
    for w in $workers; do awk '{ print $14 + $15 }' "/proc/$w/stat" 2>/dev/null; done | awk '{ s += $1 } END { print s + 0 }'
}

# ---- warm-up, then the measured pass --------------------------------------------------------------
lines=$(awk -F'\t' '!/^#/ && NF >= 4' "$MANIFEST" | wc -l)
[ "$lines" -gt 0 ] || die "$MANIFEST has no messages"
REQUESTS=${RSPAMD_REQUESTS:-$lines}
[ -n "${RSPAMD_REQUESTS:-}" ] || [ "$REQUESTS" -ge 5000 ] || REQUESTS=5000
# Warm-up: every message once, so every SPF record and DKIM key is in rspamd's caches.
$PIN_CLIENT $PY bench/rspamd_client.py "$PORT" "$MANIFEST" "$CONC" "$lines" "$D/warm.symbols" > "$D/warm.json" ||
    die "the warm-up pass failed: $(cat "$D/warm.json")"
t0=$(cpu_ticks)
$PIN_CLIENT $PY bench/rspamd_client.py "$PORT" "$MANIFEST" "$CONC" "$REQUESTS" "$D/run.symbols" > "$D/run.json" ||
    die "the measured pass failed: $(cat "$D/run.json")"
t1=$(cpu_ticks)
# rspamd 3.4's resolver spins on a TCP DNS socket once an answer was truncated: an idle worker that
# still burns CPU means the figure is not rspamd's own.
sleep 1
t2=$(cpu_ticks)

# ---- authscore's verdicts on the same manifest, compared ------------------------------------------
"$AUTHSCORE" batch --dns "$RSPAMD_DNS" "$MANIFEST" > "$D/authscore.jsonl" 2> "$D/authscore.err" ||
    die "authscore batch failed: $(head -n 1 "$D/authscore.err")"

$PY - "$D" "$MANIFEST" "$BENCH_DIR/rspamd.json" "$t0" "$t1" "$t2" "$(getconf CLK_TCK)" \
    "$WORKERS" "$CONC" "$PINNING" "${VERSION:-unknown}" "$DNS_NOTE" <<'EOF'
import json, sys
d, manifest, out = sys.argv[1:4]
t0, t1, t2, hz = (int(x) for x in sys.argv[4:8])
workers, conc, pinning, version, dns_note = int(sys.argv[8]), int(sys.argv[9]), *sys.argv[10:13]
run = json.load(open(f"{d}/run.json"))
warm = json.load(open(f"{d}/warm.json"))
rspamd = [json.loads(l) for l in open(f"{d}/run.symbols")]
ours = [json.loads(l) for l in open(f"{d}/authscore.jsonl") if l.startswith("{") and '"symbols"' in l]
paths = [l.rstrip("\n").split("\t")[3] for l in open(manifest) if not l.startswith("#") and l.count("\t") >= 3]

# The three modules' symbols; rspamd's "allow with failures" is a DMARC pass all the same.
def auth(names):
    names = {"DMARC_POLICY_ALLOW" if n == "DMARC_POLICY_ALLOW_WITH_FAILURES" else n for n in names}
    return sorted(n for n in names if n.startswith(("R_SPF_", "R_DKIM_", "DMARC_")))

# authscore's line for manifest line i: the i-th, unless a line was skipped; then by path.
by_path = {o.get("path"): o for o in ours}
def authscore_for(i):
    if i < len(ours) and i < len(paths) and ours[i].get("path") == paths[i]:
        return ours[i]
    return by_path.get(paths[i]) if i < len(paths) else None

agree, allow, compared, differ = 0, 0, 0, []
for i, syms in enumerate(rspamd):
    o = authscore_for(i)
    if syms is None or o is None:
        continue
    compared += 1
    theirs, mine = auth(syms), auth(s["name"] for s in o["symbols"])
    allow += {"R_SPF_ALLOW", "R_DKIM_ALLOW", "DMARC_POLICY_ALLOW"} <= set(theirs)
    if theirs == mine:
        agree += 1
    elif len(differ) < 5:
        differ.append({"message": paths[i] if i < len(paths) else i, "rspamd": theirs, "authscore": mine})
cpu_s = (t1 - t0) / hz
rate = run["requests"] / run["seconds"]
result = {
    "rspamd_msgs_per_s": round(rate, 1),
    "workers": workers,
    "agree": f"{agree}/{compared}",
    "rspamd_all_allow": f"{allow}/{compared}",
    "requests": run["requests"], "errors": run["errors"] + warm["errors"], "seconds": round(run["seconds"], 3),
    "concurrency": conc,
    "worker_cpu_ms_per_msg": round(cpu_s * 1000 / run["requests"], 3),
    # what one fully busy worker would take: steadier than the wall-clock rate on a shared machine
    "rspamd_msgs_per_cpu_s": round(run["requests"] / cpu_s, 1) if cpu_s else None,
    "worker_cpu_utilisation": round(cpu_s / run["seconds"] / workers, 2),
    "worker_idle_cpu_after_run": round((t2 - t1) / hz / workers, 2),
    "pinning": pinning, "rspamd_version": version, "dns": dns_note,
    "modules": ["spf", "dkim", "dmarc"],
    "disagreements": differ,
}
if run["first_error"] or warm["first_error"]:
    result["first_error"] = run["first_error"] or warm["first_error"]
json.dump(result, open(out, "w"), indent=1)
print(f"rspamd {version}, spf+dkim+dmarc only, {workers} worker(s) ({pinning}), {conc} requests in flight")
print(f"rspamd: {rate:.0f} msgs/s warm cache ({run['requests']} messages in {run['seconds']:.2f} s, "
      f"worker {result['worker_cpu_ms_per_msg']:.3f} ms CPU a message, {result['worker_cpu_utilisation']:.0%} busy)")
print(f"rspamd: verdicts agree with authscore on {agree}/{compared} messages; "
      f"R_SPF_ALLOW+R_DKIM_ALLOW+DMARC_POLICY_ALLOW on {allow}/{compared}")
for x in differ[:3]:
    print(f"rspamd: differs on {x['message']}: rspamd {' '.join(x['rspamd'])}; authscore {' '.join(x['authscore'])}")
if result["errors"]:
    print(f"rspamd: {result['errors']} requests failed: {result.get('first_error')}")
if result["worker_idle_cpu_after_run"] > 0.2:
    print("rspamd: WARNING: the idle worker keeps spinning (DNS over TCP after truncated answers): the figure understates rspamd")
EOF
