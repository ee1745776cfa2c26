#!/usr/bin/python3
# corpus.py OUTDIR - the benchmark corpus: signed messages, their manifest and the zone that authorises them.
# Everything follows from SEED, keys included, so two runs (or two machines) measure the same bytes.
import base64, hashlib, json, multiprocessing, os, random, re, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

SEED = 20261204
DOMAINS = 50
MESSAGES = 2000
SIZE = 10240            # mean message size in bytes, headers and signature included
ED_EVERY = 10           # every tenth message is signed with ed25519-sha256 instead of rsa-sha256
INCLUDE_EVERY = 5       # every fifth domain's SPF record goes through an include: (a chain of two lookups)
ESP = "_spf.mailhost.test"
TIME = 1764547200       # t= of every signature: 2025-12-01, in the past, no x=
SIGNED = ["from", "to", "subject", "date", "message-id", "mime-version", "content-type"]

SMALL_PRIMES = [p for p in range(3, 2000) if all(p % d for d in range(2, int(p ** 0.5) + 1))]


def is_prime(n, rng):
    if any(n % p == 0 for p in SMALL_PRIMES):
        return False
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(5):   # Miller-Rabin: 5 rounds for random 1024-bit candidates (FIPS 186-4, table C.2)
        x = pow(rng.randrange(2, n - 1), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def prime(rng, bits):
    n = rng.getrandbits(bits) | (3 << (bits - 2)) | 1   # top two bits set: p*q has exactly 2*bits bits
    while not (is_prime(n, rng) and (n - 1) % 65537):
        n += 2
    return n


def rsa_primes(i):
    """The primes of domain i's RSA-2048 key, from the seed (openssl genpkey would differ on every run)."""
    rng = random.Random("%d-rsa-%d" % (SEED, i))
    p = prime(rng, 1024)
    q = prime(rng, 1024)
    while q == p:
        q = prime(rng, 1024)
    return p, q


def rsa_key(p, q):
    e = 65537
    n, d = p * q, pow(e, -1, (p - 1) * (q - 1))
    pub = rsa.RSAPublicNumbers(e, n)
    return rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), pub).private_key()


def canon_header(name, value):
    """RFC 6376 relaxed header canonicalisation of one field."""
    value = re.sub(r"[ \t]+", " ", value.replace("\r\n", "")).strip(" ")
    return name.lower() + ":" + value + "\r\n"


def canon_body(body):
    lines = [re.sub(r"[ \t]+", " ", l).rstrip(" ") for l in body.split("\r\n")]
    text = "\r\n".join(lines)
    text = text.rstrip("\r\n")
    return (text + "\r\n") if text else ""


def sign(headers, body, domain, selector, key, ed):
    """headers: list of (name, value); returns the DKIM-Signature value (relaxed/relaxed)."""
    bh = base64.b64encode(hashlib.sha256(canon_body(body).encode()).digest()).decode()
    algo = "ed25519-sha256" if ed else "rsa-sha256"
    tags = ["v=1", "a=" + algo, "c=relaxed/relaxed", "d=" + domain, "s=" + selector, "t=%d" % TIME,
            "h=" + ":".join(SIGNED), "bh=" + bh, "b="]
    value = "; ".join(tags[:4]) + ";\r\n\t" + "; ".join(tags[4:7]) + ";\r\n\t" + "; ".join(tags[7:])
    data = "".join(canon_header(n, v) for n, v in headers if n.lower() in SIGNED)
    data += canon_header("DKIM-Signature", value)[:-2]   # the signature field itself, without CRLF
    if ed:   # RFC 8463: Ed25519 over the SHA-256 hash of the canonical data
        sig = key.sign(hashlib.sha256(data.encode()).digest())
    else:
        sig = key.sign(data.encode(), padding.PKCS1v15(), hashes.SHA256())
    b = base64.b64encode(sig).decode()
    return value + "\r\n\t".join(b[i:i + 72] for i in range(0, len(b), 72))


def txt(s):
    """A TXT record's data as quoted strings of at most 200 octets."""
    return "( " + " ".join('"%s"' % s[i:i + 200] for i in range(0, len(s), 200)) + " )"


WORDS = ("invoice order shipment meeting agenda quarterly report figures budget review draft final "
         "please attached summary project update schedule customer account payment delivery team "
         "notes minutes proposal contract renewal support ticket release version deadline monday "
         "friday office travel conference reminder newsletter offer discount subscription").split()


def body(rng, size):
    lines, n = [], 0
    while n < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(6, 12)))
        line = line[0].upper() + line[1:] + "."
        lines.append(line)
        n += len(line) + 2
        if rng.random() < 0.15:
            lines.append("")
            n += 2
    return "\r\n".join(lines) + "\r\n"


