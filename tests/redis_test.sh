#!/bin/sh
# redis_test.sh - the DNS cache shared through Redis, end to end: real redis-server and Sentinel processes and a counting DNS server on loopback.
AUTHSCORE=${AUTHSCORE:-build/authscore}
export PATH="/usr/bin:/bin:/usr/sbin:/sbin:$PATH"
tmp=$(mktemp -d /tmp/authscore-redis.XXXXXX)
pids=""
pass=0; total=0
ok()  { pass=$((pass + 1)); total=$((total + 1)); }
bad() { total=$((total + 1)); echo "FAIL: $*"; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
cleanup() {
    for p in $pids; do kill -CONT "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
free_port() { /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# redis_up NAME PORT [ARGS...]: a throwaway redis-server (PORT 0: unix socket only) at $tmp/NAME.sock.
redis_up() {
    name=$1 port=$2; shift 2
    mkdir -p "$tmp/$name"
    redis-server --port "$port" --bind 127.0.0.1 --unixsocket "$tmp/$name.sock" --save "" --appendonly no \
        --dir "$tmp/$name" --enable-debug-command local "$@" >"$tmp/$name.log" 2>&1 &
    echo $! > "$tmp/$name.pid"; pids="$pids $!"
    i=0; while [ $i -lt 100 ]; do
        [ -S "$tmp/$name.sock" ] && redis-cli -s "$tmp/$name.sock" ping 2>/dev/null | grep -q -e PONG -e NOAUTH && return 0
        sleep 0.05; i=$((i + 1))
    done
    echo "redis_test: redis-server $name did not start: $(tail -n 3 "$tmp/$name.log")"; exit 1
}
rcli() { name=$1; shift; redis-cli -s "$tmp/$name.sock" "$@"; }
redis_kill() { kill -9 "$(cat "$tmp/$1.pid")" 2>/dev/null; wait "$(cat "$tmp/$1.pid")" 2>/dev/null; rm -f "$tmp/$1.sock"; }

# The counting DNS server: every question it is asked is one line in $tmp/dns.log.
/usr/bin/python3 tests/zone_dns.py "$tmp/dnsport" "$tmp/dns.log" examples/zone.db 2>"$tmp/dns.err" & pids="$pids $!"
i=0; while [ ! -s "$tmp/dnsport" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
[ -s "$tmp/dnsport" ] || { echo "redis_test: DNS server did not start: $(cat "$tmp/dns.err")"; exit 1; }
DNS="127.0.0.1:$(cat "$tmp/dnsport")"
queries() { wc -l < "$tmp/dns.log" | tr -d ' '; }
distinct() { sort -u "$tmp/dns.log" | wc -l | tr -d ' '; }

# Messages: the five examples, and three unsigned ones whose lookups answer NXDOMAIN and NODATA.
mkdir "$tmp/m"
printf 'From: a@example.org\r\nTo: b@example.com\r\nSubject: list\r\n\r\nhello\r\n' > "$tmp/m/org.eml"
printf 'From: x@nx.example.com\r\nTo: b@example.com\r\nSubject: nx\r\n\r\nhello\r\n' > "$tmp/m/nx.eml"
printf 'From: y@mx.example.com\r\nTo: b@example.com\r\nSubject: nodata\r\n\r\nhello\r\n' > "$tmp/m/nodata.eml"
{
    grep -v '^#' examples/messages.txt | awk -v d="$PWD/examples/messages" 'NF >= 4 { printf "%s\t%s\t%s\t%s/%s\n", $2, $3, $4, d, $1 }'
    printf '198.51.100.7\tlists.example.org\tbounces@lists.example.org\t%s/m/org.eml\n' "$tmp"
    printf '192.0.2.99\thost.nx.example.com\tx@nx.example.com\t%s/m/nx.eml\n' "$tmp"
    printf '192.0.2.25\tmx.example.com\ty@mx.example.com\t%s/m/nodata.eml\n' "$tmp"
} > "$tmp/one"
cat "$tmp/one" "$tmp/one" > "$tmp/manifest"      # twice: the second round is the per-process cache's
nmsg=$(wc -l < "$tmp/manifest" | tr -d ' ')

# conf NAME [REDIS-LINE...]: an authscore.conf asking our DNS server, with back-off short enough for a test.
conf() {
    f="$tmp/$1.conf"; shift
    { echo "dns = { servers = { \"$DNS\" }, timeout_ms = 1000 }"
      echo 'redis_options = { connect_ms = 50, io_ms = 50, backoff_ms = 2000, dns_ttl_max = 3600 }'
      for l in "$@"; do echo "$l"; done; } > "$f"
}
conf plain
redis_up main 0
conf main "redis = \"unix:$tmp/main.sock\""

# The reference: no Redis at all.
: > "$tmp/dns.log"
"$AUTHSCORE" batch --config "$tmp/plain.conf" "$tmp/manifest" > "$tmp/ref.out" 2>"$tmp/ref.err"
check '[ $? -eq 0 ] && [ -s "$tmp/ref.out" ]' "reference run failed: $(cat "$tmp/ref.err")"
D=$(distinct); Q1=$(queries)
check '[ "$Q1" -eq "$D" ]' "one process asked $Q1 questions, $D distinct"

echo "== 1. eight parallel batch runs share the cache"
: > "$tmp/dns.log"
i=1; while [ $i -le 8 ]; do
    "$AUTHSCORE" batch --config "$tmp/main.conf" "$tmp/manifest" > "$tmp/p$i.out" 2>"$tmp/p$i.err" & eval "bp$i=$!"
    i=$((i + 1))
done
i=1; while [ $i -le 8 ]; do
    eval "wait \$bp$i"; rc=$?
    check '[ $rc -eq 0 ] && cmp -s "$tmp/ref.out" "$tmp/p$i.out" && [ ! -s "$tmp/p$i.err" ]' \
        "parallel run $i: rc=$rc, verdicts differ or errors: $(head -c 300 "$tmp/p$i.err")"
    i=$((i + 1))
done
Q8=$(queries)
dup=$(sort "$tmp/dns.log" | uniq -d | head -n 3 | tr '\n' ' ')
check '[ "$Q8" -eq "$D" ] && [ -z "$dup" ]' "8 processes: DNS saw $Q8 queries for $D questions (repeated: $dup)"
keys=$(rcli main --scan --pattern 'as:dns:*' | wc -l | tr -d ' ')
check '[ "$keys" -eq "$D" ]' "$keys keys in Redis for $D questions"
check '[ -z "$(rcli main --scan --pattern "as:dnslock:*")" ]' "locks left behind"
for k in 'as:dns:TXT:_dmarc.nx.example.com' 'as:dns:TXT:mx.example.com'; do   # NXDOMAIN and NODATA: the SOA minimum
    t=$(rcli main ttl "$k")
    check '[ "$t" -gt 290 ] && [ "$t" -le 300 ]' "negative answer $k kept ${t}s, expected the SOA minimum 300"
done
t=$(rcli main ttl 'as:dns:TXT:example.com')
check '[ "$t" -gt 3590 ] && [ "$t" -le 3600 ]' "positive answer kept ${t}s, expected 3600"
: > "$tmp/dns.log"
wave=""
i=1; while [ $i -le 8 ]; do "$AUTHSCORE" batch --config "$tmp/main.conf" "$tmp/manifest" > "$tmp/p$i.out" 2>&1 & wave="$wave $!"; i=$((i + 1)); done
for p in $wave; do wait "$p"; done
check '[ "$(queries)" -eq 0 ]' "a second wave of 8 runs asked DNS $(queries) times"
echo "figure: 8 parallel processes x $nmsg messages: DNS saw $Q8 queries with Redis, $((8 * Q1)) without (each process asks $Q1); second wave: $(queries)"

echo "== 2. Redis killed mid-run, and Redis stalled: same verdicts, bounded added time"
# A long-lived process: the first half of the manifest, Redis killed, the second half.
head -n 4 "$tmp/one" > "$tmp/part1"; tail -n +5 "$tmp/one" > "$tmp/part2"
rcli main flushall > /dev/null
mkfifo "$tmp/fifo"
"$AUTHSCORE" batch --config "$tmp/main.conf" - < "$tmp/fifo" > "$tmp/kill.out" 2>"$tmp/kill.err" & bpid=$!; pids="$pids $bpid"
exec 3> "$tmp/fifo"
cat "$tmp/part1" >&3
i=0; while [ "$(wc -l < "$tmp/kill.out")" -lt 4 ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
redis_kill main
t0=$(now_ms); cat "$tmp/part2" >&3; exec 3>&-
wait $bpid; rc=$?; t1=$(now_ms)
head -n "$(wc -l < "$tmp/one")" "$tmp/ref.out" > "$tmp/ref.one"
head -n -1 "$tmp/kill.out" > "$tmp/kill.cmp"
check '[ $rc -eq 0 ] && cmp -s "$tmp/kill.cmp" "$tmp/ref.one"' "Redis killed mid-batch: rc=$rc or verdicts differ"
check '[ "$(grep -c "not using Redis" "$tmp/kill.err")" -eq 1 ]' "Redis killed: expected one log line, got: $(cat "$tmp/kill.err")"
echo "   Redis killed mid-batch: second half in $((t1 - t0)) ms; logged: $(head -n 1 "$tmp/kill.err")"

# Fresh processes (Exim's fork per connection): without Redis, with Redis dead, with Redis stalled.
N=16
run_checks() {   # run_checks CONF OUT: N fresh `authscore check` processes cycling over the messages; prints ms
    : > "$2"; : > "$2.err"
    s=$(now_ms); i=0
    while [ $i -lt $N ]; do
        line=$(sed -n "$((i % $(wc -l < "$tmp/one") + 1))p" "$tmp/one")
        ip=$(echo "$line" | cut -f1); helo=$(echo "$line" | cut -f2); mf=$(echo "$line" | cut -f3); path=$(echo "$line" | cut -f4)
        "$AUTHSCORE" check --config "$1" --json --ip "$ip" --helo "$helo" --mail-from "$mf" "$path" >> "$2" 2>>"$2.err" || echo "rc $?" >> "$2"
        i=$((i + 1))
    done
    echo $(( $(now_ms) - s ))
}
ms_plain=$(run_checks "$tmp/plain.conf" "$tmp/c.ref")
ms_dead=$(run_checks "$tmp/main.conf" "$tmp/c.dead")
check 'cmp -s "$tmp/c.ref" "$tmp/c.dead"' "Redis dead: verdicts differ"
check '[ "$(grep -c "not using Redis" "$tmp/c.dead.err")" -eq $N ]' "Redis dead: expected one log line per process"
redis_up main 0
rcli main debug sleep 5 > /dev/null & spid=$!; pids="$pids $spid"
sleep 0.2
ms_stall=$(run_checks "$tmp/main.conf" "$tmp/c.stall")
check 'cmp -s "$tmp/c.ref" "$tmp/c.stall"' "Redis stalled: verdicts differ"
check 'grep -q timeout "$tmp/c.stall.err"' "Redis stalled: no timeout logged"
added=$(( (ms_stall - ms_plain) / N ))
check '[ $added -lt 400 ]' "Redis stalled: $added ms added per process"
echo "   $N fresh processes: no Redis $ms_plain ms, Redis dead $ms_dead ms, Redis stalled $ms_stall ms" \
     "(added per process: dead $(( (ms_dead - ms_plain) / N )) ms, stalled $added ms; io_ms 50)"
# A long-lived process while Redis is stopped (SIGSTOP, a stall as long as we like): one timeout, then the back-off.
wait $spid
kill -STOP "$(cat "$tmp/main.pid")"
t0=$(now_ms)
"$AUTHSCORE" batch --config "$tmp/main.conf" "$tmp/manifest" > "$tmp/stall.out" 2>"$tmp/stall.err"; rc=$?
t1=$(now_ms)
kill -CONT "$(cat "$tmp/main.pid")"
check '[ $rc -eq 0 ] && cmp -s "$tmp/stall.out" "$tmp/ref.out"' "batch while Redis stalls: rc=$rc or verdicts differ"
check '[ "$(grep -c "not using Redis" "$tmp/stall.err")" -eq 1 ]' "batch while Redis stalls: $(grep -c . "$tmp/stall.err") log lines"
echo "   batch of $nmsg messages while Redis is stopped: $((t1 - t0)) ms, $(grep -c "not using Redis" "$tmp/stall.err") timeout logged"
i=0; while ! rcli main ping 2>/dev/null | grep -q PONG && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done

echo "== 3. corrupted cache entries"
rcli main flushall > /dev/null
"$AUTHSCORE" batch --config "$tmp/main.conf" "$tmp/manifest" > /dev/null 2>&1
n=0
for k in $(rcli main --scan --pattern 'as:dns:*'); do
    case $((n % 6)) in
    0) head -c 300 /dev/urandom | rcli main -x set "$k" > /dev/null ;;
    1) v=$(rcli main getrange "$k" 0 15); rcli main set "$k" "$v" > /dev/null ;;                  # truncated
    2) rcli main set "$k" "" > /dev/null ;;
    3) head -c 100000 /dev/zero | tr '\0' 'd' | rcli main -x set "$k" > /dev/null ;;             # oversized
    4) rcli main del "$k" > /dev/null; rcli main rpush "$k" a b > /dev/null ;;                  # not a string
    5) rcli main copy 'as:dns:TXT:example.com' "$k" replace > /dev/null ;;                      # another key's value
    esac
    n=$((n + 1))
