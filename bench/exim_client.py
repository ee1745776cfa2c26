#!/usr/bin/python3
"""exim_client.py - SMTP load and timings for bench/exim.sh.

    exim_client.py send PORT MANIFEST COUNT CLIENTS     COUNT messages, one connection each, CLIENTS
                                                        at a time; prints JSON {seconds, codes, ...}
    exim_client.py long PORT MANIFEST COUNT             COUNT messages on one connection; prints JSON
                                                        {median_ms, ...} of the end-of-DATA answers 2..COUNT
    exim_client.py session MANIFEST COUNT FILE          writes an SMTP session of COUNT messages (for -bh)
                                                        and prints the client address it is meant for
    exim_client.py wait MAILDIR COUNT TIMEOUT           waits for COUNT delivered messages; prints the
                                                        CLOCK_MONOTONIC time they were all there
    exim_client.py bh RUNS FILE IP -- COMMAND...        runs COMMAND -bh IP < FILE RUNS times; prints JSON
                                                        {cpu_ms, wall_ms} (medians; CPU of the children)

MANIFEST lines are "ip<TAB>helo<TAB>mail_from<TAB>path" (paths relative to the manifest's folder).
The daemon learns each client's address from a PROXY v1 header (Exim's hosts_proxy), so one
loopback client can speak for the corpus's TEST-NET senders.  A long connection or a -bh session
uses the first message's client, HELO and sender, and the messages of that same sender (repeated
as needed): SPF, DKIM and DMARC then have the same outcome as in the corpus.
"""
import json
import os
import re
import resource
import smtplib
import socket
import statistics
import subprocess
import sys
import threading
import time

RCPT = "bob@receiver.test"


