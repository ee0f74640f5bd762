#!/usr/bin/env python3
"""Memory figures of healthlake-exporter (issue 14), one command per figure, everything on 127.0.0.1.

Each figure starts the fake HealthLake (crates/healthlake-fake) with a history shape, starts the
release exporter against it and scrapes /metrics the way the figure says, from the exporter's start:
Prometheus-style gzip scrapes every 15 s, optionally plain scrapes mixed in, optionally a burst of
concurrent plain scrapes at the end. It samples VmRSS every 100 ms and reads VmHWM (the kernel's
peak), then prints the figure and its verdict against the issue's target:

    bench/memory.py large-gzip        # 1,000 x 1,000, gzip scrapes every 15 s      <= 64 MiB steady and peak
    bench/memory.py large-mixed       # ... with plain scrapes of both formats too   <= 80 MiB steady and peak
    bench/memory.py large-concurrent  # ... then 16 concurrent plain scrapes         peak < 2 x steady
    bench/memory.py large-stuck       # 1,000 x 1,000 with 20 % of the jobs unfinished (reported)
    bench/memory.py large-first-poll  # 1,000 x 1,000, gzip scrapes from the start and 5 straight
                                      # after the first poll            <= 64 MiB after it, after the 5, steady
    bench/memory.py small             # 50 x 2,000, gzip and plain scrapes          <= 24 MiB steady and peak
    bench/memory.py small-stuck       # 50 x 2,000 with 20 % unfinished                <= 24 MiB steady and peak
    bench/memory.py small-stuck-job   # 50 x 2,000 over 20 days, the oldest IN_PROGRESS for 19 days  <= 24 MiB
    bench/memory.py small-unfinished  # 50 x 2,000 over 20 days, every 5th unfinished <= 24 MiB steady and peak
    bench/memory.py small-bursty      # 50 x 2,000, the newest 600 within a minute    <= 24 MiB steady and peak
    bench/memory.py demo              # healthlake-exporter --demo, a few scrapes (reported)
    bench/memory.py all               # every figure above, one after the other (~20 min)

The shapes: "large" has at most two unfinished jobs per datastore (the newest IN_PROGRESS and the one
before QUEUED), job_series_limit 100, polling concurrency 32 (the "small" shapes: 8, the exporter's
default, as the 50 x 2,000 figures of the performance and alerting issues), interval 60 s (the "small"
shapes: 5 s, so the window holds ~30 polls, old unfinished jobs followed in several); "stuck" leaves 20 % of
the jobs IN_PROGRESS, spread over the whole history. The request budget is lifted (1000/s): the fake
has no quota, and the first full poll is where the peak is.

"large-first-poll" is the first poll's figure (issue 19): the exporter's first poll lists every
datastore's whole history, which made it the memory peak. It scrapes like large-gzip from the start
and, the moment the log shows every datastore polled, five gzip scrapes back to back; it prints VmHWM
then ("after the first poll") and after the five ("after 5 scrapes"), and the target holds for both
as well as for steady and peak.

"steady" is the highest VmRSS sampled in the last 60 s of the window (after at least one full poll
interval past the first complete poll), "end" the VmRSS when the window ends, "peak" VmHWM over the
exporter's whole life (first full poll included; or the highest sample, if the kernel's lazily
updated VmHWM is below it). For the concurrent figure the peak is reset
(/proc/PID/clear_refs) before the burst, so it is the burst's own peak.

Builds `cargo build --release -p healthlake-exporter -p healthlake-fake` first unless
--no-build. Standard library only. Prints the machine's load average at the start and the end.
"""
from __future__ import annotations

import argparse
import atexit
import gzip
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROCS: list[subprocess.Popen] = []
DUMMY_AWS = {
    "AWS_ACCESS_KEY_ID": "AKIDBENCHEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "bench-secret-not-a-real-key",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_REGION": "us-east-1",
}
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
# Figures that scrape this many times back to back the moment the log shows every datastore polled.
SCRAPES_AFTER_FIRST_POLL = {"large-first-poll": 5}
# The exporter logs this once per datastore at its first successful poll (and when it recovers).
POLLED_LINE = b"datastore polled successfully"

