#!/usr/bin/env python3
"""Scale benchmark for healthlake-exporter (issue #5), everything on 127.0.0.1.

One run: builds the release exporter and the fake (crates/healthlake-fake, binary healthlake-fake); starts the fake
with D datastores x J jobs of history; runs the exporter against it and measures, over a steady
window, API calls per datastore per cycle, CPU seconds per minute, RSS, /metrics payload size,
time to first complete poll and scrape latency/throughput with wrk (with and without gzip); then the
same for ../shared/bench/baseline_exporter.py (boto3 + prometheus_client) and for nginx serving a
captured copy of the exporter's /metrics bytes (the ceiling for scrape throughput). Optionally a
jobs-per-datastore sweep (API calls per cycle at, e.g., 100 and 20,000 jobs). Prints a summary
table (and writes Markdown/JSON on request). Every process it starts is stopped on exit.

    bench/scale.py                                   # 50 x 2000, interval 15s, 3 cycles
    bench/scale.py --sweep 100,20000                 # + API calls per cycle at 100 and 20,000 jobs
    bench/scale.py --datastores 1000 --jobs 1000 --concurrency 32 --no-baseline --no-nginx
    bench/scale.py --max-requests-per-second 5 --no-baseline   # the exporter's default request budget
    bench/scale.py --history stuck --cycles 16 --no-baseline --no-nginx --no-wrk   # issue 10 shapes
    bench/scale.py --help

polling.max_requests_per_second is 1000 by default here (effectively no pacing): the fake has no
quota, and the benchmark measures the exporter, not AWS's quota. At the exporter's default (5/s)
the first full poll of 50 x 2,000 takes ~40 s (200 pages at 5/s) by design.

Needs: cargo, python3 >= 3.11, wrk and nginx (Debian: apt-get install wrk nginx-light), and a venv
with boto3 + prometheus-client for the baseline (created in --venv when missing). Standard library
only otherwise.
"""
from __future__ import annotations

import argparse
import atexit
import gzip
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROCS: list[subprocess.Popen] = []
DUMMY_AWS = {
    "AWS_ACCESS_KEY_ID": "AKIDBENCHEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "bench-secret-not-a-real-key",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def log(msg: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes


def start(cmd, logfile: Path, env=None, cwd=None) -> subprocess.Popen:
    out = open(logfile, "ab")
    full_env = dict(os.environ)
    full_env.update(env or {})
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=cwd,
                         stdin=subprocess.DEVNULL)
    PROCS.append(p)
    return p


def stop(p: subprocess.Popen | None, grace: float = 6.0) -> None:
    if p is None or p.poll() is not None:
        return
    try:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=5)
    except ProcessLookupError:
        pass


def cleanup() -> None:
    for p in reversed(PROCS):
        stop(p, grace=4.0)


def on_signal(signum, _frame):
    log(f"signal {signum}: stopping everything started")
    sys.exit(128 + signum)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), in seconds."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2:].split()
    # After the command: state is field 3, utime is field 14 and stime field 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def mem_kib(pid: int) -> dict:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def http_get(url: str, headers=None, timeout=60.0) -> tuple[bytes, dict]:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read(), {k.lower(): v for k, v in r.headers.items()}


