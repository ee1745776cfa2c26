#!/bin/sh
# make-fixtures.sh - regenerate the self-signed DKIM test messages and their key records (own/).
# Needs openssl and Debian's python3-dkim (dkimpy) with python3-nacl.  The output is checked in,
# so the tests never run this.  Keys are made afresh each run: rerun it whole, never in part.
set -eu
cd "$(dirname "$0")"
OUT=own
mkdir -p "$OUT"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$OUT/rsa2048.pem" 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:512 -out "$OUT/rsa512.pem" 2>/dev/null
exec /usr/bin/python3 - "$OUT" <<'EOF'
import base64, hashlib, subprocess, sys, time
import dkim, nacl.signing
from dkim import CanonicalizationPolicy, parse_pem_private_key

out = sys.argv[1]
# A fixed, past signing time: a clock running behind must not see t= in the future.
time.time = lambda: 1700000000
DOM = b"dkim.test"

def spki_b64(pem):
    der = subprocess.run(["openssl", "pkey", "-in", pem, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return base64.b64encode(der).decode()

rsa2048 = open(f"{out}/rsa2048.pem", "rb").read()
rsa512 = open(f"{out}/rsa512.pem", "rb").read()
seed = nacl.signing.SigningKey.generate()
ed_priv = base64.b64encode(bytes(seed))
ed_pub = base64.b64encode(bytes(seed.verify_key)).decode()
open(f"{out}/ed25519.key", "wb").write(ed_priv + b"\n")

BASE = (b"From: Alice Example <alice@dkim.test>\r\n"
        b"To: Bob <bob@example.net>\r\n"
        b"Subject: Quarterly numbers\r\n"
        b"Date: Thu, 04 Dec 2025 10:00:00 +0000\r\n"
        b"Message-ID: <fixture-1@dkim.test>\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=us-ascii\r\n"
        b"\r\n"
        b"Hello Bob,\r\n"
        b"\r\n"
        b"The numbers   are\tin.  Trailing space here:   \r\n"
        b"Regards,\r\n"
        b"Alice\r\n"
        b"\r\n"
        b"\r\n")

def sign(msg, sel, key, alg=b"rsa-sha256", canon=(b"relaxed", b"relaxed"), length=False):
    return dkim.sign(msg, sel, DOM, key, canonicalize=canon, signature_algorithm=alg,
                     include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
                     length=length, linesep=b"\r\n") + msg

def sign_without_from(msg, sel, key):
    """dkimpy refuses to leave From unsigned (RFC 6376 5.4): build the header by hand."""
    d = dkim.DKIM(msg, signature_algorithm=b"rsa-sha256", linesep=b"\r\n")
    pk = parse_pem_private_key(key)
    canon = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    inc = (b"to", b"subject", b"date")
    d.include_headers = inc
    d.hasher = hashlib.sha256

    bh = base64.b64encode(hashlib.sha256(canon.canonicalize_body(d.body)).digest())
    fields = [(b"v", b"1"), (b"a", b"rsa-sha256"), (b"c", b"relaxed/relaxed"), (b"d", DOM),
              (b"s", sel), (b"t", str(int(time.time())).encode()), (b"h", b" : ".join(inc)),
              (b"bh", bh), (b"b", b"0" * 60)]
    return b"DKIM-Signature: " + d.gen_header(fields, inc, canon, b"DKIM-Signature", pk) + msg

def put(name, data):
    open(f"{out}/{name}", "wb").write(data)

put("rsa2048-relaxed.eml", sign(BASE, b"rsa2048", rsa2048))
put("rsa2048-simple.eml", sign(BASE, b"rsa2048", rsa2048, canon=(b"simple", b"simple")))
put("ed25519-relaxed.eml", sign(BASE, b"ed", ed_priv, alg=b"ed25519-sha256"))
put("rsa-sha1.eml", sign(BASE, b"rsa2048", rsa2048, alg=b"rsa-sha1"))
put("rsa512.eml", sign(BASE, b"rsa512", rsa512))
# l= covers the original body; a footer appended afterwards stays unsigned.
put("length.eml", sign(BASE, b"rsa2048", rsa2048, length=True) + b"-- \r\nappended footer\r\n")
good = sign(BASE, b"rsa2048", rsa2048)
put("tampered-body.eml", good.replace(b"numbers   are", b"numbers were"))
put("tampered-header.eml", good.replace(b"Subject: Quarterly numbers", b"Subject: Quarterly numbers!"))
put("lf-only.eml", good.replace(b"\r\n", b"\n"))
put("lf-only-simple.eml", sign(BASE, b"rsa2048", rsa2048, canon=(b"simple", b"simple")).replace(b"\r\n", b"\n"))
msg = BASE
for i in range(12):
    msg = sign(msg, b"rsa2048", rsa2048)
put("twelve.eml", msg)
for sel in (b"timeout", b"missing", b"garbage", b"long", b"multi", b"multikey", b"testing"):
    put(sel.decode() + ".eml", sign(BASE, sel, rsa2048))
put("no-from-signed.eml", sign_without_from(BASE, b"rsa2048", rsa2048))
# A signature that is fine, on a message without any From header at all.
put("no-from-header.eml", sign(BASE, b"rsa2048", rsa2048).replace(b"From: Alice Example <alice@dkim.test>\r\n", b""))

def txt(rdata):
    """One TXT RR, split into 255-byte character-strings."""
    parts = [rdata[i:i + 255] for i in range(0, len(rdata), 255)] or [""]
    return " ".join('"%s"' % p for p in parts)

k2048 = spki_b64(f"{out}/rsa2048.pem")
zone = [
    "; keys for the self-signed fixtures (make-fixtures.sh)",
    "$ORIGIN _domainkey.dkim.test.",
    "$TTL 300",
    "rsa2048 IN TXT " + txt("v=DKIM1; k=rsa; p=" + k2048),
    "rsa512 IN TXT " + txt("v=DKIM1; k=rsa; p=" + spki_b64(f"{out}/rsa512.pem")),
    "ed IN TXT " + txt("v=DKIM1; k=ed25519; p=" + ed_pub),
    "testing IN TXT " + txt("v=DKIM1; k=rsa; t=y; p=" + k2048),
    "garbage IN TXT " + txt("v=DKIM1; k=rsa; p=!!not*base64!!"),
    "long IN TXT " + txt("v=DKIM1; k=rsa; n=" + "x" * 1200 + "; p=" + k2048),
    "multi IN TXT " + txt("v=spf1 -all"),
    "multi IN TXT " + txt("v=DKIM1; k=rsa; p=" + k2048),
    "multikey IN TXT " + txt("v=DKIM1; k=rsa; p=" + k2048),
    "multikey IN TXT " + txt("v=DKIM1; k=rsa; p=" + spki_b64(f"{out}/rsa512.pem")),
]
put("keys.zone", ("\n".join(zone) + "\n").encode())
EOF
