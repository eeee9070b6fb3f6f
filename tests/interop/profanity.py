#!/usr/bin/env python3
"""Interop: profanity (a console client people run; libstrophe inside) against cloud-notify.

profanity runs in a tmux pane of a private tmux server (its own socket, killed at the
end), typed into with send-keys and read with capture-pane and its DEBUG log, which holds
every element libstrophe sent and received. The peer is slixmpp (romeo).

Steps (`STEP <name>: PASS|FAIL|SKIP <detail>`, read by tests/interop.rs):
1. login over STARTTLS (the user accepts the self-signed certificate with /tls allow,
   as a person would): SASL mechanism and XEP-0198 from the log;
2. a message from romeo shows in profanity;
3. /msg from profanity reaches romeo;
4. login over direct TLS (XEP-0368: profanity's tls policy 'legacy');
and `MISSING profanity: <request> answered <condition>` for every IQ profanity sent at
login that the server refused (carbons, bookmarks, disco items, ...).

Exit 0 when no step failed. Every wait polls the pane or the log with a deadline.
"""

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from slixmpp import ClientXMPP

DOMAIN = "localhost"
STEP_TIMEOUT = 20.0
TOTAL_TIMEOUT = 100.0

results = {}
missing = {}
started = time.monotonic()


def say(line):
    print(f"[{time.monotonic() - started:6.2f}s] {line}", flush=True)


def report(name, status, detail=""):
    results[name] = status
    print(f"STEP {name}: {status}{(' ' + detail) if detail else ''}", flush=True)


class Fail(Exception):
    pass


async def step(name, needs, fn):
    blocked = [n for n in needs if results.get(n) != "PASS"]
    if blocked:
        report(name, "SKIP", f"(needs: {', '.join(blocked)})")
        return False
    try:
        report(name, "PASS", (await fn()) or "")
        return True
    except Fail as e:
        report(name, "FAIL", " ".join(str(e).split()))
    except Exception as e:  # noqa: BLE001 - any crash is this step's failure
        report(name, "FAIL", f"{type(e).__name__}: {' '.join(str(e).split())}")
    return False


async def poll(what, fn, timeout=STEP_TIMEOUT, interval=0.1):
    """A bounded polling loop for state no event announces (a terminal, a log file)."""
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise Fail(f"{what}: not within {timeout:.0f} s")
        await asyncio.sleep(interval)


class Profanity:
    """profanity in a private tmux server; one account per login."""

    def __init__(self, args, home):
        self.args = args
        self.home = Path(home)
        self.socket = self.home / "tmux.sock"
        self.log = self.home / "profanity.log"
        self.env = dict(os.environ, HOME=str(self.home), LANG="C.UTF-8", LC_ALL="C.UTF-8",
                        XDG_CONFIG_HOME=str(self.home / ".config"),
                        XDG_DATA_HOME=str(self.home / ".local/share"), TERM="xterm-256color")
        self.env.pop("TMUX", None)
        (self.home / ".config/profanity").mkdir(parents=True, exist_ok=True)
        (self.home / ".local/share/profanity").mkdir(parents=True, exist_ok=True)
        # No splash, no desktop notifications; nothing else differs from a user's setup.
        (self.home / ".config/profanity/profrc").write_text(
            "[ui]\nsplash=false\n[notifications]\nmessage=false\nroom=false\ninvite=false\nsub=false\n")
        self.accounts = []

    def add_account(self, name, user, port, tls_policy):
        self.accounts.append(
            f"[{name}]\nenabled=true\njid={user}@{DOMAIN}\nserver={DOMAIN}\nport={port}\n"
            f"resource={name.split('-')[-1]}\npassword={user}-pw\ntls.policy={tls_policy}\n")
        (self.home / ".local/share/profanity/accounts").write_text("\n".join(self.accounts))

    def tmux(self, *argv, check=True):
        return subprocess.run([self.args.tmux, "-S", str(self.socket), *argv], env=self.env,
                              capture_output=True, text=True, check=check, timeout=10)

    def start(self, account):
        if self.log.exists():
            self.log.unlink()
        self.tmux("new-session", "-d", "-s", "p", "-x", "200", "-y", "50",
                  f"{self.args.profanity} -a {account} -l DEBUG -f {self.log}")

    def screen(self):
        r = self.tmux("capture-pane", "-p", "-J", "-S", "-2000", "-t", "p", check=False)
        return r.stdout if r.returncode == 0 else ""

    def logtext(self):
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def type(self, line):
        self.tmux("send-keys", "-t", "p", "-l", line)
        self.tmux("send-keys", "-t", "p", "Enter")

    def running(self):
        return self.tmux("has-session", "-t", "p", check=False).returncode == 0

    async def quit(self):
        if self.running():
            self.type("/quit")
            try:
                await poll("profanity quits", lambda: not self.running(), timeout=10)
            except Fail:
                self.tmux("kill-session", "-t", "p", check=False)

    def kill_server(self):
        self.tmux("kill-server", check=False)

    async def login(self, account):
        self.start(account)
        # The certificate is self-signed: profanity asks, the user allows it once.
        seen = await poll("the certificate prompt or a login",
                          lambda: re.search(r"/tls allow|logged in successfully|Login failed|"
                                            r"Connection failed|Could not connect", self.screen()))
        if seen.group(0) == "/tls allow":
            self.type("/tls allow")
        await poll("'logged in successfully' on screen",
                   lambda: re.search(r"logged in successfully|Login failed|Connection failed",
                                     self.screen()))
        if "logged in successfully" not in self.screen():
            raise Fail(f"login failed: {tail(self.screen())}")


