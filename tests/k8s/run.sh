#!/usr/bin/env bash
# Kubernetes delivery tests (issue 13), offline:
#   test_lint.py        helm lint + template of every profile, the schema refusing bad
#                       values, kubernetes-validate (strict, oldest supported minor),
#                       checkov on the chart and terraform/, terraform fmt/init/validate
#                       with the providers of the local filesystem mirror;
#   test_chart_runs.py  the rendered pods run as processes in network namespaces
#                       (root only; skipped loudly otherwise).
# Run from anywhere: bash tests/k8s/run.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
export CANDOR_BIN=${CANDOR_BIN:-$TARGET/debug/candor}
if [ ! -x "$CANDOR_BIN" ]; then
  cargo build -p candor
fi
if [ "$(id -u)" = 0 ] && ! command -v ip >/dev/null; then
  apt-get update -qq && apt-get install -y -qq iproute2 >/dev/null
fi
VENV=${K8S_TEST_VENV:-$TARGET/k8s-venv}
if ! "$VENV/bin/python" -c 'import helm_python, kubernetes_validate, yaml, pytest, grpc_health' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r tests/k8s/requirements.txt
fi
# checkov pins its own dependency versions: a venv of its own.
CHECKOV_VENV=${K8S_CHECKOV_VENV:-$TARGET/k8s-checkov-venv}
if [ ! -x "$CHECKOV_VENV/bin/checkov" ]; then
  python3 -m venv "$CHECKOV_VENV"
  "$CHECKOV_VENV/bin/pip" install -q checkov
fi
export CHECKOV="$CHECKOV_VENV/bin/checkov"
# Terraform: point a CLI configuration at the machine's filesystem mirror of providers.
if [ -z "${TF_CLI_CONFIG_FILE:-}" ] || [ ! -f "$TF_CLI_CONFIG_FILE" ]; then
  for d in /opt/tf-plugins /usr/share/terraform/plugins /usr/local/share/terraform/plugins \
           "$HOME/.terraform.d/plugins" "$HOME/.local/share/terraform/plugins"; do
    if [ -d "$d/registry.terraform.io" ]; then
      export TF_CLI_CONFIG_FILE="$TARGET/k8s-terraform.rc"
      printf 'provider_installation {\n  filesystem_mirror {\n    path = "%s"\n  }\n}\n' "$d" > "$TF_CLI_CONFIG_FILE"
      echo "terraform: providers from the filesystem mirror $d"
      break
    fi
  done
fi
cd tests/k8s
exec "$VENV/bin/pytest" -v -rs -p no:cacheprovider "$@" .
