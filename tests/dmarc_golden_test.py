#!/usr/bin/env python3
"""dmarc_golden_test.py - authscore against fastmail/authentication_milter's golden cases.

Each case of tests/data/dmarc-golden/cases.tsv is one SMTP transaction and message.  We run
`$AUTHSCORE check --ip IP --helo HELO --mail-from FROM --zone zonefile --json MESSAGE` and compare
the spf, dkim and dmarc result words with theirs.  Only what is meaningful is compared:

  * a "-" in cases.tsv means their milter wrote no such result (local or trusted client: only DKIM
    ran; dry run; timeout) and is skipped, except under their hide_none configs, where "-" is a
    "none" they chose not to print and is compared as none;
  * their ip_map (4.3.2.1 and 5.4.3.0/24 evaluated as 74.125.82.171 / mail-we0-f171.google.com) is
    applied before the check, as their milter does;
  * a pipelined SMTP batch is expanded: message k is compared with the k-th Authentication-Results
    header of the expected file (cases.tsv lists the first);
  * the SMTP envelope is given as an MTA hands it over: <> and ESMTP parameters removed;
  * "DMARC Reject Hard" (their 550 for p=reject) is compared as dmarc=fail.

Every disagreement must be listed with its reason in DISAGREEMENTS.txt; the test fails when one is
not, or when fewer than 95% of the words agree.  The words of cases.tsv are checked against the
vendored expected files first.  Where both say dmarc=pass or fail, header.from and the published
policy (p=) must match too.
"""
import ipaddress
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data", "dmarc-golden")
AUTHSCORE = os.environ.get("AUTHSCORE", "build/authscore")
METHODS = ("spf", "dkim", "dmarc")


def read_cases():
    lines = [l.rstrip("\n") for l in open(os.path.join(DATA, "cases.tsv"), encoding="utf-8")
             if not l.startswith("#")]
    head = lines[0].split("\t")
    return [dict(zip(head, l.split("\t"))) for l in lines[1:] if l]


def word(cell):
    """'fail[goestheweasel.com p=reject,...] , fail[...]' -> 'fail'; '-' -> None."""
    cell = cell.strip()
    if cell == "-" or not cell:
        return None
    return re.match(r"[a-z]+", cell).group(0)


def auth_results(path):
    """The Authentication-Results headers of a file, in order (a pipelined batch holds several
    messages): one {method: [words]} per header."""
    out, cur = [], None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\r\n")
            if line[:1] in (" ", "\t"):
                if cur is not None:
                    cur += " " + line.strip()
                continue
            if cur is not None:
                out.append(cur)
                cur = None
            if line.lower().startswith("authentication-results:"):
                cur = line.split(":", 1)[1]
    if cur is not None:
        out.append(cur)
    res = []
    for h in out:
        words = {}
        for m in re.finditer(r"(?:;|^)\s*(spf|dkim|dmarc)=([a-z]+)", h):
            words.setdefault(m.group(1), []).append(m.group(2))
        res.append(words)
    return res


def config_text(cfg):
    p = os.path.join(DATA, cfg, "authentication_milter.json")
    return open(p, encoding="utf-8").read() if os.path.exists(p) else ""


def ip_map(cfg):
    text = config_text(cfg)
    return [(ipaddress.ip_network(k, strict=False), ip, helo) for k, ip, helo in re.findall(
        r'"([0-9a-fA-F.:/]+)"\s*:\s*\{\s*"ip"\s*:\s*"([^"]+)"\s*,\s*"helo"\s*:\s*"([^"]+)"', text)]


def hides_none(cfg):
    """Their SPF, DKIM and DMARC handlers all drop "none" results in this config."""
    text = config_text(cfg)
    return all(re.search(r'"%s"\s*:\s*\{[^}]*"hide_none"\s*:\s*1' % h, text) for h in ("SPF", "DKIM", "DMARC"))


def envelope_address(s):
    """MAIL FROM as Exim hands it over: without <> and ESMTP parameters; Exim reads the address
    with RFC 5322 rules, so "marc@ marcbradshaw.net" arrives as marc@marcbradshaw.net."""
    s = s.strip()
    if s.startswith("<"):
        s = s[1:s.index(">")] if ">" in s else s[1:]
    if s.count("@") == 1:
        s = re.sub(r"\s*@\s*", "@", s)
    return s


def run(ip, helo, mail_from, source):
    with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
        cmd = [AUTHSCORE, "check", "--ip", ip, "--helo", helo, "--mail-from", mail_from,
               "--zone", os.path.join(DATA, "zonefile"), "--json", os.path.join(DATA, "source", source)]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        err = p.stderr.decode(errors="replace")
        if p.returncode != 0 or "Sanitizer" in err or "runtime error:" in err:
            raise RuntimeError("%s: exit %d: %s" % (" ".join(cmd), p.returncode, err[-600:]))
        return json.loads(p.stdout.decode())


def ours(v, method, their_dkim_domain=None):
    if method == "spf":
        return v["spf"]["result"]
    if method == "dmarc":
        return v["dmarc"]["result"]
    sigs = v["dkim"]
    if not sigs:
        return "none"
    for s in sigs:
        if their_dkim_domain and (s.get("domain") or "").lower() == their_dkim_domain.lower():
            return s["result"]
    return sigs[0]["result"]


