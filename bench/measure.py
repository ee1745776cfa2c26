#!/usr/bin/python3
# measure.py - the benchmark's measurements and its report; run by bench/run.sh, which starts the servers.
#
#   measure.py verify              every corpus message must pass SPF, DKIM and DMARC (zone backend)
#   measure.py run [ITEM...]       items 1 2 4 5 6 7 redis (default all) -> $BENCH_OUT/authscore.json
#   measure.py report              merge $BENCH_OUT/*.json into results.json, print the table
#
# Environment (set by run.sh): BUILD, BENCH_OUT, CORPUS, BENCH_DNS (NSD, host:port), SLOW_DNS
# (a server delaying every answer by SLOW_MS, logging each question to SLOW_LOG), REDIS_SOCK.
import json, os, re, shutil, statistics, subprocess, sys, time

BUILD = os.environ.get("BUILD", "build")
OUT = os.environ.get("BENCH_OUT", os.path.join(BUILD, "bench"))
CORPUS = os.environ.get("CORPUS", os.path.join(OUT, "corpus"))
AUTHSCORE = os.path.join(BUILD, "authscore")
SO = os.path.abspath(os.path.join(BUILD, "authscore.so"))
FRESH = os.path.join(OUT, "fresh")
LOOP = os.path.join(OUT, "loop")
TMP = os.path.join(OUT, "tmp")
NCPU = os.cpu_count() or 1
PIN = shutil.which("taskset") is not None


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


def die(msg):
    print("bench: FAILED: " + msg, file=sys.stderr)
    sys.exit(1)


def pinned(argv, cpu):
    return ["taskset", "-c", str(cpu)] + argv if PIN and cpu < NCPU else argv


_errors = None


def spawn(argv, out=subprocess.DEVNULL):
    """Start argv; its standard error goes to TMP/stderr, shown when something fails."""
    global _errors
    if _errors is None:
        _errors = open(os.path.join(TMP, "stderr"), "ab")
    return subprocess.Popen(argv, stdout=out, stderr=_errors)


def reap(p):
    """Wait for p; returns (exit code, CPU seconds) from the kernel's account of the child.  Not its
    ru_maxrss: Linux starts a child's peak at its parent's (see peak_rss)."""
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, ru.ru_utime + ru.ru_stime


def timed(argv, out=subprocess.DEVNULL):
    """Run argv; returns (wall s, CPU s), dying on failure."""
    t0 = time.perf_counter()
    p = spawn(argv, out)
    rc, cpu = reap(p)
    wall = time.perf_counter() - t0
    if rc != 0:
        die("%s exited %d: %s" % (" ".join(argv), rc, errors()))
    return wall, cpu


def errors():
    with open(os.path.join(TMP, "stderr"), errors="replace") as f:
        return f.read()[-600:]


def meta():
    with open(os.path.join(CORPUS, "meta.json")) as f:
        return json.load(f)


def manifest(n=None, times=1):
    """The corpus manifest, or its first n lines, repeated: written next to it (paths are relative)."""
    with open(os.path.join(CORPUS, "manifest.tsv")) as f:
        lines = f.readlines()[:n]
    path = os.path.join(CORPUS, "manifest-%sx%d.tsv" % (n or "all", times))
    with open(path, "w") as f:
        f.writelines(lines * times)
    return path, len(lines)


def batch(man, dns=None, extra=()):
    dns = dns or os.environ["BENCH_DNS"]
    return [AUTHSCORE, "batch", "--dns", dns, "--authserv-id", "bench.test"] + list(extra) + [man]


def check_verdicts(path, expect):
    """Every JSON line of a batch output must say pass three times."""
    n = bad = 0
    with open(path) as f:
        for line in f:
            j = json.loads(line)
            if "summary" in j:
                continue
            n += 1
            if not (j["spf"]["result"] == "pass" and j["dkim"] and j["dkim"][0]["result"] == "pass"
                    and j["dmarc"]["result"] == "pass"):
                bad += 1
                if bad <= 3:
                    log("not a pass: %s spf=%s dkim=%s dmarc=%s" % (j.get("path"), j["spf"]["result"],
                        [d["result"] for d in j["dkim"]], j["dmarc"]["result"]))
    if n != expect or bad:
        die("%s: %d of %d messages pass SPF, DKIM and DMARC" % (path, n - bad, expect))


# ---- 1. warm-cache throughput ----
# Rates are taken on CPU time as well as on the clock: on a shared machine a pinned process
# waits for its core, and CPU time still says what the core does.  The first pass over the
# corpus (start-up, cold cache) is subtracted: a run of k+1 passes minus a run of one.

