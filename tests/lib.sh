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

# redis_start DIR: a throwaway redis-server on the unix socket DIR/redis.sock (no TCP port, no
# persistence); sets REDIS to its URL.  redis_stop DIR stops it and waits until it is gone, so
# nothing writes into DIR as the caller removes it.
redis_start() {
    redis-server --port 0 --unixsocket "$1/redis.sock" --save '' --appendonly no --daemonize yes \
        --pidfile "$1/redis.pid" --dir "$1" --logfile "$1/redis.log" || { echo "no redis-server" >&2; return 1; }
    i=0
    until redis-cli -s "$1/redis.sock" ping >/dev/null 2>&1; do
        i=$((i + 1)); [ $i -gt 50 ] && { echo "redis-server did not start" >&2; return 1; }
        sleep 0.1
    done
    REDIS="unix:$1/redis.sock"
}
redis_stop() {
    [ -f "$1/redis.pid" ] || return 0
    p=$(cat "$1/redis.pid"); kill "$p" 2>/dev/null
    i=0; while kill -0 "$p" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
    rm -f "$1/redis.pid"
}
