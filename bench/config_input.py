#!/usr/bin/env python3
"""Hostile configuration files (issue 18, findings 5 and 6): peak RSS and serving while a reload reads them.

Starts the exporter with its configuration behind a symlink (as a Kubernetes ConfigMap's `..data`),
then, one case after the other, points the symlink at `/dev/zero`, at a FIFO and at a 64 MiB file,
and reloads with SIGHUP and with `POST /-/reload`. During each reload it probes `/healthz` every
100 ms (1 s timeout) and samples VmRSS; it prints, per case and way, the reload's answer, the
slowest probe, failed probes, and the exporter's VmHWM (the kernel's peak RSS over its whole life).
Before issue 18, SIGHUP with `/dev/zero` took the exporter to 1.29 GB in 2 s and a FIFO froze
`/healthz` on `POST /-/reload`; now each is refused at once.

    bench/config_input.py                       # the release binary (built first unless --no-build)
    bench/config_input.py --binary target/debug/healthlake-exporter --no-build

The exporter runs with its data segment capped (RLIMIT_DATA, default 3 GiB) so that an old binary
reading `/dev/zero` dies at the cap instead of taking the machine's memory. Everything on 127.0.0.1;
the datastore's endpoint is a closed loopback port (its polls fail at once; no AWS is reached).
Standard library only.
"""
from __future__ import annotations

import argparse
import http.client
import re
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def rss_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def request(port: int, method: str, path: str, timeout: float) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, headers={"Content-Length": "0"} if method == "POST" else {})
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


class Prober(threading.Thread):
    """Probes /healthz every 100 ms with a 1 s timeout until stopped."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port, self.stop, self.slowest, self.failed, self.total = port, threading.Event(), 0.0, 0, 0

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                ok = request(self.port, "GET", "/healthz", 1.0)[0] == 200
            except OSError:
                ok = False
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.total += 1
            self.failed += 0 if ok else 1
            time.sleep(0.1)


def swap(link: Path, target: Path) -> None:
    nxt = link.with_suffix(".next")
    nxt.unlink(missing_ok=True)
    nxt.symlink_to(target)
    nxt.rename(link)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=str(REPO / "target/release/healthlake-exporter"))
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--data-cap-mib", type=int, default=3072)
    args = parser.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "healthlake-exporter"], cwd=REPO, check=True)
    print(f"load average at start: {os.getloadavg()}", flush=True)

    work = Path(tempfile.mkdtemp(prefix="hle-config-input-"))
    good = work / "good.toml"
    good.write_text(
        '[server]\nlisten_address = "127.0.0.1:0"\nenable_reload = true\n'
        '[aws]\nregion = "us-east-1"\nendpoint_url = "http://127.0.0.1:1"\n'
        '[[datastores]]\nid = "a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4"\n'
    )
    link = work / "config.toml"
    link.symlink_to(good)
    fifo = work / "fifo"
    os.mkfifo(fifo)
    big = work / "big.toml"
    with big.open("w") as f:
        f.write(good.read_text())
        line = "# padding " + "x" * 53 + "\n"
        f.write(line * (64 * 1024 * 1024 // len(line)))

    cap = args.data_cap_mib << 20

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))

    env = dict(os.environ, AWS_ACCESS_KEY_ID="AKIDBENCHEXAMPLE", AWS_SECRET_ACCESS_KEY="bench-secret",
               AWS_EC2_METADATA_DISABLED="true", RUST_LOG="warn,healthlake_exporter=info")
    proc = subprocess.Popen([args.binary, "--config", str(link), "--log-format", "json"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=limit)
    port = None
    for line in proc.stderr:
        if "healthlake-exporter started" in line:
            port = int(re.search(r'"listen_address":"[^"]*:(\d+)"', line).group(1))
            break
    if port is None:
        print("the exporter did not start")
        return 1
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    print(f"exporter pid {proc.pid} on port {port}; VmHWM at start {rss_kib(proc.pid, 'VmHWM') / 1024:.1f} MiB")

    print(f"{'case':<10} {'reload':<8} {'answer':<58} {'VmHWM MiB':>9} {'slowest /healthz':>17} {'failed':>7}")
    for name, target in [("/dev/zero", Path("/dev/zero")), ("FIFO", fifo), ("64 MiB", big)]:
        for way in ["SIGHUP", "POST"]:
            if proc.poll() is not None:
                print(f"{name:<10} {way:<8} the exporter has exited ({proc.returncode}): it died reading the file")
                return 1
            swap(link, target)
            prober = Prober(port)
            prober.start()
            if way == "SIGHUP":
                os.kill(proc.pid, signal.SIGHUP)
                deadline = time.monotonic() + 2.0
                while time.monotonic() < deadline and proc.poll() is None:
                    time.sleep(0.05)
                try:
                    _, body = request(port, "GET", "/metrics", 5.0)
                    ok = [l for l in body.splitlines() if l.startswith("healthlake_exporter_config_last_reload_successful ")]
                    answer = ok[0] if ok else "?"
                except OSError as e:
                    answer = f"/metrics: {e}"
            else:
                try:
                    status, body = request(port, "POST", "/-/reload", 15.0)
                    first = body.strip().splitlines()[0] if body.strip() else ""
                    answer = f"{status} {first.split(str(link) + ': ', 1)[-1]}"
                except OSError as e:
                    answer = f"no answer: {e}"
            prober.stop.set()
            prober.join()
            hwm = rss_kib(proc.pid, "VmHWM") / 1024
            print(f"{name:<10} {way:<8} {answer[:58]:<58} {hwm:>9.1f} {prober.slowest:>16.3f}s {prober.failed:>3}/{prober.total}")
            swap(link, good)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGHUP)
                time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    print(f"load average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