def wait_for(pred, timeout: float, step: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = pred()
            if value:
                return value
        except (OSError, ValueError):
            pass
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


# ---------------------------------------------------------------- the fake


class Fake:
    def __init__(self, args, workdir: Path, datastores: int, jobs: int, exporter_port: int, tag: str):
        self.config = workdir / f"config-{tag}.toml"
        self.datastores = datastores
        cmd = [str(args.fake_bin), "--listen", "127.0.0.1:0", "--stats-listen", "127.0.0.1:0",
               "--datastores", str(datastores), "--jobs", str(jobs), "--seed", str(args.seed),
               "--config-out", str(self.config), "--exporter-listen", f"127.0.0.1:{exporter_port}",
               "--interval", f"{args.interval}s", "--timeout", f"{args.timeout}s",
               "--concurrency", str(args.concurrency), "--job-series-limit", str(args.job_series_limit),
               "--max-requests-per-second", f"{args.max_requests_per_second:g}"]
        if args.churn:
            cmd.append("--churn")
        cmd += ["--history", args.history]
        self.logfile = workdir / f"fake-{tag}.log"
        t0 = time.monotonic()
        self.proc = start(cmd, self.logfile)
        line = wait_for(self._ready_line, timeout=600, step=0.2, what="the fake's READY line")
        self.endpoint = re.search(r"endpoint=(\S+)", line).group(1)
        self.stats_url = re.search(r"stats=(\S+)", line).group(1)
        log(f"fake {datastores}x{jobs} ready in {time.monotonic() - t0:.1f}s at {self.endpoint}")

    def _ready_line(self):
        if self.proc.poll() is not None:
            raise SystemExit(f"the fake exited early; see {self.logfile}")
        for line in self.logfile.read_text(errors="replace").splitlines():
            if line.startswith("READY "):
                return line
        return None

    def calls(self) -> int:
        body, _ = http_get(self.stats_url + "calls", timeout=30)
        return int(body)

    def stats(self) -> dict:
        body, _ = http_get(self.stats_url, timeout=30)
        return json.loads(body)

    def stop(self):
        stop(self.proc)


# ---------------------------------------------------------------- measuring one exporter


def parse_wrk(text: str) -> dict:
    def seconds(v: str) -> float:
        m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", v)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}[m.group(2)]

    out = {"raw": text}
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", text, re.M)
        out[f"p{pct}_ms"] = seconds(m.group(1)) * 1000 if m else None
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    out["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"(\d+) requests in ([\d.]+\w+), ([\d.]+\w+) read", text)
    out["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Transfer/sec:\s+(\S+)", text)
    out["transfer_per_sec"] = m.group(1) if m else None
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    out["errors"] = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non2xx"] = int(m.group(1)) if m else 0
    return out


def run_wrk(args, url: str, gzip_on: bool, workdir: Path, tag: str) -> dict | None:
    if not args.wrk_bin:
        return None
    cmd = [args.wrk_bin, f"-t{args.wrk_threads}", f"-c{args.wrk_connections}",
           f"-d{args.wrk_duration}s", "--latency", "--timeout", f"{args.wrk_timeout}s"]
    if gzip_on:
        cmd += ["-H", "Accept-Encoding: gzip"]
    cmd.append(url)
    res = subprocess.run(cmd, capture_output=True, text=True,
                         timeout=args.wrk_duration + args.wrk_timeout + 60)
    (workdir / f"wrk-{tag}-{'gzip' if gzip_on else 'plain'}.txt").write_text(res.stdout + res.stderr)
    r = parse_wrk(res.stdout)
    log(f"wrk {tag} {'gzip' if gzip_on else 'plain'}: {r['rps']:.1f} req/s, p50 {fmt_ms(r['p50_ms'])},"
        f" p99 {fmt_ms(r['p99_ms'])}, errors {r['errors']}")
    return r


def payload(url: str) -> dict:
    t = time.monotonic()
    plain, h1 = http_get(url, timeout=300)
    get_seconds = time.monotonic() - t
    gz, h2 = http_get(url, headers={"Accept-Encoding": "gzip"}, timeout=300)
    return {
        "plain_bytes": len(plain),
        "gzip_request_bytes": len(gz),
        "gzip_served": h2.get("content-encoding", "") == "gzip",
        "gzip_possible_bytes": len(gzip.compress(plain, compresslevel=6)),
        "lines": plain.count(b"\n"),
        "get_seconds": get_seconds,
        "body": plain,
    }


# The export listing's series of the feed health families.
SUCCESS = "healthlake_feed_last_success_timestamp_seconds"
EXPORT = 'feed="export"'


def metric_values(text: str, name: str, having: str = "") -> list[float]:
    """The values of `name`'s samples whose line contains `having`."""
    vals = []
    for line in text.splitlines():
        if (line.startswith(name + "{") or line.startswith(name + " ")) and having in line:
            try:
                vals.append(float(line.rsplit(" ", 1)[1]))
            except ValueError:
                pass
    return vals


def wait_quiet(fake: "Fake", pid: int, quiet: float, max_wait: float, need_change: bool, mem: dict) -> bool:
    """Waits until the fake's call counter has changed (if need_change) and then stayed still for
    `quiet` seconds: the end of a poll round. Samples RSS meanwhile. False on timeout."""
    start = time.monotonic()
    deadline = start + max_wait
    last, changed_at = fake.calls(), None
    while time.monotonic() < deadline:
        time.sleep(0.2)
        mem["rss_max"] = max(mem.get("rss_max", 0), mem_kib(pid)["VmRSS"])
        c, now = fake.calls(), time.monotonic()
        if c != last:
            last, changed_at = c, now
        elif (changed_at is not None or not need_change) and now - (changed_at or start) >= quiet:
            return True
    return False


def steady_window(args, pid: int, fake: "Fake", seconds: float) -> dict:
    """Measures over `args.cycles` poll rounds, from the end of one round to the end of another, so
    the window holds whole rounds whatever their phase (polls of all datastores tend to run in
    lockstep). Falls back to a plain time window when rounds do not stand apart (no quiet gap)."""
    mem: dict = {}
    limit = args.interval * 1.6
    aligned = wait_quiet(fake, pid, args.quiet, limit, True, mem)
    s0, c0, t0 = fake.stats(), cpu_seconds(pid), time.monotonic()
    rounds = 0
    if aligned:
        for _ in range(args.cycles):
            if not wait_quiet(fake, pid, args.quiet, limit, True, mem):
                aligned = False
                break
            rounds += 1
    while time.monotonic() - t0 < seconds and not aligned:
        time.sleep(0.5)
        mem["rss_max"] = max(mem.get("rss_max", 0), mem_kib(pid)["VmRSS"])
    s1, c1, t1 = fake.stats(), cpu_seconds(pid), time.monotonic()
    elapsed = t1 - t0
    if aligned and not 0.8 <= elapsed / max(rounds, 1) / args.interval <= 1.4:
        # Quiet gaps inside a round (polls spread out) split it: rounds are not cycles here.
        aligned = False
    calls = s1["list_calls"] - s0["list_calls"]
    first = s1["first_page_calls"] - s0["first_page_calls"]
    uncls = s1["unclassified_calls"] - s0["unclassified_calls"]
    intervals = elapsed / args.interval
    m = mem_kib(pid)
    per_interval = calls / fake.datastores / intervals
    return {
        "window_seconds": elapsed,
        "window_aligned_to_rounds": aligned,
        "rounds": rounds if aligned else None,
        "calls": calls,
        "calls_per_ds_per_cycle": calls / fake.datastores / rounds if aligned and rounds else per_interval,
        "calls_per_ds_per_interval": per_interval,
        "first_page_calls": first,
        "calls_per_poll": (calls / first) if first and not uncls else None,
        "calls_with_submitted_after": s1["calls_with_submitted_after"] - s0["calls_with_submitted_after"],
        "churn_events": s1["churn_events"] - s0["churn_events"],
        "cpu_seconds": c1 - c0,
        "cpu_seconds_per_minute": (c1 - c0) / elapsed * 60,
        "rss_kib_end": m["VmRSS"],
        "rss_kib_max_window": max(mem.get("rss_max", 0), m["VmRSS"]),
        "hwm_kib": m["VmHWM"],
    }


def sequential_gets(url: str, seconds: float, min_n: int = 2) -> dict:
    """Back-to-back GETs on one connection at a time: for servers too slow for wrk's window."""
    times, t_end = [], time.monotonic() + seconds
    while time.monotonic() < t_end or len(times) < min_n:
        t = time.monotonic()
        http_get(url, timeout=300)
        times.append(time.monotonic() - t)
    return {"n": len(times), "rps": len(times) / sum(times), "mean_ms": statistics.mean(times) * 1000,
            "max_ms": max(times) * 1000}


def measure_rust(args, fake: Fake, workdir: Path, port: int, tag: str, scrape: bool = True) -> dict:
    url = f"http://127.0.0.1:{port}/metrics"
    logfile = workdir / f"exporter-{tag}.log"
    t0 = time.monotonic()
    proc = start([str(args.exporter_bin), "--config", str(fake.config)], logfile, env=DUMMY_AWS)
    res: dict = {"name": "healthlake-exporter", "pid": proc.pid}

    def all_polled():
        if proc.poll() is not None:
            raise SystemExit(f"the exporter exited early; see {logfile}")
        body, _ = http_get(url, timeout=60)
        return len(metric_values(body.decode(), SUCCESS, EXPORT)) >= fake.datastores

    wait_for(all_polled, timeout=args.first_poll_timeout, step=args.probe_every, what="first complete poll")
    res["first_poll_seconds"] = time.monotonic() - t0
    res["first_poll_cpu_seconds"] = cpu_seconds(proc.pid)
    res["first_poll_calls"] = fake.stats()["list_calls"]
    log(f"{tag}: first complete poll after {res['first_poll_seconds']:.1f}s")
    time.sleep(args.warmup_cycles * args.interval)
    res.update(steady_window(args, proc.pid, fake, args.cycles * args.interval))
    text, _ = http_get(url)
    text = text.decode()
    now = time.time()
    last = metric_values(text, SUCCESS, EXPORT)
    durs = metric_values(text, "healthlake_feed_last_poll_duration_seconds", EXPORT)
    res["max_staleness_seconds"] = max(now - v for v in last) if last else None
    res["poll_seconds_median"] = statistics.median(durs) if durs else None
    res["poll_seconds_max"] = max(durs) if durs else None
    res["up"] = sum(metric_values(text, "healthlake_feed_up", EXPORT))
    log(f"{tag}: {res['calls_per_ds_per_cycle']:.2f} calls/ds/cycle, "
        f"{res['cpu_seconds_per_minute']:.2f} CPU s/min, RSS {res['rss_kib_end'] / 1024:.1f} MiB")
    if scrape:
        p = payload(url)
        res["payload"] = p
        (workdir / "metrics.txt").write_bytes(p["body"])
        res["wrk_plain"] = run_wrk(args, url, False, workdir, tag)
        res["wrk_gzip"] = run_wrk(args, url, True, workdir, tag)
        res["hwm_kib_after_wrk"] = mem_kib(proc.pid)["VmHWM"]
    stop(proc)
    return res


def measure_baseline(args, fake: Fake, workdir: Path, port: int) -> dict:
    url = f"http://127.0.0.1:{port}/metrics"
    config = workdir / "config-baseline.toml"
    text = fake.config.read_text()
    text = re.sub(r'listen_address = "[^"]*"', f'listen_address = "127.0.0.1:{port}"', text, count=1)
    config.write_text(text)
    logfile = workdir / "baseline.log"
    t0 = time.monotonic()
    proc = start([str(args.python), "-u", str(args.baseline), str(config)], logfile,
                 env=dict(DUMMY_AWS, PYTHONUNBUFFERED="1"))
    res: dict = {"name": "baseline (boto3 + prometheus_client)", "pid": proc.pid}

    def cycles():
        if proc.poll() is not None:
            raise SystemExit(f"the baseline exited early; see {logfile}")
        return len(re.findall(r"^cycle ", logfile.read_text(errors="replace"), re.M))

    wait_for(lambda: cycles() >= 1, timeout=args.first_poll_timeout, step=args.probe_every,
             what="the baseline's first cycle")
    res["first_poll_seconds"] = time.monotonic() - t0
    res["first_poll_cpu_seconds"] = cpu_seconds(proc.pid)
    log(f"baseline: first cycle done after {res['first_poll_seconds']:.1f}s")
    time.sleep(args.warmup_cycles * args.interval)
    n0 = cycles()
    res.update(steady_window(args, proc.pid, fake, args.cycles * args.interval))
    res["cycles_in_window"] = cycles() - n0
    times = [float(x) for x in re.findall(r"^cycle ([\d.]+)s", logfile.read_text(), re.M)]
    res["poll_seconds_median"] = statistics.median(times) if times else None
    res["poll_seconds_max"] = max(times) if times else None
    log(f"baseline: {res['calls_per_ds_per_cycle']:.2f} calls/ds/cycle, "
        f"{res['cpu_seconds_per_minute']:.2f} CPU s/min, RSS {res['rss_kib_end'] / 1024:.1f} MiB")
    p = payload(url)
    res["payload"] = p
    res["sequential"] = sequential_gets(url, args.wrk_duration)
    log(f"baseline sequential GETs: {res['sequential']['rps']:.2f}/s, {res['sequential']['mean_ms']:.0f} ms each")
    res["wrk_plain"] = run_wrk(args, url, False, workdir, "baseline")
    res["wrk_gzip"] = run_wrk(args, url, True, workdir, "baseline")
    res["hwm_kib_after_wrk"] = mem_kib(proc.pid)["VmHWM"]
    stop(proc)
    return res


def measure_nginx(args, workdir: Path, body: bytes) -> dict:
    port = free_port()
    www = workdir / "www"
    www.mkdir(exist_ok=True)
    (www / "metrics").write_bytes(body)
    (www / "metrics.gz").write_bytes(gzip.compress(body, compresslevel=6))
    for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (workdir / "nginx-tmp" / d).mkdir(parents=True, exist_ok=True)
    conf = workdir / "nginx.conf"
    tmp = workdir / "nginx-tmp"
    conf.write_text(f"""
daemon off;
worker_processes {args.nginx_workers};
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {www};
        location = /metrics {{
            default_type "text/plain; version=0.0.4; charset=utf-8";
            gzip_static on;
        }}
    }}
}}
""")
    proc = start([args.nginx_bin, "-p", str(workdir), "-c", str(conf)], workdir / "nginx.log")
    url = f"http://127.0.0.1:{port}/metrics"
    wait_for(lambda: http_get(url, timeout=5)[0], timeout=20, step=0.2, what="nginx")
    res = {"name": "nginx static copy", "payload": payload(url)}
    res["wrk_plain"] = run_wrk(args, url, False, workdir, "nginx")
    res["wrk_gzip"] = run_wrk(args, url, True, workdir, "nginx")
    stop(proc)
    return res


# ---------------------------------------------------------------- report


def machine() -> str:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().split()[1]
    return f"{os.cpu_count()} CPUs ({model}), {int(mem) / 1024 / 1024:.1f} GiB"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def fmt_ms(v):
    return "-" if v is None else (f"{v:.2f} ms" if v < 100 else f"{v:.0f} ms")


def fmt(v, spec=".2f", unit=""):
    return "-" if v is None else f"{format(v, spec)}{unit}"


def mib(kib):
    return None if kib is None else kib / 1024


def ratio(a, b):
    return None if not a or not b else a / b


def verdict(ok):
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def build_report(args, results: dict) -> str:
    rust, base, ngx, sweep = (results.get(k) for k in ("rust", "baseline", "nginx", "sweep"))
    cols = [("healthlake-exporter", rust), ("baseline", base), ("nginx static", ngx)]
    cols = [(n, r) for n, r in cols if r]
    L = []
    L.append(f"Scale benchmark: {args.datastores} datastores x {args.jobs} jobs, interval {args.interval}s, "
             f"window {args.cycles} cycles, concurrency {args.concurrency}, job_series_limit "
             f"{args.job_series_limit}, max_requests_per_second {args.max_requests_per_second:g}, "
             f"churn {'on' if args.churn else 'off'}, history {args.history}; "
             f"wrk -t{args.wrk_threads} -c{args.wrk_connections} -d{args.wrk_duration}s --latency; "
             f"{time.strftime('%Y-%m-%d %H:%M')}")
    L.append(f"Machine: {machine()}; load average at start {results.get('load_start', '-')}, at end {results.get('load_end', '-')}")
    L.append("")
    L.append("| measure | " + " | ".join(n for n, _ in cols) + " |")
    L.append("| --- |" + " --- |" * len(cols))

    def row(label, f):
        L.append(f"| {label} | " + " | ".join(f(r) for _, r in cols) + " |")

    def get(r, *path):
        for p in path:
            if r is None:
                return None
            r = r.get(p) if isinstance(r, dict) else None
        return r

    row("API calls / datastore / cycle (steady)", lambda r: "-" if get(r, "calls_per_ds_per_cycle") is None else
        fmt(get(r, "calls_per_ds_per_cycle")) + ("" if get(r, "window_aligned_to_rounds") else " (time window)"))
    row("API calls / datastore / interval", lambda r: fmt(get(r, "calls_per_ds_per_interval")))
    row("API calls / poll (first-page calls)", lambda r: fmt(get(r, "calls_per_poll")))
    row("time to first complete poll", lambda r: fmt(get(r, "first_poll_seconds"), ".1f", " s"))
    row("poll duration median / max", lambda r: "-" if get(r, "poll_seconds_median") is None else
        f"{get(r, 'poll_seconds_median'):.3f} / {get(r, 'poll_seconds_max'):.3f} s")
    row("CPU s / minute (steady)", lambda r: fmt(get(r, "cpu_seconds_per_minute"), ".3f"))
    row("CPU s during first poll", lambda r: fmt(get(r, "first_poll_cpu_seconds"), ".2f"))
    row("VmRSS end of window", lambda r: fmt(mib(get(r, "rss_kib_end")), ".1f", " MiB"))
    row("VmHWM before scrapes / after wrk", lambda r: "-" if get(r, "hwm_kib") is None else
        f"{mib(get(r, 'hwm_kib')):.1f} / {fmt(mib(get(r, 'hwm_kib_after_wrk')), '.1f')} MiB")
    row("/metrics payload (plain)", lambda r: fmt(None if get(r, "payload") is None else
                                                   get(r, "payload", "plain_bytes") / 1024, ".1f", " KiB"))
    row("/metrics lines", lambda r: fmt(get(r, "payload", "lines"), "d"))
    row("one GET /metrics (urllib, idle)", lambda r: fmt_ms(None if get(r, "payload") is None else
                                                             get(r, "payload", "get_seconds") * 1000))
    row("/metrics with Accept-Encoding: gzip", lambda r: "-" if get(r, "payload") is None else
        f"{get(r, 'payload', 'gzip_request_bytes') / 1024:.1f} KiB"
        f" ({'gzipped' if get(r, 'payload', 'gzip_served') else 'not gzipped'})")
    for kind in ("plain", "gzip"):
        w = f"wrk_{kind}"
        row(f"scrapes/s ({kind})", lambda r, w=w: fmt(get(r, w, "rps"), ".1f") if get(r, w, "requests")
            or get(r, "sequential") is None else
            f"0 done in {args.wrk_duration}s; sequential GETs: {get(r, 'sequential', 'rps'):.2f}/s")
        row(f"latency p50 / p99 ({kind})", lambda r, w=w: "-" if get(r, w) is None else
            f"{fmt_ms(get(r, w, 'p50_ms'))} / {fmt_ms(get(r, w, 'p99_ms'))}")
        row(f"wrk errors+timeouts ({kind})", lambda r, w=w: fmt(get(r, w, "errors"), "d"))
    L.append("")

    if sweep:
        L.append("Jobs-per-datastore sweep (healthlake-exporter; API calls in the steady window):")
        L.append("")
        L.append("| jobs / datastore | datastores | calls / ds / cycle | calls / ds / interval | calls / poll | CPU s / min | VmRSS | VmHWM | poll median / max |")
        L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for j, r in sweep.items():
            L.append(f"| {j} | {args.sweep_datastores} | {fmt(r['calls_per_ds_per_cycle'])} | "
                     f"{fmt(r['calls_per_ds_per_interval'])} | "
                     f"{fmt(r['calls_per_poll'])} | {fmt(r['cpu_seconds_per_minute'], '.3f')} | "
                     f"{mib(r['rss_kib_end']):.1f} MiB | {mib(r['hwm_kib']):.1f} MiB | "
                     f"{fmt(r['poll_seconds_median'], '.3f')} / {fmt(r['poll_seconds_max'], '.3f')} s |")
        L.append("")

    # Targets (issue #5).
    T = []
    if rust:
        c = rust["calls_per_ds_per_cycle"]
        T.append(("steady API calls / datastore / cycle <= 1.1", f"{c:.2f}", verdict(c <= 1.1)))
        if sweep and len(sweep) >= 2:
            vals = [r["calls_per_ds_per_cycle"] for r in sweep.values()]
            same = max(vals) <= 1.1 and max(vals) - min(vals) <= 0.15
            T.append(("... the same at " + " and ".join(str(k) for k in sweep) + " jobs / datastore",
                      " vs ".join(f"{v:.2f}" for v in vals), verdict(same)))
        rss = mib(rust["rss_kib_end"])
        hwm = mib(rust.get("hwm_kib_after_wrk") or rust["hwm_kib"])
        big = args.datastores >= 1000
        limit = 64 if big else 20
        T.append((f"RSS <= {limit} MiB", f"{rss:.1f} MiB (peak {hwm:.1f})", verdict(hwm <= limit)))
        if big:
            fp = rust["first_poll_seconds"]
            T.append(("first full poll within two intervals", f"{fp:.1f} s (2 intervals = {2 * args.interval} s)",
                      verdict(fp <= 2 * args.interval)))
            st = rust.get("max_staleness_seconds")
            limit_st = args.interval * 1.1 + 5
            T.append(("steady cycles inside the interval (max age of last success)",
                      fmt(st, ".1f", " s") + f" (limit ~{limit_st:.0f} s)",
                      verdict(None if st is None else st <= limit_st)))
        if base and not big:
            cr = ratio(base["cpu_seconds_per_minute"], rust["cpu_seconds_per_minute"])
            T.append(("CPU / minute >= 20x lower than baseline", fmt(cr, ".1f", "x"), verdict(None if cr is None else cr >= 20)))
            rr = ratio(base["rss_kib_end"], rust["rss_kib_end"])
            T.append(("RSS >= 5x lower than baseline", fmt(rr, ".1f", "x"), verdict(None if rr is None else rr >= 5)))
        for kind in ("plain", "gzip"):
            w = f"wrk_{kind}"
            rw = rust.get(w)
            if not rw or big:  # the scrape targets are stated for 50 x 2,000
                continue
            if base and base.get(w):
                brps = base[w]["rps"] if base[w]["requests"] else (base.get("sequential") or {}).get("rps")
                tr = ratio(rw["rps"], brps)
                T.append((f"throughput >= 20x baseline ({kind})", fmt(tr, ".1f", "x"), verdict(None if tr is None else tr >= 20)))
            if ngx and ngx.get(w):
                nr = ratio(rw["rps"], ngx[w]["rps"])
                T.append((f"throughput >= 50% of nginx ({kind})", fmt(None if nr is None else nr * 100, ".1f", "%"),
                          verdict(None if nr is None else nr >= 0.5)))
            p99 = rw.get("p99_ms")
            T.append((f"p99 < 5 ms ({kind})", fmt_ms(p99), verdict(None if p99 is None else p99 < 5)))
    if T:
        L.append("Targets (issue #5):")
        L.append("")
        L.append("| target | measured | verdict |")
        L.append("| --- | --- | --- |")
        for t in T:
            L.append(f"| {t[0]} | {t[1]} | {t[2]} |")
        L.append("")
    L.append("Notes: the steady window runs from the end of one poll round to the end of the round "
             f"{args.cycles} rounds later (a round ends after {args.quiet:g}s without calls); calls/ds/cycle ="
             " ListFHIRExportJobs calls the fake saw in the window / datastores / rounds (\"(time window)\":"
             " rounds did not stand apart, so / (window / interval) instead). calls/ds/interval = calls /"
             " datastores / (window / interval): lower than per cycle by the poller's jitter. calls/poll ="
             " calls / calls without NextToken. CPU from /proc/PID/stat utime+stime; RSS from"
             " /proc/PID/status. wrk shares the 2 cores with the server; other work on the machine shows in"
             " the load average.")
    return "\n".join(L)


# ---------------------------------------------------------------- main


def ensure_tools(args) -> None:
    args.wrk_bin = shutil.which("wrk") if not args.no_wrk else None
    if not args.wrk_bin and not args.no_wrk:
        log("wrk not found (apt-get install wrk): scrape throughput/latency skipped")
    args.nginx_bin = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not args.nginx_bin and not args.no_nginx:
        log("nginx not found (apt-get install nginx-light): static-file ceiling skipped")
        args.no_nginx = True
    if not args.no_baseline:
        py = Path(args.venv) / "bin" / "python"
        ok = py.exists() and subprocess.run([str(py), "-c", "import boto3, prometheus_client"],
                                            capture_output=True).returncode == 0
        if not ok:
            log(f"creating venv {args.venv} with boto3 + prometheus-client")
            subprocess.run([sys.executable, "-m", "venv", args.venv], check=True)
            subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                            "boto3", "prometheus-client"], check=True)
        args.python = py
        if not Path(args.baseline).exists():
            raise SystemExit(f"baseline not found: {args.baseline} (use --baseline PATH or --no-baseline)")


