#!/usr/bin/env bash
# Kubernetes delivery tests: chart lint/template/schema, kubernetes-validate, checkov,
# terraform fmt/validate (test_lint.py), and the chart-runs system test
# (test_chart_runs.py: root + network namespaces, skipped loudly otherwise).
# Run from the repository root: bash tests/k8s/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
export CANDOR_BIN=${CANDOR_BIN:-$TARGET/debug/candor}
if [ ! -x "$CANDOR_BIN" ]; then
  cargo build -p candor
fi
VENV=${K8S_TEST_VENV:-$TARGET/k8s-venv}
if [ ! -x "$VENV/bin/pytest" ] || ! "$VENV/bin/python" -c 'import helm_python, kubernetes_validate, yaml' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -r tests/k8s/requirements.txt
fi
# Terraform: the aws provider from the machine's filesystem mirror, if any.
if [ -z "${TF_CLI_CONFIG_FILE:-}" ]; then
  for d in /opt/tf-plugins /usr/share/terraform/plugins "$HOME/.terraform.d/plugins"; do
    if [ -d "$d/registry.terraform.io" ]; then
      export TF_CLI_CONFIG_FILE="$TARGET/k8s-terraform.rc"
      printf 'provider_installation {\n  filesystem_mirror {\n    path = "%s"\n  }\n}\n' "$d" > "$TF_CLI_CONFIG_FILE"
      break
    fi
  done
fi
cd tests/k8s
exec "$VENV/bin/pytest" -v -rs -p no:cacheprovider "$@" .
