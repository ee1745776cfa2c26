#!/bin/sh
# exim_test.sh - authscore.so inside a real Exim: -bh sessions, a loopback daemon fed by swaks, exported symbols, start-up cost.
#
# Exim runs unprivileged (as nobody when the test runs as root, else as the caller) with its own
# spool, log and maildir in a fresh /tmp folder, on the configuration tests/exim/test.conf, whose
# ACL statements are the shipped examples/exim/authscore/*.acl.  All DNS comes from the NSD of
# tests/lib.sh (AS_DNS).  Expected verdicts come from the authscore command on the same
# configuration, plus fixed expectations for the cases the issue names.
BUILD=${BUILD:-build}
AUTHSCORE=${AUTHSCORE:-$BUILD/authscore}
SO=$BUILD/authscore.so
EXIM=/usr/sbin/exim4
N=${EXIM_TEST_MESSAGES:-100}

# Exim is not built with AddressSanitizer, and an ASan .so cannot be loaded into it.  The plain
# build's run covers the plugin; the engine code under it is covered by the ASan C tests.
if ldd "$SO" 2>/dev/null | grep -q 'libasan'; then
    echo "exim_test: skipped for $BUILD: an ASan-built authscore.so cannot be loaded into Exim (not ASan-built); see the run of build/"
    exit 0
fi
for tool in "$EXIM" swaks nm ldd python3; do
    command -v "$tool" >/dev/null 2>&1 || { echo "FAIL: $tool not installed (make deps-test)"; exit 1; }
done
[ -f "$SO" ] || { echo "FAIL: $SO not built"; exit 1; }

# The daemon learns its TEST-NET clients from a PROXY header, and Exim then looks their names up
# with the system resolver.  As root, a private mount namespace points resolv.conf at an address
# where nothing listens, so those lookups fail at once and never leave the machine.
if [ "$(id -u)" = 0 ] && [ -z "${AS_EXIM_NS:-}" ] && unshare -m true 2>/dev/null; then
    AS_EXIM_NS=1 exec unshare -m sh "$0" "$@"
fi

. tests/lib.sh
started_dns=
if [ -z "${AS_DNS:-}" ]; then dns_start || { echo "FAIL: cannot start nsd"; exit 1; }; started_dns=1; fi

D=$(mktemp -d /tmp/authscore-exim.XXXXXX)
chmod 755 "$D"
daemon= LOG=
stop_daemon() {   # by the pid Exim logs, and the one the shell started
    [ -n "$daemon" ] || return 0
    p=$(sed -n 's/.*daemon started: pid=\([0-9]*\),.*/\1/p' "$LOG" 2>/dev/null | head -n 1)
    [ -n "$p" ] && kill "$p" 2>/dev/null
    kill "$daemon" 2>/dev/null
    wait "$daemon" 2>/dev/null
    daemon=
}
cleanup() {
    stop_daemon
    [ -n "${EXIM_TEST_KEEP:-}" ] && echo "kept $D" || rm -rf "$D"
    [ -n "$started_dns" ] && dns_stop
}
trap cleanup EXIT
trap 'exit 1' INT TERM

if [ -n "${AS_EXIM_NS:-}" ]; then
    echo 'nameserver 127.0.0.254' > "$D/resolv.conf"
    mount --bind "$D/resolv.conf" /etc/resolv.conf || echo "note: resolv.conf not replaced: Exim's PTR lookups use the system resolver"
else
    echo "note: not root or no mount namespace: Exim's own PTR lookups of proxied clients use the system resolver"
fi

# Exim runs as an unprivileged user; as root we pick nobody (or create a system user).
if [ "$(id -u)" = 0 ]; then
    RUN_USER=nobody
    if ! id "$RUN_USER" >/dev/null 2>&1; then
        RUN_USER=authscore-test
        id "$RUN_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$RUN_USER"
    fi
    RUN_GROUP=$(id -gn "$RUN_USER")
    as_user() { setpriv --reuid="$RUN_USER" --regid="$RUN_GROUP" --clear-groups -- "$@"; }
else
    RUN_USER=$(id -un); RUN_GROUP=$(id -gn)
    as_user() { "$@"; }
fi

pass=0; total=0
ok()  { pass=$((pass + 1)); total=$((total + 1)); }
bad() { total=$((total + 1)); echo "FAIL: $*"; }
expect() {   # expect NAME HAYSTACK NEEDLE
    case "$2" in *"$3"*) ok ;; *) bad "$1: wanted '$3' in: $2" ;; esac
}
same() {     # same NAME GOT WANTED
    if [ "$2" = "$3" ]; then ok; else bad "$1: got '$2', wanted '$3'"; fi
}

