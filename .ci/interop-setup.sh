#!/usr/bin/env bash
# Sets up the slixmpp interop client (tests/interop.rs) in a virtualenv from PyPI and
# prints the line that points the test at it:
#   eval "$(bash .ci/interop-setup.sh)"
# Idempotent: an existing venv with the pinned versions is reused without a word.
# Only the export line goes to stdout; everything else goes to stderr.
set -euo pipefail

venv="${XDG_CACHE_HOME:-$HOME/.cache}/cloud-notify-interop"
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
)
stamp="$venv/.cloud-notify-requirements"
want="$(printf '%s\n' "${requirements[@]}")"

ready() {
  [ -x "$venv/bin/python" ] &&
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
    "$venv/bin/python" -c 'import slixmpp' >/dev/null 2>&1
}

if ! ready; then
  echo "interop-setup: installing ${requirements[0]} into $venv" >&2
  if ! [ -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv" >&2 || {
      echo "interop-setup: '$python -m venv' failed (Debian: apt-get install python3-venv)" >&2
      exit 1
    }
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-input "${requirements[@]}" >&2
  "$venv/bin/python" -c 'import slixmpp, sys; print("interop-setup: slixmpp", slixmpp.__version__, file=sys.stderr)'
  printf '%s\n' "$want" >"$stamp"
fi

printf 'export CLOUD_NOTIFY_PYTHON=%q\n' "$venv/bin/python"
