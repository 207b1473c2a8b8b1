#!/usr/bin/env bash
# CI: build the Debian package with cargo-deb, install it, check what it put where (binary, unit, conffile,
# docs, the longconn user in group zeek, the config readable by that user), verify the installed unit, then
# remove and purge it and check nothing is left. Run as root on a Debian-like machine (CI is).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
start=$(date +%s)
fail() { echo "package-test: FAIL: $*" >&2; exit 1; }

if ! command -v cargo-deb >/dev/null; then
  cargo install cargo-deb --locked --quiet
fi
deb=target/debian/longconn.deb
# --reuse-build (from .ci/run, right after `cargo test --release`): package the release binary just built
# rather than building it again (cargo test's feature set differs, so cargo deb would rebuild: ~1 min).
if [ "${1:-}" = "--reuse-build" ] && [ -x target/release/longconn ]; then
  cargo deb --quiet --no-build --output "$deb"
else
  cargo deb --quiet --output "$deb"
fi
[ -s "$deb" ] || fail "no package built"

# A clean slate, and a zeek group (as on a sensor) so the membership path is exercised.
dpkg -P longconn >/dev/null 2>&1 || true
made_zeek=0
if ! getent group zeek >/dev/null; then groupadd --system zeek; made_zeek=1; fi
cleanup() { if [ "$made_zeek" = 1 ]; then groupdel zeek 2>/dev/null || true; fi; }
trap cleanup EXIT

dpkg -i "$deb" >/dev/null
[ -x /usr/bin/longconn ] || fail "binary missing"
/usr/bin/longconn --version >/dev/null
unit=$(dpkg -L longconn | grep '/systemd/system/longconn.service$' || true)
[ -n "$unit" ] && [ -f "$unit" ] || fail "unit missing"
[ -f /usr/share/doc/longconn/README.md ] || fail "README missing"
[ -f /usr/share/doc/longconn/copyright ] || fail "copyright missing"
dpkg-query -W -f='${Conffiles}\n' longconn | grep -q '/etc/longconn/longconn.toml' || fail "config is not a conffile"
[ "$(stat -c '%U:%G %a' /etc/longconn/longconn.toml)" = "root:longconn 640" ] || fail "config owner/mode: $(stat -c '%U:%G %a' /etc/longconn/longconn.toml)"
getent passwd longconn >/dev/null || fail "user longconn missing"
id -nG longconn | tr ' ' '\n' | grep -qx zeek || fail "longconn is not in group zeek"
# What ExecStartPre runs, as the service user: the shipped config must be valid and readable by it.
setpriv --reuid=longconn --regid=longconn --init-groups /usr/bin/longconn check --quiet --config /etc/longconn/longconn.toml \
  || fail "shipped config does not pass check as user longconn"
out=$(systemd-analyze verify "$unit" 2>&1 || true)
[ -z "$out" ] || fail "systemd-analyze verify $unit: $out"

dpkg -r longconn >/dev/null
[ ! -e /usr/bin/longconn ] || fail "binary left after remove"
[ ! -e "$unit" ] || fail "unit left after remove"
[ -f /etc/longconn/longconn.toml ] || fail "remove (not purge) must keep the conffile"
dpkg -P longconn >/dev/null
[ ! -e /etc/longconn ] || fail "/etc/longconn left after purge"
[ ! -e /var/lib/longconn ] || fail "/var/lib/longconn left after purge"
[ ! -e /usr/share/doc/longconn ] || fail "docs left after purge"
if dpkg-query -W -f='${Status}' longconn 2>/dev/null | grep -q installed; then fail "still installed"; fi
# The system user stays on purge (Debian practice); drop it here so the next run starts clean.
userdel longconn 2>/dev/null || true
getent group longconn >/dev/null && groupdel longconn 2>/dev/null || true

echo "package-test: ok: $(basename "$deb") $(stat -c %s "$deb") bytes; installed, checked, removed, purged in $(( $(date +%s) - start ))s"