# ---- the exported symbols ------------------------------------------------------------------
# Every symbol the .so needs must come from Exim's export list or from a library it links:
# calling anything else kills the Exim process at run time (RTLD_LAZY).
nm -D --defined-only "$EXIM" | awk '{ sub(/@.*/, "", $3); print $3 }' | sort -u > "$D/exim.syms"
for lib in $(ldd "$SO" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }'); do
    nm -D --defined-only "$lib" | awk '{ sub(/@.*/, "", $3); print $3 }'
done | sort -u > "$D/libs.syms"
nm -D --undefined-only "$SO" | awk '$1 == "U" { sub(/@.*/, "", $2); print $2 }' | sort -u > "$D/needed.syms"
unresolved=$(sort -u "$D/exim.syms" "$D/libs.syms" | comm -23 "$D/needed.syms" -)
same "symbols resolved by exim or the linked libraries" "$unresolved" ""
from_exim=$(comm -23 "$D/needed.syms" "$D/libs.syms" | tr '\n' ' ')
echo "symbols taken from Exim: $from_exim"
exports=$(nm -D --defined-only "$SO" | awk '{ print $3 }' | grep -v -x -e _init -e _fini -e _edata -e _end -e __bss_start | sort | tr '\n' ' ')
same "exported symbols" "$exports" "authscore_check authscore_field authscore_spf "

# ---- the per-run Exim ------------------------------------------------------------------------
mkdir -p "$D/spool" "$D/log" "$D/maildir" "$D/acl" "$D/rules" "$D/msg" "$D/out"
# Copies: the source tree may not be readable by the unprivileged user (a CI checkout under /root).
cp "$SO" "$D/authscore.so"
cp examples/exim/authscore/rcpt.acl examples/exim/authscore/data.acl "$D/acl/"
cp lua/default.lua "$D/rules/default.lua"
sed -e "s#@DIR@#$D#g" -e "s#@SO@#$D/authscore.so#g" -e "s#@ACLDIR@#$D/acl#g" \
    -e "s#@USER@#$RUN_USER#g" -e "s#@GROUP@#$RUN_GROUP#g" tests/exim/test.conf > "$D/exim.conf"
