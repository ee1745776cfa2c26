#!/bin/sh
# report_test.sh - DMARC aggregate reports end to end: rows recorded by `batch --record`, reports
# valid against the RFC 7489 Appendix C schema (xmllint), messages for the verified mailto:
# destinations only, and concurrent `dmarc-report` runs that make each report exactly once.
set -u
BUILD=${BUILD:-build}
AUTHSCORE=${AUTHSCORE:-$BUILD/authscore}
DATA=tests/data/shop
XSD=tests/data/dmarc-report/rfc7489.xsd
D=$(mktemp -d /tmp/authscore-report.XXXXXX)
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

. tests/lib.sh
trap 'redis_stop "$D"; [ -n "${KEEP:-}" ] || rm -rf "$D"' EXIT INT TERM
redis_start "$D" || { echo "report_test: cannot start redis-server"; exit 1; }
TODAY=$(date -u +%F)
report() { "$AUTHSCORE" dmarc-report --date "$TODAY" --org-name "Receiver Test" --org-email dmarc@receiver.test \
               --redis "$REDIS" --zone "$DATA/zone.db" "$@"; }
record() { "$AUTHSCORE" batch --record --redis "$REDIS" --zone "$DATA/zone.db" "$1" > "$D/batch.out" 2>&1; }
# Messages counted by the reports in a folder.
counted() { for f in "$1"/*.xml.gz; do [ -f "$f" ] && gzip -dc "$f"; done | sed -n 's#.*<count>\([0-9]*\)</count>.*#\1#p' \
              | awk '{ s += $1 } END { print s + 0 }'; }

# shop.test from IPv4 and IPv6, its spoof, and bank.test (p=reject, sp, strict alignment, pct).
M=$PWD/$DATA
{
    printf '192.0.2.5\tmail.shop.test\tbounce@shop.test\t%s/news.eml\n' "$M"
    printf '192.0.2.5\tmail.shop.test\tbounce@shop.test\t%s/news.eml\n' "$M"
    printf '2001:db8:5::25\tmail.shop.test\tbounce@shop.test\t%s/news.eml\n' "$M"
    printf '203.0.113.66\tmail.evil.test\tattacker@evil.test\t%s/ceo.eml\n' "$M"
    printf '198.51.100.9\tmx.bank.test\t\t%s/bank.eml\n' "$M"
} > "$D/day.tsv"
record "$D/day.tsv" && ok || bad "batch --record: $(cat "$D/batch.out")"

mkdir "$D/out"
report --out "$D/out" > "$D/run.out" 2> "$D/run.err" && ok || bad "dmarc-report: $(cat "$D/run.err")"
B=$(date -u -d "$TODAY" +%s); E=$((B + 86399))
SHOP="receiver.test!shop.test!$B!$E"
[ -f "$D/out/$SHOP.xml.gz" ] && ok || bad "report file name: $(ls "$D/out")"
[ -f "$D/out/receiver.test!bank.test!$B!$E.xml.gz" ] && ok || bad "bank.test report"
for f in "$D"/out/*.xml.gz; do
    gzip -t "$f" && ok || bad "$f: not gzip"
    gzip -dc "$f" > "$D/report.xml"
    xmllint --noout --schema "$XSD" "$D/report.xml" 2> "$D/xmllint.out" && ok || bad "$f: $(cat "$D/xmllint.out")"
done
gzip -dc "$D/out/$SHOP.xml.gz" > "$D/shop.xml"
grep -q '<source_ip>2001:db8:5:0:0:0:0:25</source_ip>' "$D/shop.xml" && ok || bad "IPv6 source written out"
grep -q '<envelope_from>evil.test</envelope_from>' "$D/shop.xml" && ok || bad "the spoof's row"
[ "$(counted "$D/out")" = 5 ] && ok || bad "5 messages reported, not $(counted "$D/out")"
gzip -dc "$D/out/receiver.test!bank.test!$B!$E.xml.gz" | grep -q '<sp>quarantine</sp>' && ok || bad "bank.test sp"

# Mail: dmarc@shop.test (same organization) and agg@reports.test (authorized by
# shop.test._report._dmarc.reports.test); not unauth.test (no record), not tiny@ (1k limit).
to=$(cat "$D"/out/*.eml | sed -n 's/^To: //p' | sort | tr '\n' ' ')
[ "$to" = "agg@reports.test dmarc@bank.test dmarc@shop.test " ] && ok || bad "recipients: $to"
grep -q 'nobody@unauth.test skipped: not authorized' "$D/run.err" && ok || bad "unauthorized destination not logged"
grep -q 'tiny@reports.test skipped: the report ([0-9]* bytes) exceeds its size limit of 1024 bytes' "$D/run.err" \
    && ok || bad "size limit not logged"
/usr/bin/python3 - "$D/out" <<'EOF' && ok || bad "the attachment is the report"
import email, glob, gzip, os, sys
for path in glob.glob(os.path.join(sys.argv[1], '*.eml')):
    m = email.message_from_binary_file(open(path, 'rb'))
    assert m['Subject'].startswith('Report Domain: '), m['Subject']
    part = [p for p in m.walk() if p.get_content_type() == 'application/gzip'][0]
    with open(os.path.join(sys.argv[1], part.get_filename()), 'rb') as f:
        assert gzip.decompress(part.get_payload(decode=True)) == gzip.decompress(f.read())
EOF

# A second run finds nothing left to report.
mkdir "$D/again"
report --out "$D/again" > /dev/null 2>&1
[ -z "$(ls "$D/again")" ] && ok || bad "a second run reported again: $(ls "$D/again")"

# Two runs at once, five times over: each report exactly once, every message counted once.
round=0
while [ $round -lt 5 ]; do
    round=$((round + 1))
    n=0
    while [ $n -lt 120 ]; do
        printf '192.0.2.%d\tmail.shop.test\tbounce@shop.test\t%s/news.eml\n' $((n % 120 + 1)) "$M"
        n=$((n + 1))
    done > "$D/burst.tsv"
    record "$D/burst.tsv" || bad "record round $round"
    mkdir "$D/a$round" "$D/b$round"
    report --out "$D/a$round" > /dev/null 2>&1 &
    pa=$!
    report --out "$D/b$round" > /dev/null 2>&1 &
    pb=$!
    wait $pa; wa=$?
    wait $pb; wb=$?
    [ $wa -eq 0 ] && [ $wb -eq 0 ] && ok || bad "round $round: a run failed ($wa, $wb)"
    files=$(ls "$D/a$round" "$D/b$round" | grep -c '\.xml\.gz$')
    [ "$files" = 1 ] && ok || bad "round $round: $files reports instead of 1"
    total=$(( $(counted "$D/a$round") + $(counted "$D/b$round") ))
    [ "$total" = 120 ] && ok || bad "round $round: $total messages reported instead of 120"
done
[ -z "$(redis-cli -s "$D/redis.sock" keys 'as:dmarc:claim*')" ] && ok || bad "claims left behind"

echo "report_test: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
