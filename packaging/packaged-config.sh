#!/usr/bin/env bash
# Writes the packaged configuration to target/deb/cloud-notify.toml: the shipped
# defaults with data in /var/lib/cloud-notify and clients served on every interface
# (phones reach a packaged server over the network; components stay on loopback), and
# the server-to-server listener on every interface (other servers and remote app servers
# reach it).
# Used by cross/package.sh and cross/check-package.sh.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$ROOT/target/deb"
sed -e 's|^data_dir = "data"|data_dir = "/var/lib/cloud-notify"|' \
    -e 's|^c2s_listen = "127.0.0.1:5222"|c2s_listen = "0.0.0.0:5222"|' \
    -e 's|^# s2s_listen = "127.0.0.1:5269"|s2s_listen = "0.0.0.0:5269"|' \
    "$ROOT/config/cloud-notify.toml" > "$ROOT/target/deb/cloud-notify.toml"
grep -qx 'data_dir = "/var/lib/cloud-notify"' "$ROOT/target/deb/cloud-notify.toml"
grep -qx 'c2s_listen = "0.0.0.0:5222"' "$ROOT/target/deb/cloud-notify.toml"
grep -qx 's2s_listen = "0.0.0.0:5269"' "$ROOT/target/deb/cloud-notify.toml"