def main():
    out = sys.argv[1]
    os.makedirs(os.path.join(out, "msgs"), exist_ok=True)
    rng = random.Random(SEED)
    with multiprocessing.Pool() as pool:   # the primes take most of the time: one key per core
        keys = [rsa_key(p, q) for p, q in pool.map(rsa_primes, range(DOMAINS))]
    domains = []
    for i in range(DOMAINS):
        d = "sender%02d.test" % i
        domains.append({
            "name": d, "net": "198.18.%d" % i, "include": i % INCLUDE_EVERY == INCLUDE_EVERY - 1,
            "rsa": keys[i],
            "ed": ed25519.Ed25519PrivateKey.from_private_bytes(
                hashlib.sha256(("%d-ed-%d" % (SEED, i)).encode()).digest()),
        })

    zone = ["; bench.zone - generated by bench/corpus.py: 50 sender domains, SPF -all, DMARC p=reject",
            "$TTL 3600", "$ORIGIN test.",
            "@ IN SOA ns.test. hostmaster.test. 2026120401 3600 600 86400 300",
            "@ IN NS ns.test.", "ns IN A 127.0.0.1",
            # the ESP's record: every domain that includes it sends from its own /24 of 198.18.0.0/16
            '%s. IN TXT "v=spf1 ip4:198.18.0.0/16 -all"' % ESP]
    for d in domains:
        n = d["name"]
        spf = "v=spf1 include:%s -all" % ESP if d["include"] else "v=spf1 ip4:%s.0/24 -all" % d["net"]
        rsa_pub = d["rsa"].public_key().public_bytes(serialization.Encoding.DER,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
        ed_pub = d["ed"].public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        zone += ['%s. IN TXT "%s"' % (n, spf),
                 '_dmarc.%s. IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@%s"' % (n, n),
                 "rsa2026._domainkey.%s. IN TXT %s" % (n, txt("v=DKIM1; k=rsa; p=" + base64.b64encode(rsa_pub).decode())),
                 "ed2026._domainkey.%s. IN TXT %s" % (n, txt("v=DKIM1; k=ed25519; p=" + base64.b64encode(ed_pub).decode()))]
    with open(os.path.join(out, "bench.zone"), "w") as f:
        f.write("\n".join(zone) + "\n")

    manifest, sizes, kinds = [], [], {}
    for j in range(MESSAGES):
        d = domains[rng.randrange(DOMAINS)]
        ed = j % ED_EVERY == ED_EVERY - 1
        user = "user%03d" % rng.randrange(1000)
        headers = [("From", "%s <%s@%s>" % (user.capitalize(), user, d["name"])),
                   ("To", "rcpt%02d@receiver.test" % rng.randrange(100)),
                   ("Subject", " ".join(rng.choice(WORDS) for _ in range(5)).capitalize()),
                   ("Date", "Mon, 01 Dec 2025 %02d:%02d:%02d +0000" % (j // 3600 % 24, j // 60 % 60, j % 60)),
                   ("Message-ID", "<%08x.%d@%s>" % (rng.getrandbits(32), j, d["name"])),
                   ("MIME-Version", "1.0"),
                   ("Content-Type", "text/plain; charset=us-ascii")]
        head_len = sum(len(n) + len(v) + 4 for n, v in headers) + 560   # about the size of the signature field
        text = body(rng, rng.randrange(SIZE * 9 // 10, SIZE * 11 // 10) - head_len)
        sel, key = ("ed2026", d["ed"]) if ed else ("rsa2026", d["rsa"])
        sig = sign(headers, text, d["name"], sel, key, ed)
        raw = "DKIM-Signature: " + sig + "\r\n" + "".join("%s: %s\r\n" % h for h in headers) + "\r\n" + text
        path = "msgs/%05d.eml" % j
        with open(os.path.join(out, path), "wb") as f:
            f.write(raw.encode())
        sizes.append(len(raw))
        ip = "%s.%d" % (d["net"], 1 + j % 250)
        manifest.append("%s\tmail.%s\tbounces@%s\t%s\n" % (ip, d["name"], d["name"], path))
        kinds.setdefault("%s/%s" % ("ed25519" if ed else "rsa", "include" if d["include"] else "ip4"), []).append(j)
    with open(os.path.join(out, "manifest.tsv"), "w") as f:
        f.writelines(manifest)
    meta = {"seed": SEED, "messages": MESSAGES, "domains": DOMAINS, "mean_bytes": sum(sizes) / len(sizes),
            "ed25519_share": 1 / ED_EVERY, "kinds": kinds,   # "algorithm/SPF style": message numbers
            # longest chain of dependent DNS questions: SPF record, then the include's record;
            # the DKIM key and the DMARC record do not depend on anything
            "chain": {"ip4": 1, "include": 2}}
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f)


if __name__ == "__main__":
    main()