def item1(r):
    n = meta()["messages"]
    one, _ = manifest()
    out = os.path.join(TMP, "batch.out")
    with open(out, "w") as f:   # warms the page cache and proves the NSD path gives the same verdicts
        timed(batch(one), f)
    check_verdicts(out, n)
    def best(f, argv):   # the least disturbed of two runs, on each clock
        runs = [f(argv) for _ in range(2)]
        return min(w for w, _ in runs), min(c for _, c in runs)

    def pair(man):   # two processes at once, one per core: wall clock of both, CPU of the slower
        t0 = time.perf_counter()
        res = [reap(p) for p in [spawn(pinned(batch(man), c)) for c in (0, 1)]]
        if any(rc != 0 for rc, _ in res):
            die("parallel batch failed: " + errors())
        return time.perf_counter() - t0, max(cpu for _, cpu in res)

    w1, c1 = best(timed, pinned(batch(one), 0))
    k = max(2, min(20, round(2.0 / c1)))   # about 2 s of warm work
    many, _ = manifest(times=k + 1)
    wk, ck = best(timed, pinned(batch(many), 0))
    p1, pc1 = best(pair, one)
    pk, pck = best(pair, many)

    res = loop("check", "--dns", os.environ["BENCH_DNS"], "--passes", str(k + 1), one, cpu=0)
    warm = res["passes"][1:]
    single_cpu, single_wall = k * n / (ck - c1), k * n / (wk - w1)
    r["throughput"] = {
        "passes_measured": k, "messages_per_pass": n,
        "batch_1core_msgs_per_s": single_cpu, "batch_1core_msgs_per_wall_s": single_wall,
        "batch_2proc_msgs_per_s": 2 * k * n / (pk - p1),
        "scaling_2proc_wall": (2 * k * n / (pk - p1)) / single_wall,
        "scaling_2proc_cpu": 2 * (k * n / (pck - pc1)) / single_cpu,
        "api_1core_msgs_per_s": k * n / sum(p["cpu_s"] for p in warm),
        "api_1core_msgs_per_wall_s": k * n / sum(p["wall_s"] for p in warm),
        "pinned": PIN, "cpus": NCPU,
    }


# ---- 2. crypto floor ----

def item2(r):
    def speed(*args):
        return subprocess.run(pinned(["openssl", "speed", "-seconds", "1"] + list(args), 0),
                              capture_output=True, text=True, check=True).stdout
    m = re.search(r"^rsa\s+2048 bits\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)", speed("rsa2048"), re.M)
    s = re.search(r"^sha256\s+([\d.]+)k", speed("-evp", "sha256", "-bytes", "8192"), re.M)
    e = re.search(r"\(Ed25519\)\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)", speed("ed25519"))
    if not (m and s):
        die("cannot read the output of openssl speed")
    rsa_v, sha = float(m.group(2)), float(s.group(1)) * 1000
    size = meta()["mean_bytes"]
    floor = 1 / (1 / rsa_v + size / sha)
    c = {"rsa2048_verify_per_s": rsa_v, "sha256_bytes_per_s_8k": sha, "message_bytes": size,
         "floor_msgs_per_s": floor, "floor_us_per_msg": 1e6 / floor}
    if e:   # the corpus as it is: a tenth of the signatures are ed25519
        ed_v, share = float(e.group(2)), meta()["ed25519_share"]
        c["ed25519_verify_per_s"] = ed_v
        c["floor_corpus_msgs_per_s"] = 1 / ((1 - share) / rsa_v + share / ed_v + size / sha)
    if "throughput" in r:
        c["ratio_batch_to_floor"] = r["throughput"]["batch_1core_msgs_per_s"] / floor
        c["ratio_api_to_floor"] = r["throughput"]["api_1core_msgs_per_s"] / floor
    r["crypto"] = c


# ---- 4, 5, 6: fresh processes the way Exim makes them ----

def spool(j):
    """Message j as Exim holds it: the body in SPOOL/input/ID-D (LF line ends), behind its first line."""
    mid = "1bench-%06d-00" % j
    path = os.path.join(TMP, "spool", "input", mid + "-D")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(os.path.join(CORPUS, "msgs", "%05d.eml" % j), "rb") as f:
            raw = f.read().replace(b"\r\n", b"\n")
        with open(path, "wb") as f:
            f.write(mid.encode() + b"-D\n" + raw.split(b"\n\n", 1)[1])
    return mid


def envelopes():
    with open(os.path.join(CORPUS, "manifest.tsv")) as f:
        return [line.rstrip("\n").split("\t") for line in f]


def conf(name, dns, redis=None):
    path = os.path.join(TMP, name + ".conf")
    with open(path, "w") as f:
        f.write('authserv_id = "bench.test"\ndns = { servers = { "%s" } }\n' % dns)
        if redis:
            f.write('redis = "%s"\n' % redis)
    return path