conf() {     # conf FILE [EXTRA-LUA-LINES]: an authscore.conf on the test DNS
    {
        echo 'authserv_id = "mx.receiver.test"'
        echo "dns = { servers = { \"${DNS_FOR_CONF:-$AS_DNS}\" }, timeout_ms = 500, budget_ms = 3000 }"
        echo 'allowlist = { ips = {} }'
        [ -n "${2:-}" ] && echo "$2"
    } > "$1"
}
conf "$D/authscore.conf"
printf 'symbol "BOOM" {\n  score = 1.0, description = "a rule that always fails",\n  rule = function(m) error("kaboom in a rule") end,\n}\n' > "$D/rules/boom.lua"
conf "$D/rule-error.conf" "rules = { \"$D/rules/default.lua\", \"$D/rules/boom.lua\" }"
dead=$(python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
DNS_FOR_CONF="127.0.0.1:$dead" conf "$D/dns-dead.conf"
if [ "$(id -u)" = 0 ]; then
    chown -R "$RUN_USER:$RUN_GROUP" "$D/spool" "$D/log" "$D/maildir"
    chmod 644 "$D"/*.conf
fi
as_user "$EXIM" -C "$D/exim.conf" -bV > "$D/out/bV" 2>&1
expect "test.conf parses" "$(cat "$D/out/bV")" "Configuration file is $D/exim.conf"

# Messages: the signed examples, and some made here.
M=examples/messages
printf 'From: Carol <carol@example.net>\nTo: bob@receiver.test\nSubject: invoice\nMessage-ID: <q1@example.net>\n\nPlease pay.\n' > "$D/msg/quarantine.eml"
printf 'From: Dan <dan@unserved.test>\nTo: bob@receiver.test\nSubject: hello\nMessage-ID: <d1@unserved.test>\n\nNo DNS answers for my domain.\n' > "$D/msg/unserved.eml"
{ printf 'Authentication-Results: mx.receiver.test; dkim=pass header.d=example.com; dmarc=pass\n'
  printf 'Authentication-Results: (comment) "MX.Receiver.Test" 1; spf=pass\n'
  printf 'Authentication-Results: upstream.example; spf=pass smtp.mailfrom=example.com\n'
  printf 'X-Authscore-Action: quarantine\n'
  cat "$M/legit.eml"; } > "$D/msg/forged-ar.eml"
printf 'no headers here, only text\n\nand more text\n' > "$D/msg/no-headers.eml"
{ printf 'From: <>\nFrom: Two <a@example.com>, <b@example.org>\nX-\377\376: \001 junk\nSubject: =?utf-8?B?////?=\n'
  printf 'DKIM-Signature: garbage\nFrom alice at example.com\n\nbody \000 with a NUL and \377 bytes\n'; } > "$D/msg/junk-headers.eml"
{ i=0; while [ $i -lt 40 ]; do
      printf 'DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=sel2026; c=relaxed; h=from:from:from; bh=; b=;;;%s\n' "$i"; i=$((i + 1))
  done
  printf 'DKIM-Signature: v=1; a=ed25519-sha256; d=example.net; s=ed2026; h=from; bh=AAAA; b=AAAA\n'
  printf 'From: Alice <alice@example.com>\nSubject: '; head -c 20000 /dev/zero | tr '\0' 'x'; printf '\n'
  printf 'X-Folded: a\n'; i=0; while [ $i -lt 2000 ]; do printf ' b\n'; i=$((i + 1)); done
  printf '\nbody\n'; } > "$D/msg/many-sigs.eml"
printf '\n' > "$D/msg/empty.eml"

# session HELO MAILFROM FILE...: an SMTP session, one transaction per file.
session() {
    helo=$1 from=$2; shift 2
    printf 'EHLO %s\r\n' "$helo"
    for f; do
        printf 'MAIL FROM:<%s>\r\nRCPT TO:<bob@receiver.test>\r\nDATA\r\n' "$from"
        sed 's/^\./../' "$f"
        printf '.\r\n'
    done
    printf 'QUIT\r\n'
}
# replies FILE: one line per SMTP reply, continuation lines joined.
replies() {
    awk '{ sub(/\r$/, "") } /^[0-9][0-9][0-9][- ]/ { r = r == "" ? substr($0, 1, 3) " " substr($0, 5) : r " " substr($0, 5)
                                   if (substr($0, 4, 1) == " ") { print r; r = "" } }' "$1"
}
# data_replies FILE: the answers to the ends of DATA.
data_replies() {
    replies "$1" | awk 'after { print; after = 0 } /^354 / { after = 1 }'
}
# bh NAME IP [EXIM-OPTIONS] < session: a -bh run; $D/out/NAME.out (SMTP), .err (trace), .rc
bh() {
    name=$1 ip=$2; shift 2
    as_user "$EXIM" -C "$D/exim.conf" "$@" -bh "$ip" > "$D/out/$name.out" 2> "$D/out/$name.err"
    echo $? > "$D/out/$name.rc"
}
# added_ar FILE: the Authentication-Results values the trace shows being added, one per line.
added_ar() {
    awk '/^>>> +=? *:at_start:Authentication-Results: / { if (v != "") print v; sub(/^.*:at_start:Authentication-Results: /, ""); v = $0; on = 1; next }
         on && /^>>> \t/ { sub(/^>>> \t/, ""); v = v " " $0; next }
         { if (on) { print v; v = ""; on = 0 } }
         END { if (v != "") print v }' "$1" | tr -s ' ' | sed 's/ *$//'
}
# cli FILE IP HELO FROM [CONFIG]: the command's answer as KEY VALUE lines: verdict (ACTION SCORE), smtp, ar.
cli() {
    "$AUTHSCORE" check --config "${5:-$D/authscore.conf}" --ip "$2" --helo "$3" --mail-from "$4" "$1" > "$D/out/cli" 2>&1
    printf 'verdict %s\n' "$(awk '$1 == "action:" { print $2, $4; exit }' "$D/out/cli")"
    printf 'smtp %s\n' "$(sed -n 's/^smtp:  //p' "$D/out/cli" | tr -s ' ')"
    printf 'ar %s\n' "$(sed -n '/^Authentication-Results: /,$p' "$D/out/cli" | sed 's/^Authentication-Results: //' | tr '\n\t' '  ' | tr -s ' ' | sed 's/ *$//')"
}
field() { awk -v k="$1" '$1 == k { sub(/^[^ ]+ /, ""); print; exit }'; }
no_crash() { # no_crash NAME: exit status 0, nothing but SMTP on stdout, no dlfunc failure, no panic
    same "$1: exim exit status" "$(cat "$D/out/$1.rc")" 0
    same "$1: stdout is SMTP only" "$(tr -d '\r' < "$D/out/$1.out" | grep -v -E '^([0-9]{3}[- ]|\*\*\*\* |$)')" ""
    if grep -q -i 'dlfunc.*failed\|LOG: PANIC\|SIGSEGV' "$D/out/$1.err"; then
        bad "$1: trouble in the trace: $(grep -i 'dlfunc.*failed\|LOG: PANIC\|SIGSEGV' "$D/out/$1.err" | head -3)"
    else ok; fi
}

# ---- -bh sessions ------------------------------------------------------------------------------
# A legitimate signed message: 250, and the header added is the command's, all pass.
session mx.example.com alice@example.com "$M/legit.eml" | bh legit 192.0.2.10
no_crash legit
same "legit: DATA answer" "$(data_replies "$D/out/legit.out" | cut -c1-6)" "250 OK"
legit=$(cli "$M/legit.eml" 192.0.2.10 mx.example.com alice@example.com)
got=$(added_ar "$D/out/legit.err")
same "legit: Authentication-Results" "$got" "$(echo "$legit" | field ar)"
expect "legit: spf" "$got" "spf=pass"
expect "legit: dkim" "$got" "dkim=pass"
expect "legit: dmarc" "$got" "dmarc=pass"
expect "legit: logged verdict" "$(grep '^LOG: authscore:' "$D/out/legit.err")" "authscore: $(echo "$legit" | field verdict) "

# The body is found in a split spool too.
session mx.example.com alice@example.com "$M/legit.eml" | bh split 192.0.2.10 -DSPLIT_SPOOL=yes
no_crash split
expect "split spool: body read" "$(added_ar "$D/out/split.err")" "dkim=pass"

# A configuration that does not load: tempfail, and one log line per message saying why.
printf 'dns = { timeout_ms = "soon" }\n' > "$D/broken.conf"
session mx.example.com alice@example.com "$M/legit.eml" | bh broken-conf 192.0.2.10 -DAUTHSCORE_CONF="$D/broken.conf"
no_crash broken-conf
expect "broken config: 451" "$(data_replies "$D/out/broken-conf.out")" "451 Temporary local problem"
same "broken config: logged once" "$(grep -c "^LOG: authscore: $D/broken.conf:1: dns.timeout_ms" "$D/out/broken-conf.err")" 1

# Exim's -d+local_scan shows the plugin's debug lines.
session mx.example.com alice@example.com "$M/legit.eml" | bh debug 192.0.2.10 -d-all+local_scan
expect "debug: engine start" "$(cat "$D/out/debug.err")" "authscore: engine ready for $D/authscore.conf"
expect "debug: verdict" "$(cat "$D/out/debug.err")" ": $(echo "$legit" | field verdict)"

# A DMARC p=reject spoof: 550 with the engine's text, which names the policy.
session mail.evil.test attacker@evil.test "$M/spoof.eml" | bh spoof 203.0.113.66
no_crash spoof
got=$(data_replies "$D/out/spoof.out")
want=$(cli "$M/spoof.eml" 203.0.113.66 mail.evil.test attacker@evil.test)
same "spoof: 550 with smtp_message" "$got" "550 $(echo "$want" | field smtp)"
expect "spoof: names the policy" "$got" "example.com is reject"
same "spoof: no header added" "$(added_ar "$D/out/spoof.err")" ""

# SPF fail at RCPT when the ACL asks (AUTHSCORE_SPF_REJECT), and only then.
printf 'EHLO mail.evil.test\r\nMAIL FROM:<attacker@evil.test>\r\nRCPT TO:<bob@receiver.test>\r\nQUIT\r\n' > "$D/out/rcpt.session"
bh spf-reject 192.0.2.99 -DAUTHSCORE_SPF_REJECT=yes < "$D/out/rcpt.session"
no_crash spf-reject
same "spf at RCPT: refused" "$(replies "$D/out/spf-reject.out" | sed -n 4p)" \
     "550 SPF: 192.0.2.99 is not allowed to send mail for evil.test"
bh spf-off 192.0.2.99 < "$D/out/rcpt.session"
same "spf at RCPT: not asked, accepted" "$(replies "$D/out/spf-off.out" | sed -n 4p)" "250 Accepted"
printf 'EHLO mx.example.com\r\nMAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@receiver.test>\r\nQUIT\r\n' |
    bh spf-pass 192.0.2.10 -DAUTHSCORE_SPF_REJECT=yes
same "spf at RCPT: a pass goes through" "$(replies "$D/out/spf-pass.out" | sed -n 4p)" "250 Accepted"

# DNS unreachable: 451 with the tempfail text, after a bounded wait.
t0=$(date +%s)
session mx.example.com alice@example.com "$M/legit.eml" | bh dns-dead 192.0.2.10 -DAUTHSCORE_CONF="$D/dns-dead.conf"
t1=$(date +%s)
no_crash dns-dead
got=$(data_replies "$D/out/dns-dead.out")
expect "dns unreachable: 451" "$got" "451 "
want=$(cli "$M/legit.eml" 192.0.2.10 mx.example.com alice@example.com "$D/dns-dead.conf")
same "dns unreachable: tempfail text" "$got" "451 $(echo "$want" | field smtp)"
[ $((t1 - t0)) -le 10 ] && ok || bad "dns unreachable: the session took $((t1 - t0)) s"

# A rule that raises an error: both messages still scored (250, header added), the error logged once.
session mx.example.com alice@example.com "$M/legit.eml" "$M/legit.eml" |
    bh rule-error 192.0.2.10 -DAUTHSCORE_CONF="$D/rule-error.conf"
no_crash rule-error
same "rule error: answers" "$(data_replies "$D/out/rule-error.out" | cut -c1-6 | tr '\n' ' ')" "250 OK 250 OK "
same "rule error: headers added" "$(added_ar "$D/out/rule-error.err" | grep -c 'dkim=pass')" 2
same "rule error: verdicts logged" "$(grep -c '^LOG: authscore: accept .*RULE_ERROR' "$D/out/rule-error.err")" 2
same "rule error: logged once" "$(grep -c '^LOG: authscore: .*kaboom in a rule' "$D/out/rule-error.err")" 1

# Malformed messages, one connection: each gets a defined answer, and the connection's state
# survives them (a signed message at the end still passes).
session mx.example.com alice@example.com "$D/msg/no-headers.eml" "$D/msg/junk-headers.eml" \
    "$D/msg/many-sigs.eml" "$D/msg/empty.eml" "$M/legit.eml" | bh malformed 192.0.2.10
no_crash malformed
answers=$(data_replies "$D/out/malformed.out" | cut -c1-3 | tr '\n' ' ')
case "$answers" in
    [245][0-9][0-9]\ [245][0-9][0-9]\ [245][0-9][0-9]\ [245][0-9][0-9]\ 250\ ) ok ;;
    *) bad "malformed: answers '$answers'" ;;
esac
same "malformed: every message checked" \
     "$(grep -c -E '(^LOG: |after DATA: )authscore: (accept|add_header|quarantine|reject|tempfail) ' "$D/out/malformed.err")" 5
same "malformed: last message still verified" "$(added_ar "$D/out/malformed.err" | tail -n 1 | grep -c 'dkim=pass.*dmarc=pass')" 1
echo "malformed answers: $answers"

# A relay client is not checked: no dlfunc call at all.
session mail.evil.test attacker@evil.test "$M/spoof.eml" | bh relay 192.0.2.200
same "relay: accepted unchecked" "$(data_replies "$D/out/relay.out" | cut -c1-6)" "250 OK"
same "relay: plugin not called" "$(grep -c 'LOG: authscore' "$D/out/relay.err")" 0

# The standalone example configuration runs the same ACLs.
mkdir -p "$D/standalone"
cp examples/exim/exim.conf "$D/standalone.conf"
[ "$(id -u)" = 0 ] && chown "$RUN_USER:$RUN_GROUP" "$D/standalone"
session mx.example.com alice@example.com "$M/legit.eml" |
    as_user "$EXIM" -C "$D/standalone.conf" -DAS_BASE="$D/standalone" -DAS_USER="$RUN_USER" \
        -DAS_GROUP="$RUN_GROUP" -DAS_ACLDIR="$D/acl" -DAUTHSCORE_SO="$D/authscore.so" \
        -DAUTHSCORE_CONF="$D/authscore.conf" -bh 192.0.2.10 > "$D/out/standalone.out" 2> "$D/out/standalone.err"
same "examples/exim/exim.conf: legit" "$(data_replies "$D/out/standalone.out" | cut -c1-6)" "250 OK"
expect "examples/exim/exim.conf: header" "$(added_ar "$D/out/standalone.err")" "dmarc=pass"

# The Debian drop-in: Debian's own conf.d with ours added, built by update-exim4.conf as the README
# says (paths in the macros file pointed at this run's copies, as an administrator would edit them).
if [ -d /etc/exim4/conf.d ] && command -v update-exim4.conf >/dev/null 2>&1; then
    E=$D/debian-etc
    mkdir -p "$E" "$D/debian-spool"
    cp -r /etc/exim4/conf.d "$E/"
    printf '%s\n' "dc_eximconfig_configtype='internet'" "dc_other_hostnames='receiver.test'" \
        "dc_local_interfaces='127.0.0.1'" "dc_readhost=''" "dc_relay_domains=''" "dc_minimaldns='false'" \
        "dc_relay_nets=''" "dc_smarthost=''" "CFILEMODE='644'" "dc_use_split_config='true'" \
        "dc_hide_mailname=''" "dc_mailname_in_oh='true'" "dc_localdelivery='maildir_home'" > "$E/update-exim4.conf.conf"
    sed -e "s#/etc/exim4/authscore/#$D/acl/#" -e "s#/usr/lib/authscore/authscore.so#$D/authscore.so#" \
        -e "s#/etc/authscore/authscore.conf#$D/authscore.conf#" examples/exim/conf.d/main/00_authscore_macros \
        > "$E/conf.d/main/00_authscore_macros"
    cp examples/exim/conf.d/router/550_authscore_quarantine "$E/conf.d/router/"
    cp examples/exim/conf.d/transport/30_authscore_quarantine "$E/conf.d/transport/"
    update-exim4.conf -d "$E" -o "$D/debian.gen" > "$D/out/update-exim4" 2>&1
    same "debian: update-exim4.conf" "$(cat "$D/out/update-exim4")" ""
    # Exim's user and spool for an unprivileged run; the rest is Debian's.
    { echo "exim_user = $RUN_USER"; echo "exim_group = $RUN_GROUP"; cat "$D/debian.gen"; } > "$D/debian.conf"
    [ "$(id -u)" = 0 ] && chown "$RUN_USER:$RUN_GROUP" "$D/debian-spool" && chmod 644 "$D/debian.conf"
    debian() {   # debian NAME IP [EXIM-OPTIONS] < session
        name=$1 ip=$2; shift 2
        as_user "$EXIM" -C "$D/debian.conf" -DSPOOLDIR="$D/debian-spool" -DMAIN_HOST_LOOKUP= \
            -DMAIN_TLS_ADVERTISE_HOSTS= "$@" -bh "$ip" > "$D/out/$name.out" 2> "$D/out/$name.err"
        echo $? > "$D/out/$name.rc"
    }
    session mx.example.com alice@example.com "$M/legit.eml" | sed 's/^RCPT TO:<bob@/RCPT TO:<nobody@/' |
        debian debian-legit 192.0.2.10
    no_crash debian-legit
    same "debian: legit" "$(data_replies "$D/out/debian-legit.out" | cut -c1-6)" "250 OK"
    same "debian: header" "$(added_ar "$D/out/debian-legit.err")" \
         "$(cli "$M/legit.eml" 192.0.2.10 mx.example.com alice@example.com | field ar)"
    same "debian: Exim's own DKIM off" "$(grep -c 'check control = dkim_disable_verify' "$D/out/debian-legit.err")" 1
    session mail.evil.test attacker@evil.test "$M/spoof.eml" | sed 's/^RCPT TO:<bob@/RCPT TO:<nobody@/' |
        debian debian-spoof 203.0.113.66
    same "debian: spoof refused" "$(data_replies "$D/out/debian-spoof.out")" \
         "550 $(cli "$M/spoof.eml" 203.0.113.66 mail.evil.test attacker@evil.test | field smtp)"
    sed 's/^RCPT TO:<bob@/RCPT TO:<nobody@/' "$D/out/rcpt.session" |
        debian debian-spf 192.0.2.99 -DAUTHSCORE_SPF_REJECT=yes
    same "debian: spf at RCPT" "$(replies "$D/out/debian-spf.out" | sed -n 4p)" \
         "550 SPF: 192.0.2.99 is not allowed to send mail for evil.test"
else
    echo "note: no /etc/exim4/conf.d or update-exim4.conf: the Debian drop-in was not tried"
fi

# ---- a loopback daemon, swaks, a maildir -------------------------------------------------------
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# With an untrusted -C Exim writes no log files: every log line goes to stderr, and -v marks each
# with the logs it belongs to ("LOG: MAIN", "LOG: MAIN PANIC").  That stream is our log.
LOG=$D/out/daemon.log
as_user "$EXIM" -C "$D/exim.conf" -bdf -v -oX "$port" > "$LOG" 2>&1 &
daemon=$!
i=0
while [ $i -lt 50 ] && ! grep -q 'daemon started' "$LOG"; do sleep 0.1; i=$((i + 1)); done
expect "daemon started" "$(cat "$LOG")" "listening for SMTP on [127.0.0.1]:$port"

# The corpus: kind | client | helo | sender | message | expected outcome (inbox, quarantine,
# unchecked, 550, 451).
cat > "$D/kinds" <<EOF
legit|192.0.2.10|mx.example.com|alice@example.com|$M/legit.eml|inbox
spoof|203.0.113.66|mail.evil.test|attacker@evil.test|$M/spoof.eml|550
forwarded|198.51.100.7|lists.example.org|bounces@lists.example.org|$M/forwarded.eml|inbox
list-modified|198.51.100.7|lists.example.org|bounces@lists.example.org|$M/list-modified.eml|550
ed25519|2001:db8:25::5|mail.example.net|carol@example.net|$M/ed25519.eml|inbox
quarantine|203.0.113.66|mail.evil.test|attacker@evil.test|$D/msg/quarantine.eml|quarantine
forged-ar|192.0.2.10|mx.example.com|alice@example.com|$D/msg/forged-ar.eml|inbox
dns-trouble|192.0.2.77|mail.unserved.test|dan@unserved.test|$D/msg/unserved.eml|451
bounce|192.0.2.10|mx.example.com||$M/legit.eml|inbox
relay|192.0.2.200|mail.evil.test|attacker@evil.test|$M/spoof.eml|unchecked
no-headers|192.0.2.10|mx.example.com|alice@example.com|$D/msg/no-headers.eml|inbox
EOF
nkinds=$(wc -l < "$D/kinds")
# What the command says for each kind: the daemon must agree.
k=0
while IFS='|' read -r kind ip helo from file outcome; do
    k=$((k + 1))
    cli "$file" "$ip" "$helo" "$from" > "$D/out/want.$k"
done < "$D/kinds"

send() {     # send N: message N of the corpus through swaks; $D/out/swaks.N
    k=$(( ($1 - 1) % nkinds + 1 ))
    IFS='|' read -r kind ip helo from file outcome <<EOF
$(sed -n "${k}p" "$D/kinds")
EOF
    { printf 'X-Seq: %s\n' "$1"; cat "$file"; } > "$D/msg/seq.$1"
    case "$ip" in *:*) fam=TCP6 dst=::1 ;; *) fam=TCP4 dst=127.0.0.1 ;; esac
    swaks --server 127.0.0.1 --port "$port" --helo "$helo" --from "${from:-<>}" --to bob@receiver.test \
          --data "$D/msg/seq.$1" --proxy-version 1 --proxy-family "$fam" --proxy-source "$ip" \
          --proxy-source-port 40000 --proxy-dest "$dst" --proxy-dest-port 25 > "$D/out/swaks.$1" 2>&1
}
n=1
while [ $n -le "$N" ]; do    # four clients at a time
    pids=
    for j in 0 1 2 3; do
        [ $((n + j)) -le "$N" ] || break
        send $((n + j)) & pids="$pids $!"
    done
    for p in $pids; do wait "$p"; done
    n=$((n + 4))
done
# Deliveries run in their own processes: wait for the queue to empty.
i=0
while [ $i -lt 300 ]; do
    [ "$(as_user "$EXIM" -C "$D/exim.conf" -bpc 2>/dev/null)" = 0 ] && break
    sleep 0.2; i=$((i + 1))
done
same "queue empty after the run" "$(as_user "$EXIM" -C "$D/exim.conf" -bpc 2>/dev/null)" 0

# ar_headers FILE: our Authentication-Results values (unfolded), one per line.
ar_headers() {
    awk '/^$/ { exit } /^[ \t]/ { if (on) v = v " " $0; next } { if (on) print v; on = 0 }
         tolower($0) ~ /^authentication-results:/ { on = 1; v = $0 } END { if (on) print v }' "$1" |
        sed 's/^[^:]*: *//' | tr '\t' ' ' | tr -s ' ' | sed 's/ *$//' | grep -i '^mx\.receiver\.test;'
}
deliveries=0; failures=0
n=1
while [ $n -le "$N" ]; do
    k=$(( (n - 1) % nkinds + 1 ))
    IFS='|' read -r kind ip helo from file outcome <<EOF