def tail(text, n=700):
    text = " | ".join(line.strip() for line in text.splitlines() if line.strip())
    return text[-n:] if text else "(nothing)"


def sent_and_received(log):
    sent = re.findall(r"SENT: (.*)$", log, re.M)
    recv = re.findall(r"RECV: (.*)$", log, re.M)
    return sent, recv


def note_missing(log):
    """Every IQ profanity sent that the server answered with an error, by payload."""
    sent, recv = sent_and_received(log)
    requests = {}
    for s in sent:
        m = re.match(r"<iq [^>]*id=\"([^\"]+)\"[^>]*type=\"(get|set)\"[^>]*>\s*<(\w+)[^>]*xmlns=\"([^\"]+)\"(.*)", s)
        if not m:
            m2 = re.match(r"<iq [^>]*type=\"(get|set)\"[^>]*id=\"([^\"]+)\"[^>]*>\s*<(\w+)[^>]*xmlns=\"([^\"]+)\"(.*)", s)
            if not m2:
                continue
            kind, iq_id, name, ns, rest = m2.groups()
        else:
            iq_id, kind, name, ns, rest = m.groups()
        to = re.search(r"to=\"([^\"]+)\"", s)
        inner = re.search(r"<(\w+) xmlns=\"([^\"]+)\"", rest)
        what = f"{kind} <{name} xmlns='{ns}'/>"
        if inner:
            what += f" <{inner.group(1)} xmlns='{inner.group(2)}'/>"
        if to:
            what += f" to {to.group(1)}"
        requests[iq_id] = what
    for r in recv:
        m = re.match(r"<iq [^>]*>", r)
        if not m or 'type="error"' not in m.group(0):
            continue
        iq_id = re.search(r"id=\"([^\"]+)\"", m.group(0))
        cond = re.search(r"<([a-z-]+) xmlns=\"urn:ietf:params:xml:ns:xmpp-stanzas\"", r)
        if iq_id and iq_id.group(1) in requests:
            missing[requests[iq_id.group(1)]] = cond.group(1) if cond else "error"