def exim_argv(config, j):
    ip, helo, sender, path = envelopes()[j]
    return [FRESH, "exim", SO, config, os.path.join(TMP, "spool"), spool(j), ip, helo, sender,
            os.path.join(CORPUS, path)]


def fresh(config, j):
    """One fresh process checking message j: (CPU s, wall s, dlopen CPU us, check CPU us, check wall us)."""
    out = os.path.join(TMP, "fresh.out")
    t0 = time.perf_counter()
    with open(out, "w") as f:
        p = spawn(exim_argv(config, j), f)
        rc, cpu = reap(p)
    wall = time.perf_counter() - t0
    with open(out) as f:
        text = f.read()
    if rc != 0:
        die("fresh process for message %d: exit %d: %s %s" % (j, rc, text.strip(), errors()))
    _, dl, ck, ckw = text.rstrip("\n").split("\t")
    return cpu, wall, int(dl), int(ck), int(ckw)


def noop():
    p = spawn([FRESH, "noop"])
    return reap(p)[1]


def peak_rss(argv):
    """Peak RSS of argv in KiB, measured by the small fresh wrapper (see fresh.c)."""
    path = os.path.join(TMP, "rss")
    timed([FRESH, "rss", path] + argv)
    with open(path) as f:
        return int(f.read())


def item4(r):
    n = 200
    cfg = conf("nsd", os.environ["BENCH_DNS"])
    fresh(cfg, 0)   # the page cache holds the libraries, as on a running mail server
    base, runs = [], []
    for i in range(n):   # interleaved, so that a busy moment of the machine hits both alike
        base.append(noop())
        runs.append(fresh(cfg, i % meta()["messages"]))
    med = statistics.median
    b = med(base)
    r["fresh"] = {
        "processes": n, "noop_cpu_ms": b * 1e3, "check_cpu_ms": med(x[0] for x in runs) * 1e3,
        "added_cpu_ms": (med(x[0] for x in runs) - b) * 1e3,
        "added_cpu_ms_p90": (sorted(x[0] for x in runs)[int(n * 0.9)] - b) * 1e3,
        "dlopen_cpu_ms": med(x[2] for x in runs) / 1e3, "first_check_cpu_ms": med(x[3] for x in runs) / 1e3,
        "process_wall_ms": med(x[1] for x in runs) * 1e3,
    }
    # 6. memory: a fresh checking process, and a long-lived one after the whole corpus
    nrss = med(peak_rss([FRESH, "noop"]) for _ in range(5))
    crss = med(peak_rss(exim_argv(cfg, j)) for j in range(5))
    brss = peak_rss(batch(manifest()[0]))
    r["memory"] = {"noop_rss_kib": nrss, "check_rss_kib": crss, "added_rss_kib": crss - nrss,
                   "batch_rss_kib": brss, "batch_added_rss_kib": brss - nrss}


def slow_queries():
    with open(os.environ["SLOW_LOG"]) as f:
        return sum(1 for _ in f)


def item5(r):
    m, delay = meta(), int(os.environ.get("SLOW_MS", "20"))
    cfg = conf("slow", os.environ["SLOW_DNS"])
    fresh(cfg, 0)
    kinds = {}
    for kind, msgs in sorted(m["kinds"].items()):
        chain = m["chain"][kind.split("/")[1]]
        walls, queries = [], []
        for j in msgs[1:8]:
            q0 = slow_queries()
            walls.append(fresh(cfg, j)[4] / 1e3)
            queries.append(slow_queries() - q0)
        w = statistics.median(walls)
        kinds[kind] = {"chain": chain, "bound_ms": chain * delay, "check_wall_ms": w, "ratio": w / (chain * delay),
                       "queries": statistics.median(queries), "samples": len(walls)}
    r["cold"] = {"delay_ms": delay, "kinds": kinds, "worst_ratio": max(k["ratio"] for k in kinds.values())}


# ---- 6. Redis: round trips per message, and the figures of the Redis issue ----

def redis_cli(*args):
    return subprocess.run(["redis-cli", "-s", os.environ["REDIS_SOCK"]] + list(args),
                          capture_output=True, text=True, check=True).stdout


def commandstats():
    stats = {}
    for m in re.finditer(r"^cmdstat_(\w+):calls=(\d+)", redis_cli("info", "commandstats"), re.M):
        stats[m.group(1)] = int(m.group(2))
    return stats


def loop(*args, cpu=None):
    argv = [LOOP] + list(args)
    p = subprocess.run(argv if cpu is None else pinned(argv, cpu), capture_output=True, text=True)
    if p.returncode != 0:
        die("loop %s: exit %d: %s" % (" ".join(args), p.returncode, p.stderr[-600:]))
    res = json.loads(p.stdout)
    if "passes" in res and any(p["not_pass"] for p in res["passes"]):
        die("loop %s: messages that do not pass" % " ".join(args))
    return res