$(sed -n "${k}p" "$D/kinds")
EOF
    answer=$(awk 'f && /^<[-*~]* +[0-9][0-9][0-9][- ]/ { sub(/^<[-*~]* +/, ""); r = r == "" ? substr($0, 1, 3) " " substr($0, 5) : r " " substr($0, 5); if (substr($0, 4, 1) == " ") { print r; exit } }
                  /^ -> \.$/ { f = 1 }' "$D/out/swaks.$n")
    files=$(grep -l -x "X-Seq: $n" "$D"/maildir/new/* "$D"/maildir/.Quarantine/new/* 2>/dev/null)
    count=$(printf '%s' "$files" | grep -c .)
    want_ar=$(field ar < "$D/out/want.$k")
    problem=
    case "$outcome" in
    inbox|quarantine|unchecked)
        case "$answer" in "250 OK"*) ;; *) problem="answer '$answer'" ;; esac
        if [ "$count" != 1 ]; then
            problem="$problem; delivered $count times"
        else
            deliveries=$((deliveries + 1))
            case "$files" in */.Quarantine/*) folder=quarantine ;; *) folder=inbox ;; esac
            [ "$outcome" = unchecked ] && want_folder=inbox || want_folder=$outcome
            [ "$folder" = "$want_folder" ] || problem="$problem; in $folder"
            ars=$(ar_headers "$files")
            if [ "$outcome" = unchecked ]; then
                [ -z "$ars" ] || problem="$problem; unchecked mail has our header: $ars"
            else
                [ "$(printf '%s\n' "$ars" | grep -c .)" = 1 ] || problem="$problem; $(printf '%s\n' "$ars" | grep -c .) headers of ours"
                [ "$ars" = "$want_ar" ] || problem="$problem; header '$ars', wanted '$want_ar'"
            fi
            marks=$(grep -c '^X-Authscore-Action:' "$files")
            if [ "$outcome" = quarantine ]; then
                [ "$marks" = 1 ] && grep -q -x 'X-Authscore-Action: quarantine' "$files" || problem="$problem; no quarantine mark"
            else
                [ "$marks" = 0 ] || problem="$problem; $marks X-Authscore-Action headers"
            fi
            if [ "$kind" = forged-ar ]; then
                grep -q '^Authentication-Results: upstream.example;' "$files" || problem="$problem; another host's header was removed"
                [ "$(awk '/^$/ { exit } /^Authentication-Results:/' "$files" | wc -l)" = 2 ] || problem="$problem; a forged header survived"
            fi
        fi ;;
    550|451)
        want_text=$(field smtp < "$D/out/want.$k")
        [ "$answer" = "$outcome $want_text" ] || problem="answer '$answer', wanted '$outcome $want_text'"
        [ "$count" = 0 ] || problem="$problem; refused but delivered $count times" ;;
    esac
    if [ -n "$problem" ]; then
        failures=$((failures + 1))
        [ $failures -le 5 ] && echo "message $n ($kind): $problem"
    fi
    n=$((n + 1))
done
same "daemon: messages with a wrong outcome" "$failures" 0
all=$(find "$D/maildir" -type f -path "*/new/*" | wc -l)
same "daemon: nothing delivered twice or from nowhere" "$all" "$deliveries"
# The panic log: PANIC entries, but for the notice every untrusted -C run writes.
panics=$(awk '/LOG: .*PANIC/ { getline; print }' "$LOG" | grep -v 'exim user lost privilege for using -C option')
same "daemon: panic log empty" "$panics" ""
same "daemon: no dlfunc failures" "$(grep -c 'dlfunc{.*failed' "$LOG")" 0
same "daemon: no delivery trouble" "$(grep -c ' \*\* \| == ' "$LOG")" 0
same "daemon: deliveries completed" "$(grep -c '^ *[0-9]*   Completed$' "$LOG")" "$deliveries"
echo "daemon: $N messages, $deliveries delivered, $((N - deliveries)) refused"
stop_daemon

# ---- start-up cost (printed, not asserted) -------------------------------------------------
# CPU time of whole -bh sessions, median of 20: one message from a relay client (the plugin is
# never loaded), the same from a checked client (dlopen, config, Lua, rules, DNS, the first
# check), and the same two with eleven messages on one connection (ten more checks, warm).
session mx.example.com alice@example.com "$M/legit.eml" > "$D/out/one.session"
session mx.example.com alice@example.com "$M/legit.eml" "$M/legit.eml" "$M/legit.eml" "$M/legit.eml" "$M/legit.eml" \
    "$M/legit.eml" "$M/legit.eml" "$M/legit.eml" "$M/legit.eml" "$M/legit.eml" "$M/legit.eml" > "$D/out/eleven.session"
if [ "$(id -u)" = 0 ]; then set -- setpriv --reuid="$RUN_USER" --regid="$RUN_GROUP" --clear-groups --; else set --; fi
python3 - "$D" "$EXIM" "$@" <<'EOF'
import resource, statistics, subprocess, sys
d, exim, prefix = sys.argv[1], sys.argv[2], sys.argv[3:]
def run(ip, session):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(f"{d}/out/{session}.session", "rb") as f:
        subprocess.run(prefix + [exim, "-C", f"{d}/exim.conf", "-bh", ip], stdin=f,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
def median(ip, session):
    return statistics.median(run(ip, session) for _ in range(20))
base, first = median("192.0.2.200", "one"), median("192.0.2.10", "one")
base11, eleven = median("192.0.2.200", "eleven"), median("192.0.2.10", "eleven")
print(f"start-up: a fresh Exim process's first check costs {first - base:.1f} ms CPU "
      f"({first:.1f} ms for a -bh session with it, {base:.1f} ms without); "
      f"each further message on the connection {((eleven - base11) - (first - base)) / 10:.2f} ms CPU "
      f"(medians of 20 runs)")
EOF

echo "exim_test: $pass/$total checks passed"
[ "$pass" -eq "$total" ]
