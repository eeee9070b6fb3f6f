#!/usr/bin/env bash
# Sets up the third-party XMPP software of the interop tests (tests/interop.rs), each
# pinned, and prints the lines that point the tests at it:
#   eval "$(bash .ci/interop-setup.sh)"
#
#   slixmpp       PyPI, in a virtualenv          -> CLOUD_NOTIFY_PYTHON
#                 (with cryptography, for the encrypted push test)
#   xmpp.js       npm (@xmpp/client, @xmpp/component, from
#                 tests/interop/xmppjs/package-lock.json) -> CLOUD_NOTIFY_XMPPJS, _NODE
#   go-sendxmpp   Debian package                 -> CLOUD_NOTIFY_GO_SENDXMPP
#   profanity     Debian package, with tmux      -> CLOUD_NOTIFY_PROFANITY, _TMUX
#   prosody       Debian package (the federation peer of tests/host/s2s_prosody*.rs,
#                 run by the tests with their own configuration; prosodyctl, next to
#                 it, makes its accounts) -> CLOUD_NOTIFY_PROSODY
#
# Idempotent: what is already there at the pinned version is reused without a word (no
# registry is asked then). Only the export lines go to stdout; everything else goes to
# stderr. A stack that cannot be set up stops the script with a message (exit 1): CI
# must run every interop test.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}"
say() { echo "interop-setup: $*" >&2; }

# -- slixmpp (PyPI) ----------------------------------------------------------------------
venv="$cache/cloud-notify-interop"
python="${PYTHON:-python3}"
# slixmpp and its dependencies, pinned (resolved with pip on Python 3.11).
requirements=(
  slixmpp==1.17.0
  aiodns==4.0.4
  pycares==5.2.1
  cffi==2.1.1
  pycparser==3.12
  pyasn1==0.6.5
  pyasn1_modules==0.4.2
  # The Tigase encrypted push test opens payloads with its AESGCM (OpenSSL's, in the
  # binary wheel): an AES-GCM nobody here wrote.
  cryptography==50.0.2
)
stamp="$venv/.cloud-notify-requirements"
want="$(printf '%s\n' "${requirements[@]}")"

slixmpp_ready() {
  [ -x "$venv/bin/python" ] &&
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
    "$venv/bin/python" -c 'import slixmpp, cryptography' >/dev/null 2>&1
}

if ! slixmpp_ready; then
  say "installing ${requirements[0]} into $venv"
  if ! [ -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv" >&2 || {
      say "'$python -m venv' failed (Debian: apt-get install python3-venv)"
      exit 1
    }
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-input "${requirements[@]}" >&2
  "$venv/bin/python" -c 'import slixmpp, sys; print("interop-setup: slixmpp", slixmpp.__version__, file=sys.stderr)'
  printf '%s\n' "$want" >"$stamp"
fi

# -- xmpp.js (npm) -----------------------------------------------------------------------
# @xmpp/client 0.14.0 and @xmpp/component 0.13.1 (the newest component published; there
# is no 0.14 of it), every dependency pinned by the lockfile, installed with `npm ci`
# into the cache (not the work tree), install scripts off.
xmppjs_src="$root/tests/interop/xmppjs"
xmppjs="$cache/cloud-notify-interop-xmppjs"
node="$(command -v node || true)"
if [ -z "$node" ] || ! command -v npm >/dev/null; then
  say "node and npm are needed for the xmpp.js interop test (Node >= 20.10)"
  exit 1
fi
node_major="$("$node" -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  say "node $("$node" --version) is too old for xmpp.js 0.14 (needs >= 20.10)"
  exit 1
fi
lock_sum="$(cat "$xmppjs_src/package.json" "$xmppjs_src/package-lock.json" | sha256sum | cut -d' ' -f1)"
xmppjs_ready() {
  [ -f "$xmppjs/.cloud-notify-lock" ] && [ "$(cat "$xmppjs/.cloud-notify-lock")" = "$lock_sum" ] &&
    [ -f "$xmppjs/node_modules/@xmpp/client/package.json" ] &&
    [ -f "$xmppjs/node_modules/@xmpp/component/package.json" ]
}
if ! xmppjs_ready; then
  say "installing @xmpp/client and @xmpp/component (npm ci) into $xmppjs"
  rm -rf "$xmppjs"
  mkdir -p "$xmppjs"
  cp "$xmppjs_src/package.json" "$xmppjs_src/package-lock.json" "$xmppjs/"
  (cd "$xmppjs" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
  printf '%s\n' "$lock_sum" >"$xmppjs/.cloud-notify-lock"
  say "xmpp.js: @xmpp/client $("$node" -p "require('$xmppjs/node_modules/@xmpp/client/package.json').version")," \
    "@xmpp/component $("$node" -p "require('$xmppjs/node_modules/@xmpp/component/package.json').version")"
fi

# -- Debian packages: go-sendxmpp; profanity driven through tmux; prosody ---------------
# Debian 12's versions. A machine with another version installed keeps it (said on
# stderr); a machine without a package gets the pinned one. apt-get update runs only
# when something is to be installed.
debs=(go-sendxmpp=0.5.6+git20221206.bbc83969-1+b6 profanity=0.13.1-2 tmux=3.3a-3
  prosody=0.12.3-1+deb12u1)
need=()
for pv in "${debs[@]}"; do
  pkg="${pv%%=*}" ver="${pv#*=}"
  have="$(dpkg-query -W -f='${Status} ${Version}' "$pkg" 2>/dev/null || true)"
  if [[ $have != "install ok installed "* ]] || ! command -v "$pkg" >/dev/null; then
    need+=("$pv")
  elif [ "${have##* }" != "$ver" ]; then
    say "$pkg ${have##* } is installed (pinned: $ver); using it"
  fi
done
if [ "${#need[@]}" -gt 0 ]; then
  say "installing ${need[*]} (apt)"
  if [ "$(id -u)" != 0 ]; then
    say "root is needed to install ${need[*]} (apt-get install)"
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  if ! apt-get install -y -qq --no-install-recommends "${need[@]}" >&2; then
    # The pinned version may have left the archive (a point release): take the current.
    apt-get install -y -qq --no-install-recommends "${need[@]%%=*}" >&2
  fi
  for pv in "${need[@]}"; do
    say "${pv%%=*} $(dpkg-query -W -f='${Version}' "${pv%%=*}")"
  done
fi

# The package starts a system-wide Prosody where a service manager runs; it would hold
# port 5269 on every address, which the federation test needs on 127.0.0.2. The test
# runs its own Prosody.
if command -v systemctl >/dev/null && systemctl is-active --quiet prosody 2>/dev/null; then
  say "stopping and disabling the system's prosody service (the tests run their own)"
  systemctl disable --now prosody >&2
fi

printf 'export CLOUD_NOTIFY_PYTHON=%q\n' "$venv/bin/python"
printf 'export CLOUD_NOTIFY_XMPPJS=%q\n' "$xmppjs"
printf 'export CLOUD_NOTIFY_NODE=%q\n' "$node"
printf 'export CLOUD_NOTIFY_GO_SENDXMPP=%q\n' "$(command -v go-sendxmpp)"
printf 'export CLOUD_NOTIFY_PROFANITY=%q\n' "$(command -v profanity)"
printf 'export CLOUD_NOTIFY_TMUX=%q\n' "$(command -v tmux)"
printf 'export CLOUD_NOTIFY_PROSODY=%q\n' "$(command -v prosody)"
