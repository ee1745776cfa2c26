#!/bin/sh
# reputation_test.sh - the seed story's spoof caught by reputation shared in Redis, end to end through
# the authscore command (--record writes as Exim does); without Redis, or with it dead, nothing changes.
set -u
BUILD=${BUILD:-build}
AUTHSCORE=${AUTHSCORE:-$BUILD/authscore}
DATA=tests/data/shop
D=$(mktemp -d /tmp/authscore-rep.XXXXXX)
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

. tests/lib.sh
trap 'redis_stop "$D"; rm -rf "$D"' EXIT INT TERM
redis_start "$D" || { echo "reputation_test: cannot start redis-server"; exit 1; }
run() { "$AUTHSCORE" check --zone "$DATA/zone.db" --json "$@"; }
field() { python3 -c 'import json,sys; v=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }

# A month of shop.test's newsletter from its own network: DMARC passes.
n=0
while [ $n -lt 25 ]; do
    printf '192.0.2.%d\tmail.shop.test\tbounce@shop.test\tnews.eml\n' $((5 + n % 3))
    n=$((n + 1))
done > "$D/newsletter.tsv"
sed "s#news.eml#$PWD/$DATA/news.eml#" "$D/newsletter.tsv" > "$D/m.tsv"
"$AUTHSCORE" batch --record --redis "$REDIS" --zone "$DATA/zone.db" "$D/m.tsv" > "$D/batch.out" \
    && ok || bad "batch --record"
passes=$(redis-cli -s "$D/redis.sock" hgetall as:rep:from:shop.test | awk 'f { s += $1; f = 0; next } /^d[0-9]+:mp$/ { f = 1 } END { print s }')
[ "$passes" = 25 ] && ok || bad "25 DMARC passes counted for shop.test, not $passes"

# The spoof: From shop.test (p=none), sent from a network that never sent it aligned mail.
spoof="--ip 203.0.113.66 --helo mail.evil.test --mail-from attacker@evil.test $DATA/ceo.eml"
out=$(run --redis "$REDIS" $spoof)
[ "$(printf "%s\n" "$out" | field '[s["name"] for s in v["symbols"]].count("DMARC_REPUTATION_SPOOF")')" = 1 ] \
    && ok || bad "DMARC_REPUTATION_SPOOF fires: $out"
[ "$(printf "%s\n" "$out" | field 'v["action"]')" = quarantine ] && ok || bad "the spoof is quarantined: $out"
printf "%s\n" "$out" | field '[s["reason"] for s in v["symbols"] if s["name"] == "DMARC_REPUTATION_SPOOF"][0]' \
    | grep -q '^shop.test passed DMARC 25 times in 30 days (0 fails); 203.0.113.0/24 never sent it aligned mail$' \
    && ok || bad "reason names the counts and the network"

# The same failure from shop.test's own network is not this symbol's business.
out=$(run --redis "$REDIS" --ip 192.0.2.77 --helo x.shop.test --mail-from attacker@evil.test "$DATA/ceo.eml")
printf "%s\n" "$out" | grep -q DMARC_REPUTATION_SPOOF && bad "own network flagged" || ok

# check without --record reads but never writes.
before=$(redis-cli -s "$D/redis.sock" dbsize)
run --redis "$REDIS" $spoof > /dev/null
[ "$(redis-cli -s "$D/redis.sock" dbsize)" = "$before" ] && ok || bad "check without --record wrote to Redis"

# Without Redis the verdict is the one of the rules without reputation.
plain=$(run $spoof | field '(v["action"], v["score"], [s["name"] for s in v["symbols"]])')
[ "$plain" = "('accept', -0.1, ['R_SPF_ALLOW', 'R_DKIM_NA', 'DMARC_POLICY_SOFTFAIL'])" ] && ok || bad "no Redis: $plain"

# Redis dead: same as without, exit status 0, one log line.
redis_stop "$D"
sleep 0.2
dead=$(run --redis "$REDIS" $spoof 2>"$D/err" | field '(v["action"], v["score"], [s["name"] for s in v["symbols"]])')
[ "$dead" = "$plain" ] && ok || bad "Redis dead: $dead"
[ "$(grep -c redis "$D/err")" -le 1 ] && ok || bad "Redis dead: more than one log line: $(cat "$D/err")"

echo "reputation_test: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