def load(manifest, limit=None):
    """The first LIMIT messages of the manifest (all when None), in memory."""
    base = os.path.dirname(os.path.abspath(manifest))
    items = []
    with open(manifest, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            if limit is not None and len(items) >= limit:
                break
            ip, helo, mail_from, path = line.split("\t")[:4]
            with open(os.path.join(base, path), "rb") as m:
                data = re.sub(rb"(?<!\r)\n", b"\r\n", m.read())   # SMTP wants CRLF
            items.append((ip, helo, mail_from, data))
    if not items:
        sys.exit("exim_client: empty manifest")
    return items


def same_sender(items, count):
    ip, helo, mail_from, _ = items[0]
    group = [it[3] for it in items if it[2] == mail_from] or [items[0][3]]
    return ip, helo, mail_from, [group[i % len(group)] for i in range(count)]


class ProxySMTP(smtplib.SMTP):
    """smtplib with a PROXY v1 header sent before the server's greeting is read."""

    def __init__(self, client_ip, *args, **kwargs):
        self.client_ip = client_ip
        super().__init__(*args, **kwargs)

    def quit_now(self):
        """QUIT without waiting for 221: Exim holds its 221 in a corked socket for 200 ms
        (TCP_CORK's ceiling), which would time the kernel, not Exim.  Many MTAs do not wait either."""
        try:
            self.sock.sendall(b"QUIT\r\n")
        finally:
            self.close()

    def _get_socket(self, host, port, timeout):
        s = socket.create_connection((host, port), timeout)
        # No Nagle: a client holding back the end of DATA for an ACK the server delays (40 ms)
        # would be timed instead of Exim.
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        fam, dst = ("TCP6", "::1") if ":" in self.client_ip else ("TCP4", "127.0.0.1")
        s.sendall(f"PROXY {fam} {self.client_ip} {dst} 40000 25\r\n".encode())
        return s


def transaction(smtp, mail_from, data):
    """One message; returns the SMTP code that ended it (250 when accepted)."""
    try:
        smtp.sendmail(mail_from, [RCPT], data)
        return 250
    except smtplib.SMTPRecipientsRefused as e:
        return list(e.recipients.values())[0][0]
    except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as e:
        return e.smtp_code


def send(port, manifest, count, clients):
    items = load(manifest, count)
    codes, errors, lock, state = {}, [], threading.Lock(), {"next": 0}

    def worker():
        while True:
            with lock:
                n = state["next"]
                state["next"] += 1
            if n >= count:
                return
            ip, helo, mail_from, data = items[n % len(items)]
            try:
                smtp = ProxySMTP(ip, "127.0.0.1", port, local_hostname=helo, timeout=60)
                try:
                    code = transaction(smtp, mail_from, data)
                finally:
                    smtp.quit_now()
            except (OSError, smtplib.SMTPException) as e:
                code = "error"
                with lock:
                    errors.append(repr(e))
            with lock:
                codes[str(code)] = codes.get(str(code), 0) + 1

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # "start" is CLOCK_MONOTONIC, the clock of every process here: exim.sh ends the run when the
    # last delivery lands, and counts from the first connection, not from Python's start-up.
    print(json.dumps({"messages": count, "clients": clients, "start": t0, "seconds": time.monotonic() - t0,
                      "codes": codes, "first_error": errors[0] if errors else None}))


def long(port, manifest, count):
    ip, helo, mail_from, msgs = same_sender(load(manifest), count)
    times, codes = [], {}
    smtp = ProxySMTP(ip, "127.0.0.1", port, local_hostname=helo, timeout=60)
    try:
        smtp.ehlo(helo)
        for data in msgs:
            smtp.mail(mail_from)
            smtp.rcpt(RCPT)
            # The end of DATA is where the ACL runs: time from the last byte to the answer.
            code, _ = smtp.docmd("DATA")
            if code != 354:
                raise SystemExit(f"exim_client: DATA answered {code}")
            q = re.sub(rb"(?m)^\.", b"..", data)
            if not q.endswith(b"\r\n"):
                q += b"\r\n"
            smtp.send(q[:-2])
            t = time.monotonic()
            smtp.send(b"\r\n.\r\n")
            code, _ = smtp.getreply()
            times.append((time.monotonic() - t) * 1000)
            codes[str(code)] = codes.get(str(code), 0) + 1
            if code != 250:
                smtp.rset()
    finally:
        smtp.quit_now()
    warm = times[1:] or times
    print(json.dumps({"messages": count, "client": ip, "first_ms": times[0],
                      "median_ms": statistics.median(warm), "codes": codes}))


def session(manifest, count, out):
    ip, helo, mail_from, msgs = same_sender(load(manifest), count)
    with open(out, "wb") as f:
        f.write(f"EHLO {helo}\r\n".encode())
        for data in msgs:
            f.write(f"MAIL FROM:<{mail_from}>\r\nRCPT TO:<{RCPT}>\r\nDATA\r\n".encode())
            q = re.sub(rb"(?m)^\.", b"..", data)
            f.write(q + (b"" if q.endswith(b"\r\n") else b"\r\n") + b".\r\n")
        f.write(b"QUIT\r\n")
    print(ip)


def delivered(maildir):
    n = 0
    for root, dirs, files in os.walk(maildir):
        if os.path.basename(root) == "new":
            n += len(files)
    return n


def wait(maildir, count, timeout):
    """Polls every 10 ms until COUNT messages are in the maildir; prints CLOCK_MONOTONIC then."""
    end = time.monotonic() + timeout
    while delivered(maildir) < count:
        if time.monotonic() > end:
            sys.exit(f"exim_client: {delivered(maildir)} of {count} messages delivered after {timeout} s")
        time.sleep(0.01)
    print(time.monotonic())


def bh(runs, path, ip, command):
    cpu, wall = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.monotonic()
        with open(path, "rb") as f:
            subprocess.run(command + ["-bh", ip], stdin=f, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        wall.append((time.monotonic() - t) * 1000)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
    print(json.dumps({"runs": runs, "cpu_ms": statistics.median(cpu), "wall_ms": statistics.median(wall)}))


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) == 5 and a[0] == "send":
        send(int(a[1]), a[2], int(a[3]), int(a[4]))
    elif len(a) == 4 and a[0] == "long":
        long(int(a[1]), a[2], int(a[3]))
    elif len(a) == 4 and a[0] == "wait":
        wait(a[1], int(a[2]), float(a[3]))
    elif len(a) == 4 and a[0] == "session":
        session(a[1], int(a[2]), a[3])
    elif len(a) >= 6 and a[0] == "bh" and a[4] == "--":
        bh(int(a[1]), a[2], a[3], a[5:])
    else:
        sys.exit(__doc__)
