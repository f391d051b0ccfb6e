#!/usr/bin/env bash
# Everything the server and its tests need on a fresh Debian 12 / Ubuntu machine (as root):
# Debian packages, a virtual environment with the pinned Python packages, Asterisk 22 and
# ivr.toml from the example. Idempotent and quick on a second run (stamps in .venv/).
#   deploy/setup.sh          what the server needs
#   deploy/setup.sh --test   ...and the test tools
set -euo pipefail
cd "$(dirname "$0")/.."
WITH_TEST=0
[ "${1:-}" = "--test" ] && WITH_TEST=1

say() { echo "setup: $*" >&2; }
[ "$(id -u)" = 0 ] || { say "run as root (it installs Debian packages and runs Asterisk chrooted)"; exit 1; }

packages=(python3 python3-venv python3-dev espeak-ng libespeak-ng1 sip-tester debootstrap debian-archive-keyring util-linux ca-certificates)
# The store tests run every store test on PostgreSQL too (a throw-away server per test run).
[ $WITH_TEST = 1 ] && packages+=(postgresql)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    "$PY" -m venv .venv
fi
extras=""
stamp=.venv/.installed
if [ $WITH_TEST = 1 ]; then
    extras="[test]"
    stamp=.venv/.installed-test
fi
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$want" ]; }
# The test install is a superset: `make run` after `make test` installs nothing again.
if stamp_ok "$stamp" || { [ $WITH_TEST = 0 ] && stamp_ok .venv/.installed-test; }; then
    :
else
    say "installing Python packages (pinned in pyproject.toml)"
    .venv/bin/pip install -q --disable-pip-version-check -e ".$extras"
    echo "$want" > "$stamp"
fi

deploy/asterisk.sh provision >&2

if [ ! -f ivr.toml ]; then
    cp ivr.example.toml ivr.toml
    say "created ivr.toml from ivr.example.toml"
fi