def read_listed():
    listed = {}
    path = os.path.join(DATA, "DISAGREEMENTS.txt")
    if not os.path.exists(path):
        return listed
    for line in open(path, encoding="utf-8"):
        if line.startswith("#") or not line.strip():
            continue
        f = line.rstrip("\n").split("\t")
        if len(f) >= 5:
            listed[tuple(f[:4])] = f[4]
    return listed


def expand(case):
    """One item per message: (label, ip, helo, mail_from, source, expected words or None, index)."""
    if case["mode"] == "smtp_multi":
        lists = [case[k].strip("[]").split(",") for k in ("source", "client_ip", "helo_and_ptr_name", "mail_from")]
        return [(i,) + tuple(x[i] for x in lists[1:]) + (lists[0][i],) for i in range(len(lists[0]))]
    return [(0, case["client_ip"], case["helo_and_ptr_name"], case["mail_from"], case["source"])]


def main():
    cases = read_cases()
    listed = read_listed()
    agree = total = detail_agree = detail_total = 0
    detail_diff = []
    unlisted, inconsistent, seen = [], [], set()
    for case in cases:
        exp_file = case["expected_output"]
        exp_path = os.path.join(DATA, "expected", exp_file)
        tsv = {m: word(case["ar_" + m]) for m in METHODS}
        if "DMARC policy violation" in case["ar_note"]:
            tsv["dmarc"] = "fail"                              # their 550 for p=reject
        ars = auth_results(exp_path) if os.path.exists(exp_path) else []
        hide = hides_none(case["config"])
        mapping = ip_map(case["config"])
        for idx, ip, helo, mail_from, source in expand(case):
            if idx == 0:
                want = dict(tsv)
                if ars:                                        # cases.tsv against the expected file
                    for m in METHODS:
                        got = ars[0].get(m, [None])[0]
                        if want[m] != got and not (m == "dmarc" and "DMARC policy violation" in case["ar_note"]):
                            inconsistent.append("%s %s: cases.tsv %s, expected file %s" % (exp_file, m, want[m], got))
            else:
                want = {m: (ars[idx].get(m, [None])[0] if idx < len(ars) else None) for m in METHODS}
            if hide:
                want = {m: w or "none" for m, w in want.items()}
            label = exp_file + ("#%d" % idx if case["mode"] == "smtp_multi" else "")
            if not any(want.values()):
                why = case["ar_note"] if idx == 0 else "no such message in the expected file (their batch limit)"
                print("skip %-34s %-40s nothing to compare (%s)" % (case["desc"], label, why or "no result"))
                continue
            addr = ipaddress.ip_address(ip)
            for net, mip, mhelo in mapping:
                if addr in net:
                    ip, helo = mip, mhelo
            v = run(ip, helo, envelope_address(mail_from), source)
            dkim_d = re.search(r"\[([^\]\s]+)", case["ar_dkim"]) if idx == 0 else None
            parts = []
            for m in METHODS:
                if want[m] is None:
                    continue
                o = ours(v, m, dkim_d.group(1) if dkim_d else None)
                total += 1
                if o == want[m]:
                    agree += 1
                    parts.append("%s=%s" % (m, o))
                    continue
                key = (label, m, o, want[m])
                seen.add(key)
                parts.append("%s=%s/theirs %s%s" % (m, o, want[m], "" if key in listed else " UNLISTED"))
                if key not in listed:
                    unlisted.append("\t".join(key))
            dm = re.match(r"(pass|fail)\[(\S+) p=(\w+)", case["ar_dmarc"]) if idx == 0 else None
            if dm and v["dmarc"]["result"] in ("pass", "fail"):
                detail_total += 1
                mine = (v["dmarc"]["from_domain"], v["dmarc"]["policy"])
                if mine == (dm.group(2), dm.group(3)):
                    detail_agree += 1
                else:
                    parts.append("from/p=%s/%s/theirs %s/%s" % (mine + (dm.group(2), dm.group(3))))
                    detail_diff.append("%s: from/p %s/%s, theirs %s/%s" % ((label,) + mine + (dm.group(2), dm.group(3))))
            print("%-4s %-34s %-40s %s" % ("ok" if all("/" not in p for p in parts) else "DIFF",
                                          case["desc"], label, "  ".join(parts)))
    for key in listed:
        if key not in seen:
            print("note: listed in DISAGREEMENTS.txt but now agrees: %s" % "\t".join(key))
    for line in inconsistent:
        print("cases.tsv inconsistent with the expected file: " + line)
    for line in unlisted:
        print("unlisted disagreement (add to DISAGREEMENTS.txt with a reason): " + line)
    for line in detail_diff:
        print("header.from or published policy differs: " + line)
    print("dmarc golden detail: header.from and p= agree on %d/%d pass/fail verdicts" % (detail_agree, detail_total))
    pct = 100.0 * agree / total if total else 0.0
    ok = total > 0 and pct >= 95.0 and not unlisted and not inconsistent and not detail_diff
    print("dmarc golden: %d/%d agree (%.1f%%)" % (agree, total, pct))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
