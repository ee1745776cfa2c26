# hostile_dns.py PORTFILE - a DNS server on 127.0.0.1 that answers badly on purpose (UDP and TCP).
# The first label of the question picks the misbehaviour; the chosen port is written to PORTFILE.
#   garbage  random bytes            trunc   TC over UDP, a cut-off packet over TCP
#   big      a 40 KB TXT over TCP    loop    CNAME to itself      servfail  SERVFAIL
#   wrongid  reply with another ID   silent  no reply at all      ptrbomb   300 TXT RRs
# Anything else: NXDOMAIN.  SPF records for "spf-<kind>" names point at the kinds above.
import os, random, socket, socketserver, struct, sys, threading

def name_wire(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"

def parse_question(q):
    i, labels = 12, []
    while q[i]:
        labels.append(q[i + 1:i + 1 + q[i]].decode("ascii", "replace"))
        i += 1 + q[i]
    qtype, = struct.unpack("!H", q[i + 1:i + 3])
    return ".".join(labels).lower(), qtype, q[12:i + 5]

def header(qid, flags, an=0, rcode=0):
    return struct.pack("!HHHHHH", qid, 0x8400 | flags | rcode, 1, an, 0, 0)

def rr(name, rtype, rdata, ttl=60):
    return name_wire(name) + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata

def txt(s):
    b = s.encode()
    return b"".join(bytes([len(b[i:i + 255])]) + b[i:i + 255] for i in range(0, max(len(b), 1), 255))

SPF = {
    "spf-garbage": "v=spf1 a:garbage.hostile.test -all",
    "spf-loop": "v=spf1 include:loop.hostile.test -all",
    "spf-big": "v=spf1 include:big.hostile.test -all",
    "spf-trunc": "v=spf1 exists:trunc.hostile.test -all",
    "spf-wrongid": "v=spf1 a:wrongid.hostile.test -all",
    "spf-many": "v=spf1 include:ptrbomb.hostile.test -all",
}

def answer(q, tcp):
    qid, = struct.unpack("!H", q[:2])
    name, qtype, question = parse_question(q)
    kind = name.split(".")[0]
    if kind == "silent":
        return None
    if kind == "garbage":
        return q[:2] + os.urandom(random.randint(1, 600))
    if kind == "wrongid":
        return header(qid ^ 0x5555, 0) + question
    if kind == "servfail":
        return header(qid, 0, rcode=2) + question
    if kind == "loop":
        return header(qid, 0, an=1) + question + rr(name, 5, name_wire(name))
    if kind == "trunc":
        if not tcp:
            return header(qid, 0x0200) + question
        full = header(qid, 0, an=1) + question + rr(name, 16, txt("v=spf1 -all" + "x" * 400))
        return full[:len(full) - 200]
    if kind == "big":
        if not tcp:
            return header(qid, 0x0200) + question
        return header(qid, 0, an=1) + question + rr(name, 16, txt("v=spf1 " + "a" * 40000 + " -all"))
    if kind == "ptrbomb":
        rrs = b"".join(rr(name, 16, txt("v=spf1 ip4:10.%d.0.0/16 -all" % i)) for i in range(300))
        return header(qid, 0, an=300) + question + rrs
    if kind in SPF and qtype == 16:
        return header(qid, 0, an=1) + question + rr(name, 16, txt(SPF[kind]))
    return header(qid, 0, rcode=3) + question

class UDP(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        try:
            r = answer(data, False)
        except Exception:
            return
        if r is not None:
            sock.sendto(r, self.client_address)

class TCP(socketserver.BaseRequestHandler):
    def handle(self):
        try:
            n, = struct.unpack("!H", self.request.recv(2))
            data = b""
            while len(data) < n:
                chunk = self.request.recv(n - len(data))
                if not chunk:
                    return
                data += chunk
            r = answer(data, True)
            if r is not None:
                self.request.sendall(struct.pack("!H", len(r)) + r)
        except Exception:
            pass

class TS(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True

if __name__ == "__main__":
    udp = socketserver.ThreadingUDPServer(("127.0.0.1", 0), UDP)
    tcp = TS(("127.0.0.1", udp.server_address[1]), TCP)
    threading.Thread(target=tcp.serve_forever, daemon=True).start()
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(udp.server_address[1]))
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    udp.serve_forever()