def item_redis(r):
    url = "unix:" + os.environ["REDIS_SOCK"]
    nsd, slow = os.environ["BENCH_DNS"], os.environ["SLOW_DNS"]
    one, n = manifest()
    some, ns = manifest(200)
    redis_cli("flushall")
    x = {}
    # A long-lived process: pass 1 fills Redis, pass 2 has a warm per-process cache.
    rec = loop("check", "--dns", nsd, "--redis", url, "--record", "--passes", "2", one)
    ro = loop("check", "--dns", nsd, "--redis", url, "--passes", "2", one)
    x["longlived_rt_per_msg"] = rec["passes"][1]["round_trips"] / n
    x["longlived_read_rt_per_msg"] = ro["passes"][1]["round_trips"] / n
    x["longlived_write_rt_per_msg"] = x["longlived_rt_per_msg"] - x["longlived_read_rt_per_msg"]
    # A new engine per message (an empty per-process cache) over a warm Redis.
    rec = loop("check", "--fresh", "--dns", nsd, "--redis", url, "--record", "--passes", "1", some)
    ro = loop("check", "--fresh", "--dns", nsd, "--redis", url, "--passes", "1", some)
    x["fresh_rt_per_msg"] = rec["passes"][0]["round_trips"] / ns
    x["fresh_rt_max"] = rec["passes"][0]["round_trips_max"]
    x["fresh_read_rt_per_msg"] = ro["passes"][0]["round_trips"] / ns
    x["fresh_write_rt_per_msg"] = x["fresh_rt_per_msg"] - x["fresh_read_rt_per_msg"]
    # What Redis itself saw for one batch run of the corpus (warm Redis, new process).
    c0 = commandstats()
    timed(batch(one, extra=["--redis", url, "--record"]))
    c1 = commandstats()
    x["batch_commands_per_msg"] = {k: round((v - c0.get(k, 0)) / n, 3) for k, v in sorted(c1.items())
                                   if k not in ("info",) and v != c0.get(k, 0)}
    # One DNS answer from a warm Redis, against one from NSD; one after another, then all at once.
    names = os.path.join(TMP, "names.txt")
    with open(os.path.join(CORPUS, "bench.zone")) as f, open(names, "w") as o:
        for line in f:
            w = line.split()
            if len(w) > 3 and w[0].endswith(".") and w[2] == "TXT":
                o.write("%s TXT\n" % w[0].rstrip("."))
    hit = loop("dns", "--dns", nsd, "--redis", url, "--reps", "5", names)
    direct = loop("dns", "--dns", nsd, "--reps", "5", names)
    x["redis_hit_us_per_answer"] = hit["us_per_answer_sequential"]
    x["redis_hit_us_per_answer_prefetched"] = hit["us_per_answer_prefetched"]
    x["nsd_us_per_answer"] = direct["us_per_answer_sequential"]
    x["nsd_us_per_answer_prefetched"] = direct["us_per_answer_prefetched"]
    # Fresh processes (Exim's fork per connection), checks per second, one after another.
    def wave(config, msgs):
        t0 = time.perf_counter()
        q0 = slow_queries()
        for j in msgs:
            fresh(config, j)
        return len(msgs) / (time.perf_counter() - t0), slow_queries() - q0
    near = list(range(100))
    x["checks_per_s_nsd_no_redis"], _ = wave(conf("nsd", nsd), near)
    loop("check", "--dns", nsd, "--redis", url, "--passes", "1", manifest(100)[0])   # Redis warm for these
    x["checks_per_s_nsd_warm_redis"], _ = wave(conf("nsd-redis", nsd, url), near)
    far = list(range(200, 240))
    x["slow_delay_ms"] = int(os.environ.get("SLOW_MS", "20"))
    x["checks_per_s_slow_no_redis"], x["queries_no_redis"] = wave(conf("slow", slow), far)
    redis_cli("flushall")
    x["checks_per_s_slow_cold_redis"], x["queries_cold_redis"] = wave(conf("slow-redis", slow, url), far)
    x["checks_per_s_slow_warm_redis"], x["queries_warm_redis"] = wave(conf("slow-redis", slow, url), far)
    x["processes"] = len(far)
    r["redis"] = x


# ---- 7. instructions per message under callgrind ----

# Inclusive cost of the engine's entry points: each message's work, split where as_check splits it.
STAGES = [("message", ["message_parse"]), ("SPF", ["spf_check"]), ("DKIM", ["dkim_check"]),
          ("DMARC", ["dmarc_check"]), ("A-R header", ["authres_format"]),
          ("Lua rules", ["rules_eval", "rules_reload_if_changed"]),
          ("Redis", ["reputation_read", "reputation_record", "report_record", "pipeline_exec"])]
