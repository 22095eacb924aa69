#!/usr/bin/env bash
# Installs what `make demo` and `make test` need beyond the Rust toolchain:
# a few Debian packages, rustfmt and clippy, and a project-local Python venv
# (.venv). `--build-only` (make demo) puts only the ONNX Runtime library in
# it (scripts/requirements-run.txt: `twin` loads it when a config has
# models); the full set-up adds the packages the tests' peers and the model
# scripts use (scripts/requirements-test.txt, which includes the former).
# Idempotent: does nothing when everything is already there. A warm run
# takes well under a second; the venv is reinstalled only when a
# requirements file changes.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv"
req_run="$root/scripts/requirements-run.txt"
req="$root/scripts/requirements-test.txt"
# Hashes of the requirements the venv was last installed from: the run-time
# set alone, and the whole test set (which includes the run-time set).
stamp_run="$venv/.requirements-run.sha256"
stamp="$venv/.requirements.sha256"

apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing $* with apt-get" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
# `--build-only` (make demo): just what building and running needs.
build_only=false
[ "${1:-}" = "--build-only" ] && build_only=true
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-venv)

if ((${#need_apt[@]})); then
  apt_install "${need_apt[@]}"
fi

if command -v rustup >/dev/null 2>&1; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
  done
fi

# --- Python venv: the ONNX Runtime library; the tests' peers -----------------

venv_ok() {
  [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import pip' >/dev/null 2>&1
}

if ! venv_ok; then
  echo "setup: creating the Python venv at .venv" >&2
  rm -rf "$venv"
  # Debian splits venv's ensurepip into python3-venv; without it venv fails
  # and leaves a venv without pip behind.
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    rm -rf "$venv"
    apt_install python3-venv
    py=python3
    # A python3 from elsewhere on PATH (pyenv, a build) does not gain
    # ensurepip from Debian's package; Debian's own python3 does.
    python3 -c 'import ensurepip' >/dev/null 2>&1 || py=/usr/bin/python3
    "$py" -m venv "$venv"
  fi
  venv_ok || { echo "setup: the venv at .venv has no pip; giving up" >&2; exit 1; }
fi

# Installs requirements file $1 when its hash (with the files it includes and
# the venv's Python version) differs from stamp file $2.
want_of() {
  echo "$(cat "$1" "$req_run" | sha256sum | cut -d' ' -f1) $("$venv/bin/python" -V 2>&1)"
}
pip_install() {
  local file="$1" stamp_file="$2" what="$3" want
  want="$(want_of "$file")"
  if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$want" ]; then
    echo "setup: $what are up to date (.venv)" >&2
    return
  fi
  echo "setup: installing $what into .venv from scripts/$(basename "$file")" >&2
  "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$file"
  # torch is never to be installed (size, and nothing may depend on it).
  if "$venv/bin/python" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is None)'; then
    echo "setup: torch ended up in .venv, pulled in by a requirement; remove that requirement" >&2
    exit 1
  fi
  echo "$want" >"$stamp_file"
  echo "setup: $what installed" >&2
}

if $build_only; then
  pip_install "$req_run" "$stamp_run" "Python run-time packages (ONNX Runtime)"
  exit 0
fi

# --- MQTT broker and clients for the MQTT tests (tests/it/mqtt.rs) ----------
# (openssl also makes the HTTPS tests' certificates, src/http/tls_tests.rs.)
# The tests start their own mosquitto per test; the package's service is not
# used. mosquitto lives in /usr/sbin, which a non-root PATH may lack.
need_mqtt=()
{ command -v mosquitto || [ -x /usr/sbin/mosquitto ]; } >/dev/null 2>&1 || need_mqtt+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need_mqtt+=(mosquitto-clients)
command -v openssl >/dev/null 2>&1 || need_mqtt+=(openssl)
if ((${#need_mqtt[@]})); then
  apt_install "${need_mqtt[@]}"
fi

# --- Headless Chromium for the report test (tests/it/report.rs) ------------
# The test renders `twin report`'s page and looks at the screenshot; only
# tests need it, never the twin.
command -v chromium >/dev/null 2>&1 || apt_install chromium

# --- promtool for the /metrics test (tests/it/http.rs) ----------------------
# Debian's prometheus package carries promtool; the server it also installs is
# not used.
command -v promtool >/dev/null 2>&1 || apt_install prometheus

pip_install "$req" "$stamp" "Python test packages"
# The test set includes the run-time set: a later --build-only has nothing to do.
want_of "$req_run" >"$stamp_run"
