# zone_dns.py PORTFILE LOGFILE ZONEFILE... [--delay-ms N] - an authoritative DNS server on 127.0.0.1
# (UDP and TCP) answering from master files, that writes every question it is asked to LOGFILE as one
# line "name TYPE", so tests can count the queries that reach DNS.  A file may hold several zones, each
# starting at its own $ORIGIN (as examples/zone.db does).  --delay-ms makes it answer like a distant
# server.  Names outside the zones are REFUSED.  The chosen port is written to PORTFILE.
import os, socketserver, struct, sys, threading, time
import dns.exception, dns.flags, dns.message, dns.name, dns.rdataclass, dns.rdatatype, dns.rcode, dns.rrset, dns.zone

def load_zones(paths):
    zones = []
    for path in paths:
        ttl, origin, block = "$TTL 3600\n", None, []
        def flush():
            if origin is not None:
                text = ttl + "$ORIGIN " + origin + "\n" + "".join(block)
                zones.append(dns.zone.from_text(text, origin=origin, relativize=False, check_origin=False))
        for line in open(path):
            word = line.split(";")[0].strip().split()
            if word and word[0] == "$TTL":
                ttl = line
            elif word and word[0] == "$ORIGIN":
                flush()
                origin, block = word[1], []
            else:
                block.append(line)
        flush()
    return zones

class Server:
    def __init__(self, zones, log, delay):
        self.zones, self.log, self.delay, self.lock = zones, log, delay, threading.Lock()

    def zone_for(self, name):
        best = None
        for z in self.zones:
            if name.is_subdomain(z.origin) and (best is None or len(z.origin) > len(best.origin)):
                best = z
        return best

    def answer(self, wire):
        q = dns.message.from_wire(wire)
        r = dns.message.make_response(q)
        if not q.question:
            r.set_rcode(dns.rcode.FORMERR)
            return r
        qname, qtype = q.question[0].name, q.question[0].rdtype
        with self.lock:
            self.log.write("%s %s\n" % (qname.to_text(omit_final_dot=True).lower(), dns.rdatatype.to_text(qtype)))
            self.log.flush()
        if self.delay:
            time.sleep(self.delay / 1000.0)
        z = self.zone_for(qname)
        if z is None:
            r.set_rcode(dns.rcode.REFUSED)
            return r
        r.flags |= dns.flags.AA
        name = qname
        for _ in range(9):   # follow CNAMEs inside the zone
            node = z.get_node(name)
            if node is None:
                break
            rds = node.get_rdataset(dns.rdataclass.IN, qtype)
            if rds is not None:
                r.answer.append(dns.rrset.from_rdata_list(name, rds.ttl, list(rds)))
                return r
            cname = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
            if cname is None or qtype == dns.rdatatype.CNAME:
                break
            r.answer.append(dns.rrset.from_rdata_list(name, cname.ttl, list(cname)))
            name = list(cname)[0].target
            if not name.is_subdomain(z.origin):
                return r
        soa = z.get_rdataset(z.origin, dns.rdatatype.SOA)
        r.authority.append(dns.rrset.from_rdata_list(z.origin, soa.ttl, list(soa)))
        exists = z.get_node(name) is not None or any(n.is_subdomain(name) for n in z.nodes)
        if not exists:
            r.set_rcode(dns.rcode.NXDOMAIN)
        return r

def main():
    args, delay = sys.argv[1:], 0
    if "--delay-ms" in args:
        i = args.index("--delay-ms")
        delay = int(args[i + 1])
        del args[i:i + 2]
    portfile, logfile, paths = args[0], args[1], args[2:]
    srv = Server(load_zones(paths), open(logfile, "a"), delay)

    class UDP(socketserver.BaseRequestHandler):
        def handle(self):
            data, sock = self.request
            try:
                r = srv.answer(data).to_wire(max_size=512)
            except dns.exception.TooBig:
                r = None
            except Exception:
                return
            if r is None:
                q = dns.message.from_wire(data)
                t = dns.message.make_response(q)
                t.flags |= dns.flags.TC
                r = t.to_wire()
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
                r = srv.answer(data).to_wire()
                self.request.sendall(struct.pack("!H", len(r)) + r)
            except Exception:
                pass

    class TS(socketserver.ThreadingMixIn, socketserver.TCPServer):
        allow_reuse_address = True
        daemon_threads = True

    udp = socketserver.ThreadingUDPServer(("127.0.0.1", 0), UDP)
    udp.daemon_threads = True
    tcp = TS(("127.0.0.1", udp.server_address[1]), TCP)
    threading.Thread(target=tcp.serve_forever, daemon=True).start()
    with open(portfile + ".tmp", "w") as f:
        f.write(str(udp.server_address[1]))
    os.rename(portfile + ".tmp", portfile)
    udp.serve_forever()

if __name__ == "__main__":
    main()