# Exclusive cost by where the code lives: our source files, then the libraries they call.
FILES = [("Redis", r"\b(redis|dns_redis|reputation|report|pipeline)\.c$|/libhiredis"),
         ("DNS", r"\bdns[^/]*\.c$|/libcares|/libldns"), ("SPF", r"\bspf[^/]*\.c$|/libspf2"),
         ("DKIM", r"\bdkim[^/]*\.c$|/libopendkim|/libcrypto"),
         ("DMARC", r"\bdmarc\.c$|/libpsl|/libopendmarc|/libidn2|/libunistring"),
         ("Lua", r"\b(rules|lpattern)\.c$|/liblua"),
         ("engine", r"\b(engine|message|authres|netaddr|config)\.c$"), ("command", r"\bcli\.c$|/libjansson"),
         ("libc", r"/libc\.so|/ld-linux|/libm\.so|^\./")]   # ./malloc/arena.c: glibc's own sources


def annotate(path, inclusive):
    txt = subprocess.run(["callgrind_annotate", "--inclusive=" + ("yes" if inclusive else "no"), "--threshold=100",
                          "--auto=no", path],
                         capture_output=True, text=True, check=True).stdout
    total, rows = 0, []
    for line in txt.splitlines():
        m = re.match(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$", line)
        if not m:
            continue
        ir, rest = int(m.group(1).replace(",", "")), m.group(2)
        if rest.startswith("=>") or rest.startswith("*"):   # call lines of an annotation, not functions
            continue
        if rest.startswith("PROGRAM TOTALS"):
            total = ir
            continue
        f = re.match(r"^(.*?):(.+?)(?: \[(.*)\])?$", rest)
        if f:
            rows.append((ir, f.group(1), f.group(2), f.group(3) or ""))
    return total, rows


def by_func(rows, names):
    """Inclusive cost of the named functions (a function listed twice, under two spellings of its file, counts once)."""
    return sum(max([ir for ir, _, fn, _ in rows if fn == name] or [0]) for name in names)


def by_file(rows):
    """Exclusive cost by module: our code by its source file, a library by its object."""
    acc = {}
    for ir, f, _, obj in rows:
        g = next((k for k, pat in FILES if re.search(pat, f) or re.search(pat, obj)), "other")
        acc[g] = acc.get(g, 0) + ir
    return acc


def callgrind(name, argv):
    out = os.path.join(OUT, "callgrind.%s.out" % name)
    timed(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out] + argv)
    return annotate(out, True), annotate(out, False)


def item7(r):
    if not shutil.which("valgrind"):
        r["callgrind"] = {"skipped": "valgrind not installed"}
        return
    n, res = 50, {}
    for times in (1, 2):   # the second pass of the same 50 messages is the warm per-message cost
        res[times] = callgrind("%dx%d" % (n, times), batch(manifest(n, times)[0],
                               extra=["--timeout-ms", "30000", "--budget-ms", "60000"]))
    (t1, inc1), (_, exc1) = res[1]
    (t2, inc2), (_, exc2) = res[2]
    per = (t2 - t1) / n
    stages = {k: (by_func(inc2, fs) - by_func(inc1, fs)) / n for k, fs in STAGES}
    check = (by_func(inc2, ["as_check"]) - by_func(inc1, ["as_check"])) / n
    stages["engine other"] = check - sum(stages.values())
    stages["command (read, JSON)"] = per - check
    dns = (by_func(inc2, ["dns_query", "dns_prefetch"]) - by_func(inc1, ["dns_query", "dns_prefetch"])) / n
    f1, f2 = by_file(exc1), by_file(exc2)
    files = {k: (f2.get(k, 0) - f1.get(k, 0)) / n for k in [k for k, _ in FILES] + ["other"]}
    r["callgrind"] = {"messages": n, "ir_per_msg": per, "ir_startup_and_first_pass": t1, "stages_inclusive": stages,
                      "dns_inclusive": dns, "modules_exclusive": files}

    # The fresh process of item 4, against the do-nothing one: where its instructions go.
    (tn, _), _ = callgrind("noop", [FRESH, "noop"])
    (tf, inc), (_, exc) = callgrind("fresh", exim_argv(conf("nsd", os.environ["BENCH_DNS"]), 0))
    dl = max([ir for ir, _, fn, _ in inc if fn.startswith("dlopen@")] or [0])
    first = {"dlopen (relocation, library constructors)": dl,
             "engine set-up (as_engine_new)": by_func(inc, ["as_engine_new"])}
    first.update({"check: " + k: by_func(inc, fs) for k, fs in STAGES})
    first["check: other"] = by_func(inc, ["as_check"]) - sum(by_func(inc, fs) for _, fs in STAGES)
    first["rest (glue, exit)"] = tf - tn - sum(first.values())
    r["callgrind"]["fresh"] = {"ir_added": tf - tn, "ir_noop": tn, "parts_inclusive": first,
                               "modules_exclusive": by_file(exc)}


