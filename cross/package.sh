#!/usr/bin/env bash
# Builds the Debian package of cloud-notify for a board (or this machine).
#
#   cross/package.sh amd64|aarch64|armv7
#
# Builds the release binary (cross/build.sh for ARM), writes the packaged configuration
# (the shipped defaults with data in /var/lib/cloud-notify), runs cargo-deb (installed
# with cargo when missing) and shows the package's metadata and contents.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
arch=${1:-}
case $arch in
  amd64|native) triple="" ;;
  aarch64|arm64) triple=aarch64-unknown-linux-gnu ;;
  armv7|armhf) triple=armv7-unknown-linux-gnueabihf ;;
  *) echo "usage: cross/package.sh amd64|aarch64|armv7" >&2; exit 2 ;;
esac
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked --version 3.8.0
bash packaging/packaged-config.sh
if [[ -z $triple ]]; then
  cargo build --release --bin cloud-notify
  deb=$(cargo deb --no-build --no-strip --output target/deb/ | tail -1)
else
  bash cross/build.sh "$arch"
  # cross/build.sh builds in target/cross; cargo-deb looks in target/<triple>/release.
  mkdir -p "target/$triple/release"
  cp "target/cross/$triple/release/cloud-notify" "target/$triple/release/cloud-notify"
  deb=$(cargo deb --no-build --no-strip --target "$triple" --output target/deb/ | tail -1)
fi
echo "package: $deb"
dpkg-deb --info "$deb"
dpkg-deb --contents "$deb"