async def scenario(args):
    home = tempfile.mkdtemp(prefix="profanity-home-")
    prof = Profanity(args, home)
    version = subprocess.run([args.profanity, "--version"], capture_output=True, text=True,
                             timeout=10).stdout.splitlines()
    say(f"{version[0] if version else 'profanity ?'}")
    prof.add_account("juliet-starttls", "juliet", args.c2s_port, "force")
    prof.add_account("juliet-direct", "juliet", args.tls_port, "legacy")

    romeo = ClientXMPP(f"romeo@{DOMAIN}/peer", "romeo-pw")
    romeo.enable_direct_tls = False
    romeo.enable_starttls = True
    romeo.enable_plaintext = False
    romeo.ca_certs = Path(args.ca_cert)
    inbox = []
    started_ev = asyncio.Event()
    romeo.add_event_handler("session_start", lambda _: started_ev.set())
    romeo.add_event_handler("message", lambda m: inbox.append(m))
    romeo.connect(args.host, args.c2s_port)
    try:
        await asyncio.wait_for(started_ev.wait(), STEP_TIMEOUT)
    except asyncio.TimeoutError:
        raise Fail("the slixmpp peer romeo did not log in")
    romeo.send_presence()

    try:
        async def login_starttls():
            await prof.login("juliet-starttls")
            log = prof.logtext()
            mech = re.search(r"SENT: <auth [^>]*mechanism=\"([A-Z0-9-]+)\"", log)
            if not re.search(r"SENT: <starttls ", log):
                raise Fail("no STARTTLS in the log")
            sm = "XEP-0198 enabled" if re.search(r"RECV: <enabled [^>]*urn:xmpp:sm:3", log) else "no XEP-0198"
            return f"SASL {mech.group(1) if mech else '?'}, {sm}"

        await step("login over STARTTLS", [], login_starttls)
        login = "login over STARTTLS"

        async def receive():
            body = f"to profanity {uuid.uuid4().hex[:8]}"
            romeo.send_message(mto=f"juliet@{DOMAIN}/starttls", mbody=body, mtype="chat")
            await poll("the message in profanity's log",
                       lambda: re.search(rf"RECV: <message [^>]*>.*<body>{body}</body>", prof.logtext()))
            # A new chat opens as a window of its own; the console says it arrived.
            await poll("the message announced on screen",
                       lambda: "romeo@localhost" in prof.screen())
            return ""

        await step("a message from slixmpp shows in profanity", [login], receive)

        async def send():
            body = f"from profanity {uuid.uuid4().hex[:8]}"
            prof.type(f"/msg romeo@{DOMAIN} {body}")
            await poll("the message at romeo", lambda: any(m["body"] == body for m in inbox))
            m = next(m for m in inbox if m["body"] == body)
            return f"from {m['from']}"

        await step("/msg from profanity reaches slixmpp", [login], send)
        note_missing(prof.logtext())
        await prof.quit()

        async def login_direct():
            await prof.login("juliet-direct")
            log = prof.logtext()
            if re.search(r"SENT: <starttls ", log):
                raise Fail("STARTTLS inside direct TLS")
            mech = re.search(r"SENT: <auth [^>]*mechanism=\"([A-Z0-9-]+)\"", log)
            return f"SASL {mech.group(1) if mech else '?'}"

        await step("login over direct TLS (XEP-0368, tls policy 'legacy')", [], login_direct)
        note_missing(prof.logtext())
        await prof.quit()
    finally:
        if any(s == "FAIL" for s in results.values()):
            sys.stderr.write(f"---- profanity screen ----\n{prof.screen()}\n")
            sys.stderr.write(f"---- profanity log (tail) ----\n{prof.logtext()[-30000:]}\n")
        elif args.verbose:
            sys.stderr.write(f"---- profanity log ----\n{prof.logtext()}\n")
        prof.kill_server()
        done = asyncio.Event()
        romeo.add_event_handler("disconnected", lambda _: done.set())
        romeo.disconnect(wait=2.0)
        try:
            await asyncio.wait_for(done.wait(), 5)
        except asyncio.TimeoutError:
            pass
        shutil.rmtree(home, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--c2s-port", type=int, required=True)
    ap.add_argument("--tls-port", type=int, required=True)
    ap.add_argument("--ca-cert", required=True)
    ap.add_argument("--profanity", default="profanity")
    ap.add_argument("--tmux", default="tmux")
    ap.add_argument("--verbose", action="store_true",
                    default=bool(os.environ.get("CLOUD_NOTIFY_INTEROP_VERBOSE")))
    args = ap.parse_args()

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    crashed = None
    try:
        loop.run_until_complete(asyncio.wait_for(scenario(args), TOTAL_TIMEOUT))
    except Fail as e:
        crashed = str(e)
    except asyncio.TimeoutError:
        crashed = f"scenario did not finish within {TOTAL_TIMEOUT:.0f} s"
    except Exception as e:  # noqa: BLE001
        import traceback

        crashed = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
    if crashed:
        print(f"FAIL: scenario stopped: {crashed}", flush=True)
    for what, cond in missing.items():
        print(f"MISSING profanity: {what} answered {cond}", flush=True)
    failed = [n for n, s in results.items() if s == "FAIL"]
    if failed or crashed:
        for n in failed:
            print(f"FAIL: {n}", flush=True)
        sys.exit(1)
    say("PASS: profanity interop")
    sys.exit(0)


if __name__ == "__main__":
    main()