ITEMS = {"1": item1, "2": item2, "4": item4, "5": item5, "redis": item_redis, "7": item7}


def run(items):
    os.makedirs(TMP, exist_ok=True)
    path = os.path.join(OUT, "authscore.json")
    r = {}
    if os.path.exists(path):
        with open(path) as f:
            r = json.load(f)
    m = meta()
    r["corpus"] = {k: m[k] for k in ("seed", "messages", "domains", "mean_bytes", "ed25519_share")}
    for it in items or ["1", "2", "4", "5", "redis", "7"]:
        log("item %s" % it)
        t0 = time.time()
        ITEMS[it](r)
        log("item %s done in %.1f s" % (it, time.time() - t0))
        with open(path, "w") as f:
            json.dump(r, f, indent=1)


def verify():
    out = os.path.join(OUT, "verify.out")
    with open(out, "w") as f:
        timed([AUTHSCORE, "batch", "--zone", os.path.join(CORPUS, "bench.zone"), "--authserv-id", "bench.test",
               os.path.join(CORPUS, "manifest.tsv")], f)
    check_verdicts(out, meta()["messages"])


# ---- the report ----

def fmt(v, unit="", nd=0):
    if v is None:
        return "-"
    return ("{:,.%df}" % nd).format(v) + unit


def met(ok):
    return "met" if ok else "NOT MET"


