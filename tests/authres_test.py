# authres_test.py - every Authentication-Results we write parses with an independent RFC 8601 parser
# (Debian's python3-authres) and says what the JSON verdict says.
import json, os, subprocess, sys, tempfile
import authres

AUTHSCORE = os.environ.get("AUTHSCORE", "build/authscore")
EX = "examples"
checks = failed = 0

def check(cond, what):
    global checks, failed
    checks += 1
    if not cond:
        failed += 1
        print("FAIL:", what)

def run(args, message):
    out = subprocess.run([AUTHSCORE, "check", "--zone", EX + "/zone.db", "--authserv-id", "mx.receiver.test",
                          "--json"] + args + [message], capture_output=True, check=True).stdout
    return json.loads(out)

def verify(name, v):
    hdr = "Authentication-Results: " + v["authentication_results"]
    try:
        ar = authres.AuthenticationResultsHeader.parse(hdr)
    except Exception as e:
        check(False, "%s: header does not parse (%s): %r" % (name, e, hdr))
        return
    check(ar.authserv_id == "mx.receiver.test", name + ": authserv-id")
    by = {}
    for r in ar.results:
        by.setdefault(r.method, []).append(r)
    check(len(by.get("spf", [])) == 1 and by["spf"][0].result == v["spf"]["result"], name + ": spf word")
    dk = by.get("dkim", [])
    if v["dkim"]:
        check([r.result for r in dk] == [s["result"] for s in v["dkim"]], name + ": one dkim= per signature")
        for r, s in zip(dk, v["dkim"]):
            props = {(p.type, p.name): p.value for p in r.properties}
            check(props.get(("header", "d")) == s["domain"], name + ": header.d")
            check(props.get(("header", "s")) == s["selector"], name + ": header.s")
            check(len(props.get(("header", "b"), "")) == 8, name + ": header.b has 8 characters")
    else:
        check([r.result for r in dk] == ["none"], name + ": dkim=none without signatures")
    dm = by.get("dmarc", [])
    check(len(dm) == 1 and dm[0].result == v["dmarc"]["result"], name + ": dmarc word")
    if dm and v["dmarc"]["from_domain"]:
        props = {(p.type, p.name): p.value for p in dm[0].properties}
        check(props.get(("header", "from")) == v["dmarc"]["from_domain"], name + ": header.from")

for line in open(EX + "/messages.txt"):
    if line.startswith("#") or not line.strip():
        continue
    f, ip, helo, frm = line.split()[:4]
    verify(f, run(["--ip", ip, "--helo", helo, "--mail-from", frm], EX + "/messages/" + f))

# Awkward identities must come out quoted, never as broken syntax.
with tempfile.TemporaryDirectory() as tmp:
    odd = os.path.join(tmp, "odd.eml")
    with open(odd, "wb") as fh:
        fh.write(b"From: \"x;y\" <\"we;ird\"@example.com>\r\nSubject: t\r\n\r\nbody\r\n")
    verify("odd local part", run(["--ip", "192.0.2.1", "--helo", "h.example.com",
                                  "--mail-from", "\"we;ird (x)\"@example.com"], odd))
    verify("null sender", run(["--ip", "192.0.2.1", "--helo", "mx.example.com", "--mail-from", ""], odd))
    with open(odd, "wb") as fh:
        fh.write(b"Subject: no from\r\n\r\nbody\r\n")
    verify("no From", run(["--ip", "192.0.2.1", "--mail-from", "a@example.com"], odd))

print("%d/%d checks passed" % (checks - failed, checks))
sys.exit(1 if failed else 0)
