#!/bin/sh
# hostile_test.sh - hostile DNS answers and hostile messages each give a defined verdict, quickly, without a crash.
AUTHSCORE=${AUTHSCORE:-build/authscore}
tmp=$(mktemp -d /tmp/authscore-hostile.XXXXXX)
pass=0; total=0
ok()  { pass=$((pass + 1)); total=$((total + 1)); }
bad() { total=$((total + 1)); echo "FAIL: $*"; }

/usr/bin/python3 tests/hostile_dns.py "$tmp/port" & srv=$!
trap 'kill $srv 2>/dev/null; rm -rf "$tmp"' EXIT
i=0; while [ ! -s "$tmp/port" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
port=$(cat "$tmp/port")

# spf KIND EXPECTED: SPF of a@spf-KIND.hostile.test through the hostile server, within 3 s.
spf() {
    start=$(date +%s%N)
    out=$("$AUTHSCORE" spf --dns "127.0.0.1:$port" --timeout-ms 300 --budget-ms 2000 --json \
          --ip 192.0.2.1 --helo h.example --mail-from "a@$1.hostile.test" 2>"$tmp/err")
    rc=$?
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    case "$out" in
        *"\"result\":\"$2\""*) [ $rc -eq 0 ] && [ $ms -lt 3000 ] && ok || bad "$1: rc=$rc in ${ms} ms" ;;
        *) bad "$1: expected $2, got rc=$rc '$out' $(cat "$tmp/err")" ;;
    esac
}
spf spf-garbage temperror     # random bytes where an A answer should be
spf spf-loop    temperror     # CNAME pointing at itself
spf spf-trunc   temperror     # TC over UDP, then a packet cut short over TCP
spf spf-big     permerror     # a 40 KB SPF record, complete over TCP: too long to be valid
spf spf-wrongid temperror     # replies with the wrong ID are ignored: a timeout
spf spf-many    permerror     # 300 SPF records at one name
spf silent      temperror     # no answer at all: within the budget
spf servfail    temperror
spf garbage     temperror

# Hostile messages, offline: exit 0 and one JSON verdict each.
msg() {
    name=$1; shift
    printf "$@" > "$tmp/m"
    out=$("$AUTHSCORE" check --zone examples/zone.db --json --ip 192.0.2.10 --helo mx.example.com \
          --mail-from alice@example.com "$tmp/m" 2>"$tmp/err")
    rc=$?
    case "$out" in
        '{"spf":'*'"authentication_results":'*'}') [ $rc -eq 0 ] && ok || bad "$name: rc=$rc" ;;
        *) bad "$name: rc=$rc '$out' $(cat "$tmp/err")" ;;
    esac
}
msg "no From"           'Subject: x\r\n\r\nbody\r\n'
msg "bare LF"           'From: a@example.com\nSubject: x\n\nbody\n'
msg "bare CR"           'From: a@example.com\rSubject: x\r\rbody\r'
msg "8-bit and NUL"     'From: \303\251@example.com\r\nSubject: \000\377\r\n\r\n\000\377body'
msg "unterminated fold" 'From: a@example.com\r\nSubject: x\r\n   '
msg "empty"             ''
msg "only garbage"      '\001\002\003 no header here'
msg "From without @"    'From: nobody\r\n\r\nx'
msg "From group"        'From: undisclosed:;\r\n\r\nx'
msg "two Froms"         'From: a@example.com\r\nFrom: b@evil.test\r\n\r\nx'
msg "broken signature"  'DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=sel2026; b=; bh=\r\nFrom: a@example.com\r\n\r\nx'

# Thousands of DKIM-Signature headers and a 2 MB header: bounded.
/usr/bin/python3 - "$tmp/many.eml" <<'PY'
import sys
sig = "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=sel2026; h=from; bh=AAAA; b=AAAA\r\n"
open(sys.argv[1], "w").write(sig * 5000 + "From: a@example.com\r\nX-Big: " + "x" * 2000000 + "\r\n\r\nbody\r\n")
PY
start=$(date +%s%N)
out=$("$AUTHSCORE" check --zone examples/zone.db --json --ip 192.0.2.10 --mail-from a@example.com "$tmp/many.eml")
ms=$(( ($(date +%s%N) - start) / 1000000 ))
n=$(echo "$out" | grep -o '"selector"' | wc -l)
[ "$n" -eq 10 ] && ok || bad "5000 signatures: $n evaluated, expected 10"
echo "5000 DKIM-Signature headers + 2 MB header: ${ms} ms"

echo "$pass/$total checks passed"
[ $pass -eq $total ]
