#!/bin/sh
# policy_test.sh - the rules through the command: config, --rules, lint, test cases, batch and its summary.
AUTHSCORE=${AUTHSCORE:-build/authscore}
tmp=$(mktemp -d /tmp/authscore-policy.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
pass=0; total=0
ok()  { pass=$((pass + 1)); total=$((total + 1)); }
bad() { total=$((total + 1)); echo "FAIL: $*"; }
expect() { # expect NAME HAYSTACK NEEDLE
    case "$2" in *"$3"*) ok ;; *) bad "$1: wanted '$3' in: $2" ;; esac
}
Z="--zone examples/zone.db --authserv-id mx.receiver.test"
SPOOF="--ip 203.0.113.66 --helo mail.evil.test --mail-from attacker@evil.test examples/messages/spoof.eml"

# The default ruleset rejects the p=reject spoof, in JSON and in the human output.
out=$($AUTHSCORE check $Z --json $SPOOF)
expect "json action" "$out" '"action":"reject"'
expect "json symbols" "$out" '{"name":"DMARC_POLICY_REJECT","score":2.0'
expect "json smtp_message" "$out" '"smtp_message":"DMARC policy of example.com is reject'
out=$($AUTHSCORE check $Z $SPOOF)
expect "human action" "$out" "action: reject"
expect "human symbol" "$out" "symbol: DMARC_POLICY_REJECT"

# The example configuration: its rules, its allowlist and options reach the rules.
out=$($AUTHSCORE check --config examples/authscore.conf --json $SPOOF)
expect "config VIP rule" "$out" '"name":"VIP_SPOOF","score":5.0'
out=$($AUTHSCORE check --config examples/authscore.conf --json --ip 198.51.100.7 --helo lists.example.org \
      --mail-from bounces@lists.example.org examples/messages/forwarded.eml)
expect "weight returned by a rule" "$out" '"name":"MAILLIST","score":0.1'

# A flag overrides the config: --rules replaces the rule files.
printf 'symbol "ONLY" { score = 20, rule = function(m) return true end }\n' > "$tmp/only.lua"
out=$($AUTHSCORE check --config examples/authscore.conf --rules "$tmp/only.lua" --json $SPOOF)
expect "--rules overrides" "$out" '"action":"reject","symbols":[{"name":"ONLY"'

# Configuration mistakes: one line naming file, line and key; exit 1.
printf 'authserv_id = "mx"\n\ndns = { timeout_ms = "soon" }\n' > "$tmp/bad.conf"
err=$($AUTHSCORE check --config "$tmp/bad.conf" $Z $SPOOF 2>&1 >/dev/null); rc=$?
[ $rc -eq 1 ] && ok || bad "bad config exit $rc"
expect "bad config line" "$err" "bad.conf:3: dns.timeout_ms: expected a whole number"
printf 'acitons = { reject = 10 }\n' > "$tmp/typo.conf"
err=$($AUTHSCORE lint "$tmp/typo.conf")
expect "lint unknown key" "$err" "typo.conf:1: acitons: unknown key"
printf 'symbol "X" {\n  rule = function(m) return m.spf.result == end,\n}\n' > "$tmp/broken.lua"
err=$($AUTHSCORE lint "$tmp/broken.lua"); rc=$?
[ $rc -eq 1 ] && ok || bad "lint exit $rc"
expect "lint syntax error" "$err" "broken.lua:2:"
out=$($AUTHSCORE lint examples/authscore.conf lua/default.lua examples/rules/local.lua)
expect "lint good config" "$out" "examples/authscore.conf: ok"
expect "lint good rule set" "$out" "rule files: ok"

# Rules that fail to load: on_error decides (tempfail by default), visibly.
out=$($AUTHSCORE check $Z --rules "$tmp/broken.lua" --json $SPOOF 2>/dev/null)
expect "on_error tempfail" "$out" '"action":"tempfail"'
expect "on_error symbol" "$out" '"name":"RULE_ERROR"'
printf 'on_error = "accept"\nrules = { "broken.lua" }\n' > "$tmp/accept.conf"
out=$($AUTHSCORE check --config "$tmp/accept.conf" $Z --json $SPOOF 2>/dev/null)
expect "on_error accept" "$out" '"action":"accept"'

# The shipped rule test cases pass; a wrong expectation shows a diff.
out=$($AUTHSCORE test --zone examples/zone.db examples/rule-tests.tsv); rc=$?
[ $rc -eq 0 ] && ok || bad "rule-tests: $out"
sed 's/\treject\tDMARC_POLICY_REJECT,R_DKIM_NA/\taccept\tDMARC_POLICY_ALLOW/' examples/rule-tests.tsv > "$tmp/wrong.tsv"
sed -i "s#messages/#$PWD/examples/messages/#" "$tmp/wrong.tsv"
out=$($AUTHSCORE test --zone examples/zone.db "$tmp/wrong.tsv"); rc=$?
[ $rc -eq 1 ] && ok || bad "wrong case exit $rc"
expect "diff action" "$out" "action: expected accept, got reject"
expect "diff symbol" "$out" "symbol DMARC_POLICY_ALLOW: expected to fire, it did not"

# batch: 300 messages, one JSON line each, and a summary that matches the single runs.
: > "$tmp/manifest"
grep -v '^#' examples/messages.txt | while read -r f ip helo from what; do
    printf '%s\t%s\t%s\t%s\n' "$ip" "$helo" "$from" "$PWD/examples/messages/$f" >> "$tmp/one"
done
i=0; while [ $i -lt 60 ]; do cat "$tmp/one" >> "$tmp/manifest"; i=$((i + 1)); done
$AUTHSCORE batch --zone examples/zone.db "$tmp/manifest" > "$tmp/batch.out"; rc=$?
[ $rc -eq 0 ] && ok || bad "batch exit $rc"
lines=$(grep -c '"path"' "$tmp/batch.out")
[ "$lines" -eq 300 ] && ok || bad "batch printed $lines verdicts"
summary=$(tail -n 1 "$tmp/batch.out")
expect "batch summary count" "$summary" '"messages":300'
single_reject=0
while IFS="$(printf '\t')" read -r ip helo from path; do
    a=$($AUTHSCORE check --zone examples/zone.db --json --ip "$ip" --helo "$helo" --mail-from "$from" "$path" | grep -o '"action":"[a-z_]*"')
    [ "$a" = '"action":"reject"' ] && single_reject=$((single_reject + 60))
done < "$tmp/one"
expect "batch summary matches single runs" "$summary" "\"reject\":$single_reject"

echo "$pass/$total checks passed"
[ $pass -eq $total ]