done
: > "$tmp/dns.log"
"$AUTHSCORE" batch --config "$tmp/main.conf" "$tmp/manifest" > "$tmp/corrupt.out" 2>"$tmp/corrupt.err"; rc=$?
check '[ $rc -eq 0 ] && cmp -s "$tmp/corrupt.out" "$tmp/ref.out" && [ ! -s "$tmp/corrupt.err" ]' \
      "corrupted entries: rc=$rc, verdicts differ or errors: $(head -c 300 "$tmp/corrupt.err")"
asked=$(queries)
: > "$tmp/dns.log"
"$AUTHSCORE" batch --config "$tmp/main.conf" "$tmp/manifest" > /dev/null 2>&1
check '[ "$(queries)" -eq 0 ]' "corrupted entries were not replaced: DNS asked $(queries) times after"
echo "   $n corrupted entries: each ignored (DNS asked $asked times, example.com TXT was good), replaced, same verdicts"

echo "== 4. a password-protected Redis and database 5, over TCP; --redis overrides the configuration"
P=$(free_port)
redis_up auth "$P" --requirepass s3cret
: > "$tmp/dns.log"
"$AUTHSCORE" batch --config "$tmp/main.conf" --redis "redis://:s3cret@127.0.0.1:$P/5" "$tmp/manifest" > "$tmp/auth.out" 2>"$tmp/auth.err"; rc=$?
check '[ $rc -eq 0 ] && cmp -s "$tmp/auth.out" "$tmp/ref.out" && [ ! -s "$tmp/auth.err" ]' "password and db 5: rc=$rc $(cat "$tmp/auth.err")"
in5=$(redis-cli -p "$P" -a s3cret --no-auth-warning -n 5 --scan --pattern 'as:dns:*' | wc -l | tr -d ' ')
in0=$(redis-cli -p "$P" -a s3cret --no-auth-warning -n 0 dbsize)
check '[ "$in5" -eq "$D" ] && [ "$in0" -eq 0 ]' "keys: $in5 in db 5 (expected $D), $in0 in db 0"
"$AUTHSCORE" batch --config "$tmp/main.conf" --redis "unix:$tmp/auth.sock?db=5&password=s3cret" "$tmp/manifest" > "$tmp/auth2.out" 2>&1
check 'cmp -s "$tmp/auth2.out" "$tmp/ref.out"' "unix socket with db and password"
"$AUTHSCORE" batch --config "$tmp/main.conf" --redis "redis://:wrong@127.0.0.1:$P/5" "$tmp/manifest" > "$tmp/auth3.out" 2>"$tmp/auth3.err"; rc=$?
check '[ $rc -eq 0 ] && cmp -s "$tmp/auth3.out" "$tmp/ref.out" && [ "$(grep -c WRONGPASS "$tmp/auth3.err")" -eq 1 ]' \
      "wrong password: rc=$rc, expected the same verdicts and one log line: $(cat "$tmp/auth3.err")"
