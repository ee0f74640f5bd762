#!/usr/bin/env bash
# The first-deploy path of docs/deploy-in-10-minutes.md, timed: every step that can run here
# (no Docker daemon, no cluster, no AWS: a local clone stands for GitHub, `cargo install` for the
# image build's compile, the fake HealthLake for AWS in the preflight).
# Run from a checkout: bench/first_deploy.sh (needs kubectl, kubernetes-validate and promtool, as the
# tests do, and `cargo build --release -p healthlake-fake` for the preflight's stand-in).
set -euo pipefail
REPO=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
[ -x "$REPO/target/release/healthlake-fake" ] || cargo build --quiet --release --locked -p healthlake-fake --manifest-path "$REPO/Cargo.toml"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
T=$(mktemp -d /tmp/first-deploy-XXXX); cd "$T"
t() { local s=$(date +%s.%N); "$@"; local e=$(date +%s.%N); printf '   took %.1f s\n' "$(echo "$e - $s" | bc)"; }
echo "== 0. clone";       t git clone -q "$REPO" healthlake-exporter
export HLE="$T/healthlake-exporter"
echo "== install (cold: the image build's compile)"; t cargo install --quiet --locked --path "$HLE/crates/exporter" --root "$T/bin"
export PATH="$T/bin/bin:$PATH"; healthlake-exporter --version
mkdir my-app && cp "$HLE"/deploy/kubernetes/sidecar/app/{deployment,serviceaccount}.yaml my-app/ && cd my-app
echo "== 3. config + check";  t bash -c 'cp "$HLE/deploy/kubernetes/sidecar/config.toml" config.toml && healthlake-exporter --check-config --config config.toml | tail -2'
python3 - <<'PY'
import re,os
doc=open(os.environ["HLE"]+"/docs/deploy-in-10-minutes.md").read()
block=re.search(r"```yaml\n(# kustomization.yaml:.*?)```",doc,re.S).group(1)
block=block.replace("https://github.com/example/healthlake-exporter//","../healthlake-exporter/").replace("?ref=v0.1.0","")
open("kustomization.yaml","w").write(block)
PY
echo "== 3. render + validate"; t bash -c 'kubectl kustomize . | kubernetes-validate --strict - | tail -3; echo "hl-metrics: $(kubectl kustomize . | grep -c hl-metrics)"; echo "release: $(kubectl kustomize . | grep -c "release: kube-prometheus-stack")"'
echo "== 4. preflight (fake HealthLake standing for AWS)"
"$REPO/target/release/healthlake-fake" --datastores 3 --jobs 20 --config-out pf.toml > fake.log 2>&1 & FAKE=$!
for _ in $(seq 50); do [ -s pf.toml ] && break; sleep 0.1; done
export AWS_ACCESS_KEY_ID=AKIDEXAMPLE AWS_SECRET_ACCESS_KEY=fake AWS_EC2_METADATA_DISABLED=true
# The fake answers STS on its port too, so nothing leaves loopback.
AWS_ENDPOINT_URL_STS=$(grep -m1 -o 'http://127.0.0.1:[0-9]*' pf.toml); export AWS_ENDPOINT_URL_STS
set +e; t healthlake-exporter --check-config --probe --config pf.toml; echo "   exit $?"; set -e
kill $FAKE
echo "== 6. promtool test rules"; t promtool test rules "$HLE/deploy/prometheus/alerts_test.yml"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); dir: $T"
