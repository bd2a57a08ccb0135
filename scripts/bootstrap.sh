#!/usr/bin/env bash
# Prepare a fresh Debian machine: a venv with citywifi installed, and with --test
# the test tools (pytest & co., Chromium, and the real peers of the interoperability
# tests: freeradius, freeradius-utils for radclient, radsecproxy; prometheus for promtool,
# prometheus-alertmanager for amtool; systemd for systemd-analyze/-sysusers/-tmpfiles;
# freeradius-redis and redis-server for bench.floors' and bench.side_by_side's FreeRADIUS
# + rlm_redis reference; libreoffice-calc-nogui to render the settlement workbook).
# Always: a C compiler and the Python headers for radius/_speedups.c (optional: without
# them `pip install .` still succeeds and the server runs the pure-Python data path).
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
missing_of() {
  local p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done
}
apt_install() {  # [--no-install-recommends] package...
  local opts=()
  [ "${1:-}" = --no-install-recommends ] && { opts+=("$1"); shift; }
  local missing=()
  mapfile -t missing < <(missing_of "$@")
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "bootstrap: installing Debian packages: ${missing[*]}" >&2
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${opts[@]}" "${missing[@]}" >/dev/null
}

# The peers the tests run themselves (tests/support/peers.py: their own configs, loopback ports).
# Debian starts and enables a package's service when it installs it; a test machine must
# not get a system-wide FreeRADIUS on 1812/1813 or a Prometheus on 9090. So service starts
# are refused during the install (policy-rc.d, exit 101: "action forbidden"), and the
# services that this run installed are disabled (on systemd and on sysv-rc alike).
PEERS=(freeradius freeradius-utils freeradius-redis redis-server radsecproxy prometheus prometheus-alertmanager systemd)
install_peers() {
  local fresh=() policy=/usr/sbin/policy-rc.d
  mapfile -t fresh < <(missing_of freeradius redis-server prometheus prometheus-alertmanager)
  [ -z "$(missing_of "${PEERS[@]}")" ] && return 0
  if [ ! -e "$policy" ]; then
    as_root sh -c "printf '#!/bin/sh\\nexit 101\\n' > $policy && chmod 755 $policy"
    trap 'as_root rm -f '"$policy" EXIT
  fi
  apt_install --no-install-recommends "${PEERS[@]}"
  local svc
  for svc in "${fresh[@]}"; do
    if [ -d /run/systemd/system ]; then
      as_root systemctl disable --now "$svc" >/dev/null 2>&1 || true
    elif command -v update-rc.d >/dev/null 2>&1; then
      as_root update-rc.d "$svc" disable >/dev/null 2>&1 || true
      as_root service "$svc" stop >/dev/null 2>&1 || true
    fi
  done
}

if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  apt_install python3-venv
fi
apt_install build-essential python3-dev  # builds radius/_speedups.c (optional extension)
if [ $want_test = 1 ]; then
  apt_install chromium fonts-wqy-microhei  # CJK font: readable zh screenshots
  # LibreOffice Calc without the GUI: renders the settlement workbook to PDF in its test
  apt_install --no-install-recommends libreoffice-calc-nogui
  apt_install eapoltest  # eapol_test: a real EAP peer (wpa_supplicant) for the EAP-TTLS tests
  apt_install faketime  # libfaketime: tests/test_clock_instants.py runs tests at local midnight
  install_peers
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
if [ $want_test = 1 ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
else
  .venv/bin/python -m pip install -q --disable-pip-version-check .
fi