# name: (datastores, jobs, running, unfinished %, fake --history, plain scrapes mixed in,
#        concurrent burst, target MiB)
FIGURES = {
    "large-gzip": (1000, 1000, 2, 0, "plain", False, 0, 64),
    "large-first-poll": (1000, 1000, 2, 0, "plain", False, 0, 64),
    "large-mixed": (1000, 1000, 2, 0, "plain", True, 0, 80),
    "large-concurrent": (1000, 1000, 2, 0, "plain", False, 16, None),
    "large-stuck": (1000, 1000, 2, 20, "plain", False, 0, None),
    "small": (50, 2000, 2, 0, "plain", True, 0, 24),
    "small-stuck": (50, 2000, 2, 20, "plain", True, 0, 24),
    # The alerting issue's (#10) history shapes, at 50 x 2,000 (see the fake's --history).
    "small-stuck-job": (50, 2000, 1, 0, "stuck", True, 0, 24),
    "small-unfinished": (50, 2000, 1, 0, "unfinished", True, 0, 24),
    "small-bursty": (50, 2000, 1, 0, "bursty", True, 0, 24),
    "demo": (None, None, None, None, None, True, 0, None),
}


def log(msg: str) -> None:
    print(f"[memory {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def start(cmd, logfile: Path, env=None) -> subprocess.Popen:
    full_env = dict(os.environ)
    full_env.update(env or {})
    p = subprocess.Popen(cmd, stdout=open(logfile, "ab"), stderr=subprocess.STDOUT, env=full_env,
                         stdin=subprocess.DEVNULL)
    PROCS.append(p)
    return p


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=8)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


def cleanup() -> None:
    for p in reversed(PROCS):
        stop(p)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def mib(kib: float) -> float:
    return kib / 1024


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Sampler(threading.Thread):
    """VmRSS every 100 ms: (monotonic time, KiB)."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.samples, self.done = pid, [], threading.Event()

    def run(self):
        while not self.done.is_set():
            try:
                self.samples.append((time.monotonic(), status_kib(self.pid, "VmRSS")))
            except OSError:
                return
            time.sleep(0.1)

    def max_since(self, t0: float) -> int:
        return max((kib for t, kib in self.samples if t >= t0), default=0)


def scrape(port: int, gzip_on: bool, openmetrics: bool, timeout: float = 120) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {}
    if gzip_on:
        headers["Accept-Encoding"] = "gzip"
    if openmetrics:
        headers["Accept"] = OPENMETRICS
    conn.request("GET", "/metrics", headers=headers)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    if r.status != 200:
        raise RuntimeError(f"/metrics answered {r.status}")
    if r.getheader("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    return body


def polled(body: bytes, datastores: int) -> bool:
    return export_successes(body) >= datastores


def export_successes(body: bytes) -> int:
    """Datastores whose export jobs were listed successfully at least once (the family before
    issue 19 too, so that --exporter can measure an older build)."""
    return sum(
        1
        for line in body.split(b"\n")
        if (
            line.startswith(b"healthlake_feed_last_success_timestamp_seconds{")
            and b'feed="export"' in line
        )
        or line.startswith(b"healthlake_last_successful_poll_timestamp_seconds{")
    )


class PollLog:
    """Counts the exporter's "polled successfully" lines as they are written (read incrementally)."""

    def __init__(self, path: Path):
        self.path, self.offset, self.count, self.rest = path, 0, 0, b""

    def polled(self) -> int:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            return self.count
        self.offset += len(chunk)
        lines = (self.rest + chunk).split(b"\n")
        self.rest = lines.pop()
        self.count += sum(POLLED_LINE in line for line in lines)
        return self.count