def build(args) -> None:
    target = Path(args.target_dir or os.environ.get("CARGO_TARGET_DIR") or args.repo / "target")
    args.exporter_bin = args.exporter_bin or target / "release" / "healthlake-exporter"
    args.fake_bin = target / "release" / "healthlake-fake"
    if not args.no_build:
        log("cargo build --release -p healthlake-exporter -p healthlake-fake")
        cmd = ["cargo", "build", "--release", "-p", "healthlake-exporter", "-p", "healthlake-fake"]
        if args.target_dir:
            cmd += ["--target-dir", str(args.target_dir)]
        subprocess.run(cmd, cwd=args.repo, check=True)
    for b in (args.exporter_bin, args.fake_bin):
        if not b.exists():
            raise SystemExit(f"missing {b}: build first or drop --no-build")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datastores", type=int, default=50)
    ap.add_argument("--jobs", type=int, default=2000, help="jobs of history per datastore")
    ap.add_argument("--interval", type=int, default=15, help="polling.interval, seconds")
    ap.add_argument("--timeout", type=int, default=30, help="polling.timeout, seconds")
    ap.add_argument("--cycles", type=int, default=3, help="steady window length, in intervals")
    ap.add_argument("--warmup-cycles", type=float, default=1, help="wait after the first complete poll")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--job-series-limit", type=int, default=100)
    ap.add_argument("--max-requests-per-second", type=float, default=1000.0,
                    help="polling.max_requests_per_second written into the config (default 1000:"
                         " effectively no pacing). The exporter's own default is 5 per account and"
                         " region (HealthLake's quota is 10); the fake has no quota and the benchmark"
                         " measures the exporter, not AWS's quota, so by default the budget is lifted."
                         " Pass 5 to see the first-poll time at the exporter's default budget.")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--churn", action="store_true", help="one job per datastore per minute changes status")
    ap.add_argument("--history", choices=["plain", "stuck", "unfinished", "bursty"], default="plain",
                    help="shape of each datastore's history (issue 10): plain (one job an hour, all"
                         " finished but the newest), stuck (plus one job IN_PROGRESS for 19 days),"
                         " unfinished (2,000 jobs over 20 days, every fifth unfinished), bursty (the"
                         " newest 600 jobs submitted within the last minute). Old unfinished jobs are"
                         " followed every 8th poll: use --cycles 16 to measure a whole rhythm")
    ap.add_argument("--exporter-bin", type=Path, default=None,
                    help="measure this exporter binary instead of the one built here (e.g. an older"
                         " version, for before/after figures); the fake is still built here")
    ap.add_argument("--sweep", default="", help="comma-separated jobs per datastore, e.g. 100,20000")
    ap.add_argument("--sweep-datastores", type=int, default=None, help="datastores in the sweep (default: --datastores)")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--no-nginx", action="store_true")
    ap.add_argument("--no-wrk", action="store_true")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--wrk-connections", type=int, default=16)
    ap.add_argument("--wrk-duration", type=int, default=10)
    ap.add_argument("--wrk-timeout", type=int, default=30, help="wrk --timeout, seconds (the baseline is slow)")
    ap.add_argument("--nginx-workers", default="auto")
    ap.add_argument("--probe-every", type=float, default=None,
                    help="seconds between first-poll probes of /metrics (default 0.25, 1 above 100 datastores)")
    ap.add_argument("--quiet", type=float, default=None,
                    help="seconds without API calls that end a poll round (window alignment; default"
                         " interval/4, at least 1)")
    ap.add_argument("--first-poll-timeout", type=float, default=900)
    ap.add_argument("--repo", type=Path, default=REPO)
    ap.add_argument("--target-dir", type=Path, default=None)
    ap.add_argument("--baseline", type=Path, default=REPO.parent / "shared" / "bench" / "baseline_exporter.py")
    ap.add_argument("--venv", default="/tmp/hlbench-venv")
    ap.add_argument("--workdir", type=Path, default=None, help="logs and captures (default: a new temp dir)")
    ap.add_argument("--markdown", type=Path, default=None, help="also write the summary here")
    ap.add_argument("--json", type=Path, default=None, help="also write all figures here")
    args = ap.parse_args()
    args.sweep_datastores = args.sweep_datastores or args.datastores
    if args.quiet is None:
        args.quiet = max(1.0, args.interval / 4)
    if args.probe_every is None:
        args.probe_every = 0.25 if args.datastores <= 100 else 1.0

    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hl-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o755)  # nginx workers (user nobody) read the captured copy from here
    log(f"workdir {workdir}")
    ensure_tools(args)
    build(args)

    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "load_start": loadavg()}
    rust_port = free_port()
    fake = Fake(args, workdir, args.datastores, args.jobs, rust_port, "main")
    try:
        results["rust"] = measure_rust(args, fake, workdir, rust_port, "exporter")
        if not args.no_baseline:
            results["baseline"] = measure_baseline(args, fake, workdir, free_port())
    finally:
        fake.stop()
    if not args.no_nginx and results.get("rust", {}).get("payload"):
        results["nginx"] = measure_nginx(args, workdir, results["rust"]["payload"]["body"])

    if args.sweep:
        results["sweep"] = {}
        for jobs in [int(x) for x in args.sweep.split(",") if x.strip()]:
            port = free_port()
            f = Fake(args, workdir, args.sweep_datastores, jobs, port, f"sweep-{jobs}")
            try:
                results["sweep"][jobs] = measure_rust(args, f, workdir, port, f"sweep-{jobs}", scrape=False)
            finally:
                f.stop()

    results["load_end"] = loadavg()
    report = build_report(args, results)
    print(report)
    if args.markdown:
        args.markdown.write_text(report + "\n")
    for r in (results.get("rust"), results.get("baseline"), results.get("nginx")):
        if r and r.get("payload"):
            r["payload"].pop("body", None)
            for w in ("wrk_plain", "wrk_gzip"):
                if r.get(w):
                    r[w].pop("raw", None)
    out = workdir / "results.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    if args.json:
        shutil.copy(out, args.json)
    log(f"logs, captures and results.json in {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