def rows_of(a):
    """The table: (item, what, value, target, status)."""
    rows = []
    t, c = a.get("throughput"), a.get("crypto")
    if t:
        floor = c["floor_msgs_per_s"] if c else None
        rows.append(("1", "warm cache, `authscore batch`, 1 core (per CPU second)", fmt(t["batch_1core_msgs_per_s"], " msg/s"),
                     ">= 50%% of floor: %s" % fmt(floor / 2 if floor else None), met(floor and t["batch_1core_msgs_per_s"] >= floor / 2)))
        rows.append(("1", "warm cache, `authscore batch`, 2 processes, total (wall clock)", fmt(t["batch_2proc_msgs_per_s"], " msg/s"),
                     "~2x one: %.2fx wall, %.2fx CPU" % (t["scaling_2proc_wall"], t["scaling_2proc_cpu"]),
                     met(t["scaling_2proc_cpu"] >= 1.8)))
        rows.append(("1", "warm cache, engine C API, messages in memory, 1 core", fmt(t["api_1core_msgs_per_s"], " msg/s"),
                     "(as_check alone)", ""))
    if c:
        rows.append(("2", "RSA-2048 verify / SHA-256 at 8 KiB (openssl speed, 1 core)",
                     "%s/s, %s MB/s" % (fmt(c["rsa2048_verify_per_s"]), fmt(c["sha256_bytes_per_s_8k"] / 1e6)), "", ""))
        rows.append(("2", "crypto floor, %s-byte message, one RSA-2048 signature" % fmt(c["message_bytes"]),
                     fmt(c["floor_msgs_per_s"], " msg/s"), "%s us/msg" % fmt(c["floor_us_per_msg"], nd=1), ""))
        if "floor_corpus_msgs_per_s" in c:
            rows.append(("2", "  the same for the corpus's mix (ed25519 verify %s/s)" % fmt(c["ed25519_verify_per_s"]),
                         fmt(c["floor_corpus_msgs_per_s"], " msg/s"), "", ""))
        if "ratio_batch_to_floor" in c:
            rows.append(("2", "ratio 1 (batch, 1 core) / floor", fmt(100 * c["ratio_batch_to_floor"], "%", 1), ">= 50%",
                         met(c["ratio_batch_to_floor"] >= 0.5)))
    f = a.get("fresh")
    if f:
        rows.append(("4", "fresh process: dlopen + engine + Lua + first check, CPU added (median of %d)" % f["processes"],
                     fmt(f["added_cpu_ms"], " ms", 2), "< 2 ms", met(f["added_cpu_ms"] < 2)))
        rows.append(("4", "  of which dlopen(authscore.so) / first authscore_check", "%s / %s" % (
            fmt(f["dlopen_cpu_ms"], " ms", 2), fmt(f["first_check_cpu_ms"], " ms", 2)),
            "noop process %s" % fmt(f["noop_cpu_ms"], " ms", 2), ""))
    cold = a.get("cold")
    if cold:
        for kind, k in sorted(cold["kinds"].items()):
            rows.append(("5", "cold check, DNS %d ms away, %s (%d queries)" % (cold["delay_ms"], kind, k["queries"]),
                         fmt(k["check_wall_ms"], " ms", 1), "<= 1.2 x %d ms" % k["bound_ms"],
                         "%.2fx %s" % (k["ratio"], met(k["ratio"] <= 1.2))))
    mem = a.get("memory")
    if mem:
        rows.append(("6", "peak RSS, fresh checking process vs do-nothing process", "+%s KiB" % fmt(mem["added_rss_kib"]),
                     "< 8 MiB added", met(mem["added_rss_kib"] < 8192)))
        if "batch_added_rss_kib" in mem:
            rows.append(("6", "peak RSS, batch process after the corpus several times", "+%s KiB" % fmt(mem["batch_added_rss_kib"]),
                         "< 8 MiB added", met(mem["batch_added_rss_kib"] < 8192)))
    x = a.get("redis")
    if x:
        rows.append(("6", "Redis round trips/msg, long-lived process (read + write)", "%.2f + %.2f" % (
            x["longlived_read_rt_per_msg"], x["longlived_write_rt_per_msg"]), "<= 1 + 1",
            met(x["longlived_read_rt_per_msg"] <= 1 and x["longlived_write_rt_per_msg"] <= 1)))
        rows.append(("6", "Redis round trips/msg, new engine per message, warm Redis", "%.2f + %.2f (max %d)" % (
            x["fresh_read_rt_per_msg"], x["fresh_write_rt_per_msg"], x["fresh_rt_max"]), "<= 1 + 1",
            met(x["fresh_read_rt_per_msg"] <= 1 and x["fresh_write_rt_per_msg"] <= 1)))
        rows.append(("6", "  Redis commands per message (batch --record, warm Redis): " + ", ".join(
            "%s %g" % (k.upper(), v) for k, v in x["batch_commands_per_msg"].items()), "", "", ""))
        rows.append(("R", "DNS answer from warm Redis / from NSD, one at a time", "%s / %s us" % (
            fmt(x["redis_hit_us_per_answer"], nd=1), fmt(x["nsd_us_per_answer"], nd=1)), "", ""))
        rows.append(("R", "  the same, all questions at once (pipelined)", "%s / %s us" % (
            fmt(x["redis_hit_us_per_answer_prefetched"], nd=1), fmt(x["nsd_us_per_answer_prefetched"], nd=1)), "", ""))
        rows.append(("R", "fresh processes/s, DNS on loopback: no Redis / warm Redis", "%s / %s" % (
            fmt(x["checks_per_s_nsd_no_redis"]), fmt(x["checks_per_s_nsd_warm_redis"])), "", ""))
        rows.append(("R", "fresh processes/s, DNS %d ms away: no Redis / cold / warm Redis" % x["slow_delay_ms"], "%s / %s / %s" % (
            fmt(x["checks_per_s_slow_no_redis"]), fmt(x["checks_per_s_slow_cold_redis"]), fmt(x["checks_per_s_slow_warm_redis"])), "", ""))
        rows.append(("R", "DNS queries of %d fresh processes: no Redis / cold / warm Redis" % x["processes"], "%d / %d / %d" % (
            x["queries_no_redis"], x["queries_cold_redis"], x["queries_warm_redis"]), "", ""))
    g = a.get("callgrind")
    if g and "ir_per_msg" in g:
        rows.append(("7", "instructions per warm message (callgrind)", fmt(g["ir_per_msg"], " Ir"), "", ""))
        s = g["stages_inclusive"]
        rows.append(("7", "  by stage (inclusive): " + ", ".join("%s %s" % (k, fmt(v / 1e3, "k")) for k, v in s.items() if abs(v) >= 500)
                     + "; DNS inside them %s" % fmt(g["dns_inclusive"] / 1e3, "k"), "", "", ""))
        e = g["modules_exclusive"]
        rows.append(("7", "  by module (exclusive, libraries included): " + ", ".join(
            "%s %s" % (k, fmt(v / 1e3, "k")) for k, v in sorted(e.items(), key=lambda kv: -kv[1]) if abs(v) >= 500), "", "", ""))
        f = g.get("fresh")
        if f:
            rows.append(("7", "instructions added by a fresh process (item 4's)", fmt(f["ir_added"], " Ir"), "", ""))
            rows.append(("7", "  " + ", ".join("%s %s" % (k, fmt(v / 1e3, "k")) for k, v in f["parts_inclusive"].items()
                                               if abs(v) >= 5000), "", "", ""))
    return rows