printf 'redis = "redis://h:1/x"\n' > "$tmp/badurl.conf"
out=$("$AUTHSCORE" lint "$tmp/badurl.conf" 2>&1)
check 'case "$out" in *badurl.conf:1:\ redis:*) true ;; *) false ;; esac' "a bad URL is reported with its line: $out"

echo "== 5. Sentinel: the primary stops mid-run, the replica is promoted, checks go on"
if command -v redis-sentinel > /dev/null; then SENTINEL=redis-sentinel; else SENTINEL="redis-server --sentinel"; fi
PP=$(free_port); RP=$(free_port)
redis_up primary "$PP"
redis_up replica "$RP" --replicaof 127.0.0.1 "$PP"
SP=""
for s in s1 s2 s3; do
    port=$(free_port); SP="$SP $port"
    { echo "port $port"; echo "bind 127.0.0.1"; echo "dir $tmp"
      echo "sentinel monitor mymaster 127.0.0.1 $PP 2"
      echo "sentinel down-after-milliseconds mymaster 1000"
      echo "sentinel failover-timeout mymaster 10000"; } > "$tmp/$s.conf"
    $SENTINEL "$tmp/$s.conf" > "$tmp/$s.log" 2>&1 & pids="$pids $!"
done
set -- $SP
S1=$1 S2=$2 S3=$3
i=0
while [ $i -lt 300 ]; do   # every sentinel knows the replica and the two others
    ready=0
    for p in $S1 $S2 $S3; do
        r=$(redis-cli -p "$p" sentinel replicas mymaster 2>/dev/null | grep -c "^$RP\$")
        o=$(redis-cli -p "$p" sentinel sentinels mymaster 2>/dev/null | grep -c '^runid$')
        [ "$r" -ge 1 ] && [ "$o" -ge 2 ] && ready=$((ready + 1))
    done
    [ $ready -eq 3 ] && break
    sleep 0.1; i=$((i + 1))
