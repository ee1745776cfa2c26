#!/usr/bin/python3
"""rspamd_client.py - feed a corpus to rspamd's /checkv2 over loopback HTTP, many requests at once.

    rspamd_client.py PORT MANIFEST CONCURRENCY COUNT RESULTS

MANIFEST lines are "ip<TAB>helo<TAB>mail_from<TAB>path" (a path relative to the manifest's folder).  COUNT requests are sent (the manifest
is cycled through, in order), CONCURRENCY at a time, each on its own connection (rspamd 3.4's
normal worker answers "Connection: close", so a connection carries one request; one is reused
when the server keeps it open).  Prints one JSON line: {"requests", "errors", "seconds"}.
RESULTS gets the symbol names rspamd gave each manifest line (the first answer for that line),
one JSON list per line, for the agreement check.

asyncio on one thread: the client is pinned to its own core by rspamd.sh, and one Python
thread sends several thousand requests a second, well above what one rspamd worker takes.
"""
import asyncio
import json
import os
import sys
import time


def load(manifest):
    items = []
    base = os.path.dirname(os.path.abspath(manifest))
    with open(manifest, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            ip, helo, mail_from, path = line.split("\t")[:4]
            with open(os.path.join(base, path), "rb") as m:
                body = m.read()
            head = ["POST /checkv2 HTTP/1.1", "Host: 127.0.0.1", f"IP: {ip}", f"Helo: {helo}"]
            if mail_from:   # the null sender: rspamd checks SPF for the HELO name
                head.append(f"From: {mail_from}")
            head += [f"Content-Length: {len(body)}", "Connection: keep-alive", "", ""]
            items.append("\r\n".join(head).encode() + body)
    return items


async def read_reply(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length, close = None, False
    for h in lines[1:]:
        k, _, v = h.partition(":")
        k = k.strip().lower()
        if k == "content-length":
            length = int(v)
        elif k == "connection" and v.strip().lower() == "close":
            close = True
    body = await reader.readexactly(length) if length is not None else await reader.read()
    return status, body, close or length is None


async def main():
    port, manifest, conc, count, results = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), \
        int(sys.argv[4]), sys.argv[5]
    items = load(manifest)
    if not items:
        sys.exit("rspamd_client: empty manifest")
    symbols = [None] * len(items)
    state = {"next": 0, "errors": 0, "first_error": None}

    async def worker():
        reader = writer = None
        while state["next"] < count:
            n = state["next"]
            state["next"] += 1
            k = n % len(items)
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(items[k])
                status, body, close = await read_reply(reader)
                if status != 200:
                    raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
                if symbols[k] is None:
                    symbols[k] = sorted(json.loads(body).get("symbols", {}))
            except Exception as e:   # counted and reported; the run goes on
                state["errors"] += 1
                state["first_error"] = state["first_error"] or repr(e)
                close = True
            if close and writer is not None:
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(conc)))
    seconds = time.monotonic() - t0
    with open(results, "w", encoding="utf-8") as f:
        for s in symbols:
            f.write(json.dumps(s) + "\n")
    print(json.dumps({"requests": count, "errors": state["errors"], "seconds": seconds,
                      "first_error": state["first_error"]}))


asyncio.run(main())
