#!/usr/bin/python3
# make-examples.py - (re)generate the signed demo messages and the DKIM key records in zone.db.
# Run by developers only (needs Debian's python3-dkim); the outputs are committed.
import base64, subprocess, dkim

def sign(msg, selector, domain, keyfile, algo=b"rsa-sha256"):
    key = open(keyfile, "rb").read()
    if algo == b"ed25519-sha256":
        der = subprocess.run(["openssl", "pkey", "-in", keyfile, "-outform", "DER"],
                             capture_output=True, check=True).stdout
        key = base64.b64encode(der[-32:])
    sig = dkim.sign(msg, selector, domain, key, canonicalize=(b"relaxed", b"relaxed"),
                    include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
                    signature_algorithm=algo)
    return sig + msg

def pub(keyfile, ed=False):
    der = subprocess.run(["openssl", "pkey", "-in", keyfile, "-pubout", "-outform", "DER"],
                         capture_output=True, check=True).stdout
    return base64.b64encode(der[-32:] if ed else der).decode()

def body(lines):
    return ("\r\n".join(lines) + "\r\n").encode()

legit = body([
    "From: Alice Example <alice@example.com>",
    "To: bob@receiver.test",
    "Subject: Quarterly figures",
    "Date: Thu, 03 Dec 2026 09:12:00 +0000",
    "Message-ID: <q4-figures@example.com>",
    "",
    "Hi Bob,",
    "",
    "the figures are attached to the shared folder as usual.",
    "",
    "Alice",
])
signed = sign(legit, b"sel2026", b"example.com", "keys/example.com.sel2026.pem")
open("messages/legit.eml", "wb").write(signed)

spoof = body([
    "From: \"Example CEO\" <ceo@example.com>",
    "To: bob@receiver.test",
    "Subject: Urgent wire transfer",
    "Date: Thu, 03 Dec 2026 10:01:00 +0000",
    "Message-ID: <urgent-1@evil.test>",
    "",
    "Please wire 40,000 EUR today. I am in a meeting, reply by mail only.",
])
open("messages/spoof.eml", "wb").write(spoof)

# The list adds its own headers above the signature: DKIM survives, SPF is the list's.
forwarded = body([
    "Received: from mx.example.com by lists.example.org; Thu, 03 Dec 2026 09:12:05 +0000",
    "List-Id: <figures.lists.example.org>",
]) + signed
open("messages/forwarded.eml", "wb").write(forwarded)

# A list that rewrites the Subject breaks the signature: DMARC fails although the mail is genuine.
broken = signed.replace(b"Subject: Quarterly figures", b"Subject: [figures] Quarterly figures")
open("messages/list-modified.eml", "wb").write(body([
    "List-Id: <figures.lists.example.org>"]) + broken)

ed = body([
    "From: Carol <carol@example.net>",
    "To: bob@receiver.test",
    "Subject: Lunch",
    "Date: Thu, 03 Dec 2026 11:30:00 +0000",
    "Message-ID: <lunch@example.net>",
    "",
    "Lunch at noon?",
])
open("messages/ed25519.eml", "wb").write(
    sign(ed, b"ed2026", b"example.net", "keys/example.net.ed2026.pem", b"ed25519-sha256"))

def txt(s):
    parts = [s[i:i + 200] for i in range(0, len(s), 200)]
    return "( " + " ".join('"%s"' % p for p in parts) + " )"

zone = open("zone.db.in").read()
zone = zone.replace("@SEL2026@", txt("v=DKIM1; k=rsa; p=" + pub("keys/example.com.sel2026.pem")))
zone = zone.replace("@ED2026@", txt("v=DKIM1; k=ed25519; p=" + pub("keys/example.net.ed2026.pem", True)))
open("zone.db", "w").write(zone)
