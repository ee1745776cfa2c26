# lib.sh - shared helpers for test scripts: a real NSD on 127.0.0.1 serving tests/zones/*.zone.
# dns_start exports AS_DNS=127.0.0.1:PORT; dns_stop stops it.
dns_start() {
    [ -n "${AS_DNS:-}" ] && return 0
    DNS_DIR=$(mktemp -d /tmp/authscore-nsd.XXXXXX)
    port=$(( 20000 + $$ % 20000 ))
    conf="$DNS_DIR/nsd.conf"
    {
        echo "server:"
        echo "  ip-address: 127.0.0.1"
        echo "  port: $port"
        echo "  username: \"\""
        echo "  zonesdir: \"$PWD/tests/zones\""
        echo "  pidfile: \"$DNS_DIR/nsd.pid\""
        echo "  database: \"\""
        echo "  xfrdfile: \"$DNS_DIR/xfrd.state\""
        echo "  zonelistfile: \"$DNS_DIR/zone.list\""
        echo "  logfile: \"$DNS_DIR/nsd.log\""
        echo "  server-count: 1"
        echo "  verbosity: 1"
        echo "remote-control:"
        echo "  control-enable: no"
        for z in tests/zones/*.zone; do
            [ -f "$z" ] || continue
            name=$(basename "$z" .zone)
            echo "zone:"
            echo "  name: \"$name\""
            echo "  zonefile: \"$name.zone\""
        done
    } > "$conf"
    /usr/sbin/nsd -c "$conf" -P "$DNS_DIR/nsd.pid" || { cat "$DNS_DIR/nsd.log" >&2; return 1; }
    i=0
    while [ $i -lt 50 ]; do
        if drill -p "$port" @127.0.0.1 authscore.test SOA >/dev/null 2>&1; then break; fi
        sleep 0.1; i=$((i + 1))
    done
    export AS_DNS="127.0.0.1:$port" DNS_DIR
}
dns_stop() {
    [ -n "${DNS_DIR:-}" ] || return 0
    [ -f "$DNS_DIR/nsd.pid" ] && kill "$(cat "$DNS_DIR/nsd.pid")" 2>/dev/null
    rm -rf "$DNS_DIR"; DNS_DIR=
}
