#!/usr/bin/python3
"""rspamd_dns.py - the benchmark DNS server: is it rate limiting, and a private one if it is.

    rspamd_dns.py probe HOST:PORT NAME     exit 0: answers a burst in full; 3: it truncates or drops
    rspamd_dns.py serve DIR ZONEFILE...    start NSD on 127.0.0.1 (no rate limit) serving the files;
                                           prints "127.0.0.1:PORT PIDFILE"

Why: NSD's response rate limiting (rrl-ratelimit, 200 answers a second per client and name by
default) answers a fast client with truncated (TC) replies.  A client without its own cache (rspamd
asks for every DMARC record, an Exim process per connection asks for everything) then retries over
TCP, and rspamd 3.4's resolver never stops watching its TCP socket for writability afterwards: the
worker spins at 100% CPU from then on and its throughput collapses.  A benchmark of the filters, not
of the rate limiter, needs a server that answers every question: rspamd.sh and exim.sh probe DNS and
fall back to a private NSD on the same zone files when it truncates.
Used by bench/rspamd.sh and bench/exim.sh.
"""
import os
import socket
import struct
import subprocess
import sys
import time


def query(qid, name, qtype=16):
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.strip(".").split(".") if p) + b"\0"
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + struct.pack(">HH", qtype, 1)


def probe(server, name, count=1000):
    host, port = server.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    answers = truncated = 0
    try:
        s.connect((host, int(port)))
        for i in range(count):
            s.send(query(i, name))
        s.settimeout(0.5)
        while answers < count:
            r = s.recv(4096)
            answers += 1
            truncated += bool(r[2] & 0x02)
    except socket.timeout:
        pass
    except OSError as e:   # nothing listening: ICMP port unreachable comes back as ECONNREFUSED
        print(f"dns probe {server}: {e.strerror or e}")
        return 3
    print(f"dns probe {server}: {count} questions for {name}: {answers} answers, {truncated} truncated")
    return 0 if answers == count and truncated == 0 else 3


def zone_name(path):
    """The zone's apex: $ORIGIN before the SOA, else the SOA's owner, else the file name."""
    origin = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            t = line.split(";", 1)[0].split()
            if not t:
                continue
            if t[0].upper() == "$ORIGIN" and len(t) > 1:
                origin = t[1]
            elif "SOA" in (x.upper() for x in t[1:4]):
                owner = t[0] if not line[0].isspace() else "@"
                if owner == "@":
                    return origin or os.path.basename(path).rsplit(".", 1)[0]
                return owner if owner.endswith(".") or not origin else owner + "." + origin
    return os.path.basename(path).rsplit(".", 1)[0]


def serve(d, zones):
    os.makedirs(d, exist_ok=True)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    conf = [
        "server:", "  ip-address: 127.0.0.1", f"  port: {port}", '  username: ""',
        f'  pidfile: "{d}/nsd.pid"', '  database: ""', f'  xfrdfile: "{d}/xfrd.state"',
        f'  zonelistfile: "{d}/zone.list"', f'  logfile: "{d}/nsd.log"', "  server-count: 1",
        "  rrl-ratelimit: 0", "  rrl-whitelist-ratelimit: 0",      # answer every question
        "remote-control:", "  control-enable: no",
    ]
    names = []
    for z in zones:
        names.append(zone_name(z))
        conf += ["zone:", f'  name: "{names[-1]}"', f'  zonefile: "{os.path.abspath(z)}"']
    with open(f"{d}/nsd.conf", "w") as f:
        f.write("\n".join(conf) + "\n")
    r = subprocess.run(["/usr/sbin/nsd", "-c", f"{d}/nsd.conf", "-P", f"{d}/nsd.pid"])
    if r.returncode:
        sys.exit(f"rspamd_dns: nsd did not start: see {d}/nsd.log")
    # NSD has answered when the SOA of the first zone comes back.
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.settimeout(0.2)
    for _ in range(50):
        try:
            c.sendto(query(1, names[0], 6), ("127.0.0.1", port))
            if c.recv(4096):
                break
        except OSError:
            time.sleep(0.1)
    print(f"127.0.0.1:{port} {d}/nsd.pid")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "probe":
        sys.exit(probe(sys.argv[2], sys.argv[3]))
    if len(sys.argv) >= 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(__doc__)
