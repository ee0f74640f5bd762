#!/usr/bin/env bash
# Installs what bench/scale.py needs besides cargo: wrk and nginx (Debian packages) and a venv with
# boto3 + prometheus-client for ../shared/bench/baseline_exporter.py. Safe to run twice.
# Usage: bench/setup.sh [VENV_DIR]   (default /tmp/hlbench-venv; run as root for apt-get)
set -euo pipefail
venv="${1:-/tmp/hlbench-venv}"
if ! command -v wrk >/dev/null || ! { command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; }; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends wrk nginx-light >/dev/null
  # Debian may start an nginx service on :80 where an init system runs; the benchmark starts its own.
  service nginx stop >/dev/null 2>&1 || true
fi
if ! "$venv/bin/python" -c 'import boto3, prometheus_client' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check boto3 prometheus-client
fi
echo "ready: wrk $(command -v wrk), nginx $(command -v nginx || echo /usr/sbin/nginx), venv $venv"