def foreign_rows(name, f, a):
    """Rows for bench/rspamd.sh's and bench/exim.sh's figures; any other fragment, value by value."""
    t = a.get("throughput", {})
    if name == "rspamd" and isinstance(f, dict) and "rspamd_msgs_per_s" in f:
        rows = [("3", "rspamd %s, spf+dkim+dmarc only, %s worker(s), warm cache" % (f.get("rspamd_version"), f.get("workers")),
                 fmt(f["rspamd_msgs_per_s"], " msg/s"), "%s per CPU second" % fmt(f.get("rspamd_msgs_per_cpu_s")), ""),
                ("3", "  its verdicts (SPF, DKIM, DMARC symbols) agree with authscore's", str(f.get("agree")), "", "")]
        theirs = f.get("rspamd_msgs_per_cpu_s") or f["rspamd_msgs_per_s"]
        if t and theirs:   # both per CPU second: one core's work on each side
            ratio = t["batch_1core_msgs_per_s"] / theirs
            rows.append(("3", "ratio authscore (1, 1 core) / rspamd, per CPU second", "%.1fx" % ratio, ">= 10x", met(ratio >= 10)))
        return rows
    if name == "exim" and isinstance(f, dict) and "exim_daemon_msgs_per_s_with" in f:
        d = f.get("daemon", {})
        return [("E", "Exim %s daemon, %s messages, %s clients: with / without the plugin" % (
                    f.get("exim_version"), d.get("messages"), d.get("clients")),
                 "%s / %s msg/s" % (fmt(f["exim_daemon_msgs_per_s_with"]), fmt(f["exim_daemon_msgs_per_s_without"])), "", ""),
                ("E", "Exim: added at the end of DATA, warm cache, one long connection",
                 fmt(f.get("data_acl_added_ms_warm"), " ms", 3), "", ""),
                ("E", "Exim -bh, a fresh process's first message: CPU added by the plugin",
                 fmt(f.get("first_message_added_cpu_ms"), " ms", 2), "< 2 ms", met((f.get("first_message_added_cpu_ms") or 99) < 2))]
    vals = []
    flatten("", f, vals)
    return [("x", "%s: %s" % (name, k), fmt(v, nd=2) if isinstance(v, float) else str(v), "", "") for k, v in vals]


def flatten(prefix, v, out):
    if isinstance(v, dict):
        for k, w in v.items():
            flatten(prefix + "." + k if prefix else k, w, out)
    elif not isinstance(v, list):
        out.append((prefix, v))


def report():
    frags = {}
    for name in sorted(os.listdir(OUT)):
        if name.endswith(".json") and name != "results.json":
            try:
                with open(os.path.join(OUT, name)) as f:
                    frags[name[:-5]] = json.load(f)
            except (OSError, ValueError) as e:
                log("%s: not JSON (%s): left out" % (name, e))
    a = frags.get("authscore", {})
    rows = rows_of(a)
    for name, frag in frags.items():   # the other scripts' figures
        if name != "authscore":
            rows += foreign_rows(name, frag, a)
    order = ["1", "2", "3", "4", "E", "5", "6", "R", "7"]
    rows.sort(key=lambda r: order.index(r[0]) if r[0] in order else len(order))   # stable: rows keep their order
    machine = open(os.path.join(OUT, "machine.txt")).read() if os.path.exists(os.path.join(OUT, "machine.txt")) else ""
    results = {"machine": machine, "table": [list(r) for r in rows]}
    results.update(frags)
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(results, f, indent=1)

    c = a.get("corpus", {})
    print()
    print("authscore benchmark: %s messages of %s bytes on average, %s domains, %d%% ed25519" % (
        c.get("messages"), fmt(c.get("mean_bytes")), c.get("domains"), 100 * c.get("ed25519_share", 0)))
    for line in machine.splitlines()[:3]:
        print("  " + line)
    w = max([len(r[1]) for r in rows if r[2] or r[3]] or [40])
    v = max([len(r[2]) for r in rows] or [10])
    n = max([len(r[3]) for r in rows] or [10])
    print()
    print("%-2s  %-*s  %-*s  %-*s  %s" % ("#", w, "measure", v, "value", n, "target / note", ""))
    for r in rows:
        if not r[2] and not r[3]:   # a wide line of detail
            print("%-2s  %s" % (r[0], r[1]))
        else:
            print("%-2s  %-*s  %-*s  %-*s  %s" % (r[0], w, r[1], v, r[2], n, r[3], r[4]))
    print()
    print("items as numbered in the benchmark issue; E: bench/exim.sh; R: the Redis issue's figures.  JSON: %s"
          % os.path.join(OUT, "results.json"))


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else "run"
    if cmd == "verify":
        os.makedirs(TMP, exist_ok=True)
        verify()
    elif cmd == "run":
        run(sys.argv[2:])
    elif cmd == "report":
        report()
    else:
        die("usage: measure.py verify | run [ITEM...] | report")


if __name__ == "__main__":
    main()
