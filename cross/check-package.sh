#!/usr/bin/env bash
# CI: builds the Debian package around the debug binary `cargo test` already built (a
# release build would cost minutes of CI for the same contents) and checks its metadata
# and contents with dpkg-deb and lintian. Installs cargo-deb and lintian when missing.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
command -v cargo-deb >/dev/null || cargo install --quiet cargo-deb --locked --version 3.8.0
if ! command -v lintian >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lintian) >/dev/null
fi
bash packaging/packaged-config.sh
cargo build --quiet --bin cloud-notify
deb=$(cargo deb --no-build --no-strip --profile dev --fast --output target/deb/ 2>/dev/null | tail -1)
info=$(dpkg-deb --info "$deb")
contents=$(dpkg-deb --contents "$deb")
fail() { echo "package check: $*" >&2; exit 1; }
for path in ./usr/bin/cloud-notify ./etc/cloud-notify/cloud-notify.toml \
            ./usr/lib/systemd/system/cloud-notify.service ./usr/share/doc/cloud-notify/copyright; do
  grep -q " $path\$" <<<"$contents" || fail "missing $path"
done
grep -q -- "-rw-r----- .* ./etc/cloud-notify/cloud-notify.toml$" <<<"$contents" \
  || fail "the configuration must not be world-readable (component secrets)"
grep -q "^ Depends: .*adduser" <<<"$info" || fail "Depends lacks adduser"
# Unpacked once into files: piping `dpkg-deb | tar | grep -q` fails under pipefail whenever
# grep stops reading early (SIGPIPE up the pipe), a race that failed CI once.
unpacked=$(mktemp -d)
trap 'rm -rf "$unpacked"' EXIT
dpkg-deb --extract "$deb" "$unpacked/root"
dpkg-deb --control "$deb" "$unpacked/control"
grep -qx /etc/cloud-notify/cloud-notify.toml "$unpacked/control/conffiles" \
  || fail "the configuration is not a conffile"
config="$unpacked/root/etc/cloud-notify/cloud-notify.toml"
grep -qx 'data_dir = "/var/lib/cloud-notify"' "$config" || fail "packaged data_dir"
grep -qx 'c2s_listen = "0.0.0.0:5222"' "$config" \
  || fail "packaged server does not listen on the network"
grep -q " ./usr/share/doc/cloud-notify/examples/fail2ban-filter.conf\$" <<<"$contents" \
  || fail "missing the fail2ban filter"
grep -q '^ProtectSystem=strict' "$unpacked/root/usr/lib/systemd/system/cloud-notify.service" \
  || fail "unit is not sandboxed"
# Errors fail the check; warnings (an unstripped debug binary, for one) are shown.
lintian --fail-on error --suppress-tags unstripped-binary-or-object "$deb"
echo "package check: $deb OK"