done
check '[ $ready -eq 3 ]' "sentinels did not find each other: $(tail -n 5 "$tmp/s1.log")"
DEAD=$(free_port)   # nothing listens there: the client tries the next sentinel
conf sentinel "redis = \"sentinel://127.0.0.1:$DEAD,127.0.0.1:$S1,127.0.0.1:$S2,127.0.0.1:$S3/mymaster\""
sed -i 's/backoff_ms = 2000/backoff_ms = 300/' "$tmp/sentinel.conf"
# part A before the failover, B right after it (the process still holds the old primary's socket),
# C once its back-off is over: it asks the sentinels again and writes to the new primary.
sed -n 1p "$tmp/one" > "$tmp/partA"; sed -n 2,4p "$tmp/one" > "$tmp/partB"; sed -n '5,$p' "$tmp/one" > "$tmp/partC"
rm -f "$tmp/fifo"; mkfifo "$tmp/fifo"
"$AUTHSCORE" batch --record --config "$tmp/sentinel.conf" - < "$tmp/fifo" > "$tmp/sent.out" 2>"$tmp/sent.err" & bpid=$!; pids="$pids $bpid"
exec 3> "$tmp/fifo"
cat "$tmp/partA" >&3
i=0; while [ "$(wc -l < "$tmp/sent.out")" -lt 1 ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
beforeA=$(rcli primary dbsize)
check '[ "$beforeA" -gt 0 ]' "before the failover, nothing was written to the primary"
t0=$(now_ms)
rcli primary shutdown nosave > /dev/null 2>&1
i=0; while [ $i -lt 300 ]; do
    [ "$(redis-cli -p "$S2" sentinel get-master-addr-by-name mymaster 2>/dev/null | tail -n 1)" = "$RP" ] && break
    sleep 0.1; i=$((i + 1))
done
t1=$(now_ms)
check '[ "$(rcli replica role | head -n 1)" = master ]' "the replica was not promoted"
echo "   primary stopped; replica promoted after $((t1 - t0)) ms"
cat "$tmp/partB" >&3
i=0; while [ "$(wc -l < "$tmp/sent.out")" -lt 4 ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
sleep 0.4
cat "$tmp/partC" >&3; exec 3>&-
wait $bpid; rc=$?
head -n -1 "$tmp/sent.out" > "$tmp/sent.cmp"
check '[ $rc -eq 0 ] && cmp -s "$tmp/sent.cmp" "$tmp/ref.one"' "verdicts through the failover differ (rc=$rc)"
lostB=0; for k in as:dns:TXT:evil.test as:dns:TXT:lists.example.org as:dns:A:lists.example.org; do
    [ "$(rcli replica exists "$k")" = 1 ] || lostB=$((lostB + 1))
done
check '[ "$(rcli replica exists as:dns:TXT:_dmarc.example.net)" = 1 ] && [ "$(rcli replica exists as:dns:TXT:_dmarc.nx.example.com)" = 1 ]' \
      "after the back-off the process did not write to the new primary: $(cat "$tmp/sent.err")"
check '[ "$(rcli replica exists as:dns:TXT:example.com)" = 1 ]' "what the old primary had replicated is gone"
# What was recorded around the failover: every message counts once in its From domain's daily
# bucket and, with a rua (example.com), adds a report row.  Part A reached the old primary and its
# replica; part B was checked while the process backed off, so its records were never written (a
# checking process does not hold records back: an Exim process lives one connection); part C went
# to the new primary.
day=$(( $(date -u +%s) / 86400 ))
counted=0
for k in $(rcli replica --scan --pattern 'as:rep:from:*'); do
    c=$(rcli replica hget "$k" "d$day:n"); counted=$((counted + ${c:-0}))
done
nA=$(wc -l < "$tmp/partA"); nB=$(wc -l < "$tmp/partB"); nC=$(wc -l < "$tmp/partC")
check '[ "$counted" -eq $((nA + nC)) ]' "messages counted on the new primary: $counted, expected A+C = $((nA + nC))"
# Report rows of example.com's policy: A's message, and C's two from its subdomains (mx., nx.);
# not B's three (203.0.113.66, 198.51.100.7).
ips=$(for k in $(rcli replica --scan --pattern 'as:dmarc:rows:*:example.com'); do rcli replica hkeys "$k"; done |
      cut -d'|' -f2 | sort | tr '\n' ' ')
rows=$(echo "$ips" | wc -w)
check '[ "$ips" = "192.0.2.10 192.0.2.25 192.0.2.99 " ]' "report rows for example.com on the new primary from: $ips"
echo "   records: $counted messages counted (A $nA + C $nC), B's $nB lost in the back-off window; example.com report rows: $rows (A 1, C 2; B 3 lost)"
echo "   logged: $(tr '\n' '|' < "$tmp/sent.err")"
echo "   writes lost in the window: $lostB of 3 cache entries of part B (answered while the process backed off)"
# A fresh process finds the new primary at once.
rcli replica flushall > /dev/null
"$AUTHSCORE" batch --config "$tmp/sentinel.conf" "$tmp/manifest" > "$tmp/sent2.out" 2>"$tmp/sent2.err"; rc=$?
check '[ $rc -eq 0 ] && cmp -s "$tmp/sent2.out" "$tmp/ref.out" && [ ! -s "$tmp/sent2.err" ]' "fresh process after the failover: rc=$rc $(cat "$tmp/sent2.err")"
check '[ "$(rcli replica dbsize)" -eq "$D" ]' "fresh process after the failover: $(rcli replica dbsize) keys on the new primary, expected $D"

echo "== figures: fresh process per message (cold per-process cache), N=$N"
redis_kill main; redis_up main 0
"$AUTHSCORE" batch --config "$tmp/main.conf" "$tmp/manifest" > /dev/null 2>&1   # warm Redis
: > "$tmp/dns.log"; ms_plain=$(run_checks "$tmp/plain.conf" "$tmp/f.ref"); q_plain=$(queries)
: > "$tmp/dns.log"; ms_warm=$(run_checks "$tmp/main.conf" "$tmp/f.warm"); q_warm=$(queries)
check 'cmp -s "$tmp/f.ref" "$tmp/f.warm"' "warm Redis: verdicts differ"
check '[ "$q_warm" -eq 0 ]' "warm Redis: DNS asked $q_warm times"
echo "figure: no Redis: $((N * 1000 / ms_plain)) checks/s ($((ms_plain / N)) ms each, $q_plain DNS queries);" \
     "warm Redis: $((N * 1000 / ms_warm)) checks/s ($((ms_warm / N)) ms each, $q_warm DNS queries)"
# The same against a DNS server 5 ms away (a resolver that has to ask, or one across a network).
/usr/bin/python3 tests/zone_dns.py "$tmp/slowport" "$tmp/slow.log" examples/zone.db --delay-ms 5 2>/dev/null & pids="$pids $!"
i=0; while [ ! -s "$tmp/slowport" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
sed "s/$DNS/127.0.0.1:$(cat "$tmp/slowport")/" "$tmp/plain.conf" > "$tmp/slow.conf"
ms_slow=$(run_checks "$tmp/slow.conf" "$tmp/f.slow")
{ cat "$tmp/slow.conf"; echo "redis = \"unix:$tmp/main.sock\""; } > "$tmp/slowr.conf"
ms_slowr=$(run_checks "$tmp/slowr.conf" "$tmp/f.slowr")
check 'cmp -s "$tmp/f.ref" "$tmp/f.slow" && cmp -s "$tmp/f.ref" "$tmp/f.slowr"' "slow DNS: verdicts differ"
echo "figure: DNS 5 ms away: no Redis $((N * 1000 / ms_slow)) checks/s ($((ms_slow / N)) ms each);" \
     "warm Redis $((N * 1000 / ms_slowr)) checks/s ($((ms_slowr / N)) ms each)"
echo "figure: DNS queries saved across $N fresh processes: $q_plain without Redis, $q_warm with a warm Redis"

echo "$pass/$total checks passed"
[ "$pass" -eq "$total" ]