def build(args) -> None:
    target = Path(args.target_dir or os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    args.exporter_bin = target / "release" / "healthlake-exporter"
    args.fake_bin = target / "release" / "healthlake-fake"
    if not args.no_build:
        log("cargo build --release -p healthlake-exporter -p healthlake-fake")
        cmd = ["cargo", "build", "--release", "-p", "healthlake-exporter", "-p", "healthlake-fake"]
        if args.target_dir:
            cmd += ["--target-dir", str(args.target_dir)]
        subprocess.run(cmd, cwd=REPO, check=True)
    if args.exporter:
        args.exporter_bin = args.exporter
    for b in (args.exporter_bin, args.fake_bin):
        if not b.exists():
            raise SystemExit(f"missing {b}: build first or drop --no-build")


def start_fake(args, workdir: Path, ds: int, jobs: int, running: int, unfinished: int, history: str,
               port: int) -> Path:
    config = workdir / "config.toml"
    cmd = [str(args.fake_bin), "--listen", "127.0.0.1:0", "--stats-listen", "127.0.0.1:0",
           "--datastores", str(ds), "--jobs", str(jobs), "--running", str(running),
           "--unfinished-percent", str(unfinished), "--history", history, "--config-out", str(config),
           "--exporter-listen", f"127.0.0.1:{port}", "--interval", f"{args.interval or (60 if ds >= 1000 else 5)}s",
           "--concurrency", str(args.concurrency or (32 if ds >= 1000 else 8)), "--job-series-limit", "100",
           "--max-requests-per-second", "1000"]
    logfile = workdir / "fake.log"
    p = start(cmd, logfile)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise SystemExit(f"the fake exited early; see {logfile}")
        if any(line.startswith("READY ") for line in logfile.read_text(errors="replace").splitlines()):
            return config
        time.sleep(0.2)
    raise SystemExit("the fake did not get ready")


def run_figure(args, name: str) -> dict:
    ds, jobs, running, unfinished, history, mixed, burst, target = FIGURES[name]
    workdir = Path(tempfile.mkdtemp(prefix=f"hl-mem-{name}-"))
    port = free_port()
    if name == "demo":
        cmd = [str(args.exporter_bin), "--demo", "--listen-address", f"127.0.0.1:{port}"]
        ds = 3
    else:
        config = start_fake(args, workdir, ds, jobs, running, unfinished, history, port)
        cmd = [str(args.exporter_bin), "--config", str(config)]
    log(f"{name}: load {loadavg()}; starting the exporter (logs in {workdir})")
    t0 = time.monotonic()
    proc = start(cmd, workdir / "exporter.log", env=DUMMY_AWS)
    sampler = Sampler(proc.pid)
    sampler.start()
    first_poll = None
    n_scrapes = {"gzip": 0, "plain": 0}
    # Prometheus-style: one gzip OpenMetrics scrape every 15 s from the start (what Prometheus
    # sends). Mixed: 7.5 s after each, one more scrape, in turn plain OpenMetrics, plain Prometheus
    # text and gzip Prometheus text (curl, probes, older scrapers), so both formats are cached.
    window = args.window if name != "demo" else 45
    tick, end = 0, None
    extra = [(False, True), (False, False), (True, False)]
    burst_after = SCRAPES_AFTER_FIRST_POLL.get(name, 0)
    poll_log = PollLog(workdir / "exporter.log")
    first_poll_res: dict = {}
    while True:
        at = t0 + 1 + tick * args.scrape_interval
        now = time.monotonic()
        if end is not None and at > end:
            break
        if proc.poll() is not None:
            raise SystemExit(f"the exporter exited; see {workdir / 'exporter.log'}")
        if burst_after and not first_poll_res:
            # Wait for the tick while watching the log for the end of the first poll.
            while time.monotonic() < at and poll_log.polled() < ds:
                time.sleep(0.1)
            if poll_log.polled() >= ds:
                first_poll_res = first_poll_burst(proc.pid, port, burst_after, t0)
                log(f"{name}: every datastore polled after {first_poll_res['seconds']:.1f} s (log); "
                    f"VmHWM {mib(first_poll_res['after_poll_kib']):.1f} MiB, after {burst_after} gzip "
                    f"scrapes {mib(first_poll_res['after_scrapes_kib']):.1f} MiB")
        time.sleep(max(0.0, at - time.monotonic()))
        try:
            body = scrape(port, True, True)
            n_scrapes["gzip"] += 1
            if first_poll is None and polled(body, ds):
                first_poll = time.monotonic() - t0
                end = time.monotonic() + window
                log(f"{name}: every datastore polled after {first_poll:.1f} s; window {window:.0f} s")
            if mixed and first_poll is not None:
                time.sleep(args.scrape_interval / 2)
                gzip_on, openmetrics = extra[tick % len(extra)]
                scrape(port, gzip_on, openmetrics)
                n_scrapes["gzip" if gzip_on else "plain"] += 1
        except (OSError, RuntimeError, http.client.HTTPException) as e:
            log(f"{name}: scrape failed ({e}); retrying at the next tick")
        tick += 1
        if first_poll is None and time.monotonic() - t0 > args.first_poll_timeout:
            raise SystemExit("no complete first poll in time")
    res = {
        "name": name,
        "first_poll_seconds": first_poll,
        "end_kib": status_kib(proc.pid, "VmRSS"),
        "steady_kib": sampler.max_since(time.monotonic() - min(60, window)),
        # The kernel updates VmHWM lazily (per-thread RSS counters): a sample may be higher.
        "peak_kib": max(status_kib(proc.pid, "VmHWM"), sampler.max_since(0.0)),
        "scrapes": dict(n_scrapes),
        "target": target,
    }
    if first_poll_res:
        res["first_poll"] = first_poll_res
        res["scrapes"]["gzip"] += burst_after
    if burst:
        Path(f"/proc/{proc.pid}/clear_refs").write_text("5")
        before = status_kib(proc.pid, "VmRSS")
        errors: list[str] = []
        sizes: list[int] = []

        def one(i):
            try:
                sizes.append(len(scrape(port, False, i % 2 == 1, timeout=300)))
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(str(e))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(burst)]
        tb = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        res["burst"] = {
            "n": burst, "before_kib": before, "peak_kib": status_kib(proc.pid, "VmHWM"),
            "seconds": time.monotonic() - tb, "errors": errors, "body_bytes": max(sizes, default=0),
        }
    sampler.done.set()
    stop(proc)
    for p in PROCS:
        if p is not proc:
            stop(p)
    PROCS.clear()
    res["load"] = loadavg()
    return res


def first_poll_burst(pid: int, port: int, n: int, t0: float) -> dict:
    """VmHWM right after the first poll, then after `n` gzip scrapes back to back."""
    seconds = time.monotonic() - t0
    after_poll = status_kib(pid, "VmHWM")
    for _ in range(n):
        scrape(port, True, True)
    return {"seconds": seconds, "after_poll_kib": after_poll, "n": n,
            "after_scrapes_kib": status_kib(pid, "VmHWM")}


def report(res: dict) -> bool:
    name, target = res["name"], res["target"]
    steady, end, peak = mib(res["steady_kib"]), mib(res["end_kib"]), mib(res["peak_kib"])
    line = (f"FIGURE {name}: steady {steady:.1f} MiB (end {end:.1f}), peak {peak:.1f} MiB; "
            f"first full poll {res['first_poll_seconds']:.1f} s; scrapes {res['scrapes']['gzip']} gzip"
            f" + {res['scrapes']['plain']} plain; load {res['load']}")
    ok = True
    if "burst" in res:
        b = res["burst"]
        bpeak = mib(b["peak_kib"])
        ok = bpeak < 2 * steady and not b["errors"]
        line += (f"\nFIGURE {name}: {b['n']} concurrent plain scrapes ({b['body_bytes'] / 1e6:.1f} MB each,"
                 f" {b['seconds']:.1f} s): peak {bpeak:.1f} MiB vs 2 x steady = {2 * steady:.1f} MiB"
                 f"{'; errors: ' + '; '.join(b['errors'][:3]) if b['errors'] else ''}"
                 f" -> {'met' if ok else 'MISSED'}")
    elif "first_poll" in res:
        fp = res["first_poll"]
        after_poll, after_scrapes = mib(fp["after_poll_kib"]), mib(fp["after_scrapes_kib"])
        ok = max(after_poll, after_scrapes, steady, peak) <= target
        line += (f"\nFIGURE {name}: VmHWM right after the first poll ({fp['seconds']:.1f} s) {after_poll:.1f} MiB,"
                 f" after {fp['n']} gzip scrapes straight after it {after_scrapes:.1f} MiB"
                 f" -> target <= {target} MiB after the first poll, after the scrapes, steady and peak:"
                 f" {'met' if ok else 'MISSED'}")
    elif target is not None:
        ok = steady <= target and peak <= target
        line += f" -> target <= {target} MiB steady and peak: {'met' if ok else 'MISSED'}"
    else:
        line += " -> reported (no target)"
    print(line, flush=True)
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("figure", choices=[*FIGURES, "all"])
    ap.add_argument("--window", type=float, default=150,
                    help="seconds measured after the first complete poll (default 150: 2.5 poll intervals)")
    ap.add_argument("--interval", type=int, default=None,
                    help="polling.interval, seconds (default: 60 for the 1,000-datastore figures; 5 for the"
                         " others, so that the window holds ~30 polls and every datastore follows its old"
                         " unfinished jobs several times)")
    ap.add_argument("--concurrency", type=int, default=None,
                    help="polling.concurrency (default: 32 for the 1,000-datastore figures, 8 for the others)")
    ap.add_argument("--scrape-interval", type=float, default=15)
    ap.add_argument("--first-poll-timeout", type=float, default=600)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--target-dir", type=Path, default=None)
    ap.add_argument("--exporter", type=Path, default=None,
                    help="measure this exporter binary instead (e.g. one built from an older commit)")
    args = ap.parse_args()
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    build(args)
    log(f"load average at start: {loadavg()} ({os.cpu_count()} CPUs)")
    names = list(FIGURES) if args.figure == "all" else [args.figure]
    ok = True
    for name in names:
        ok &= report(run_figure(args, name))
    log(f"load average at end: {loadavg()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
