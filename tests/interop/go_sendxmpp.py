#!/usr/bin/env python3
"""Interop: go-sendxmpp (Debian's package; go-xmpp inside) against cloud-notify.

go-sendxmpp is a command-line client: it logs in, sends or listens, and quits. Its peer
here is slixmpp (romeo, and juliet's watching resource), so a step fails for
go-sendxmpp's sake only.

Steps (each printed as `STEP <name>: PASS|FAIL|SKIP|N/A <detail>`, read by
tests/interop.rs):
1. send over STARTTLS: juliet -> romeo, romeo receives it;
2. send over direct TLS (XEP-0368, -t);
3. listen mode (-l): go-sendxmpp logs in as juliet, its presence reaches juliet's other
   (slixmpp) resource, romeo writes to that full JID, go-sendxmpp prints the message;
4. listen mode gets a message stored offline while no juliet resource was online.
SCRAM is N/A: Debian 12's go-sendxmpp (0.5.6+git20221206) is built with a go-xmpp
that knows PLAIN, DIGEST-MD5 and X-OAUTH2 only, so it logs in with PLAIN (inside TLS).
Also `MISSING go-sendxmpp: ...` for what it asked for at login that the server did not
serve (read from its --debug XML and the answers).

Exit 0 when no step failed; every wait has a deadline.
"""

import argparse
import asyncio
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

from slixmpp import ClientXMPP

DOMAIN = "localhost"
STEP_TIMEOUT = 20.0
TOTAL_TIMEOUT = 90.0

results = {}
missing = []
started = time.monotonic()
logs = []  # (name, text): go-sendxmpp's output per run, printed when a step fails


def say(line):
    print(f"[{time.monotonic() - started:6.2f}s] {line}", flush=True)


def report(name, status, detail=""):
    results[name] = status
    print(f"STEP {name}: {status}{(' ' + detail) if detail else ''}", flush=True)


class Fail(Exception):
    pass


async def step(name, needs, coro_fn):
    blocked = [n for n in needs if results.get(n) != "PASS"]
    if blocked:
        report(name, "SKIP", f"(needs: {', '.join(blocked)})")
        return False
    try:
        detail = await coro_fn()
        report(name, "PASS", detail or "")
        return True
    except Fail as e:
        report(name, "FAIL", " ".join(str(e).split()))
    except Exception as e:  # noqa: BLE001 - any crash is this step's failure
        report(name, "FAIL", f"{type(e).__name__}: {' '.join(str(e).split())}")
    return False


class Peer:
    """A slixmpp client that records messages and presences."""

    def __init__(self, jid, password, args):
        self.x = ClientXMPP(jid, password)
        self.x.register_plugin("xep_0030")
        self.x.register_plugin("xep_0199")
        self.x.enable_direct_tls = False
        self.x.enable_starttls = True
        self.x.enable_plaintext = False
        self.x.ca_certs = Path(args.ca_cert)
        self.messages = []
        self.presences = []
        self.changed = asyncio.Event()
        self.started = asyncio.Event()
        self.x.add_event_handler("session_start", lambda _: self.started.set())
        self.x.add_event_handler("message", self._on_message)
        self.x.add_event_handler("presence", self._on_presence)
        self.host, self.port = args.host, args.c2s_port

    def _on_message(self, msg):
        self.messages.append(msg)
        self.changed.set()

    def _on_presence(self, pres):
        self.presences.append(pres)
        self.changed.set()

    async def start(self):
        self.x.connect(self.host, self.port)
        try:
            await asyncio.wait_for(self.started.wait(), STEP_TIMEOUT)
        except asyncio.TimeoutError:
            raise Fail(f"slixmpp peer {self.x.boundjid} did not log in")
        self.x.send_presence()

    async def wait(self, what, pred, timeout=STEP_TIMEOUT, abort=None):
        """The first message or presence `pred` accepts; `abort()` returning a reason
        ends the wait early (checked whenever something changes)."""
        deadline = time.monotonic() + timeout
        while True:
            for item in list(self.messages) + list(self.presences):
                if pred(item):
                    return item
            why = abort() if abort else None
            if why:
                raise Fail(f"{what}: {why}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise Fail(f"{what}: nothing within {timeout:.0f} s")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def stop(self):
        done = asyncio.Event()
        self.x.add_event_handler("disconnected", lambda _: done.set())
        self.x.disconnect(wait=2.0)
        try:
            await asyncio.wait_for(done.wait(), 5)
        except asyncio.TimeoutError:
            pass


class GoSendxmpp:
    """One go-sendxmpp process; its output is kept for the report."""

    def __init__(self, args, home):
        self.args = args
        self.env = dict(os.environ)
        # Go reads extra trust anchors from SSL_CERT_FILE: verification stays on.
        self.env["SSL_CERT_FILE"] = args.ca_cert
        self.env["HOME"] = home  # no user config file is read or written elsewhere

    def argv(self, user, port, *extra, tls=False):
        # The server is named by the domain (the certificate's name); localhost resolves
        # to 127.0.0.1 where the server listens.
        argv = [self.args.go_sendxmpp, "--debug", "-u", f"{user}@{DOMAIN}", "-p", f"{user}-pw",
                "-j", f"{DOMAIN}:{port}", "--timeout", "10"]
        if tls:
            argv.append("-t")
        return argv + list(extra)

    async def run(self, name, argv, stdin=None, timeout=STEP_TIMEOUT):
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env=self.env)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            out, _ = await proc.communicate()
            logs.append((name, out.decode(errors="replace")))
            raise Fail(f"go-sendxmpp did not finish within {timeout:.0f} s; output: {tail(out)}")
        text = out.decode(errors="replace")
        logs.append((name, text))
        return proc.returncode, text

    async def start(self, name, argv):
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env=self.env)
        return Listener(name, proc)


class Listener:
    """go-sendxmpp --listen, its output read as it comes."""

    def __init__(self, name, proc):
        self.name, self.proc = name, proc
        self.out = ""
        self.changed = asyncio.Event()
        self.on_change = None  # another waiter's event to set as well
        self.reader = asyncio.ensure_future(self._read())

    def _wake(self):
        self.changed.set()
        if self.on_change is not None:
            self.on_change.set()

    async def _read(self):
        while True:
            chunk = await self.proc.stdout.read(4096)
            if not chunk:
                break
            self.out += chunk.decode(errors="replace")
            self._wake()
        await self.proc.wait()
        self._wake()

    async def wait_for(self, what, text, timeout=STEP_TIMEOUT):
        deadline = time.monotonic() + timeout
        while text not in self.out:
            if self.reader.done():  # output read to its end and the process reaped
                raise Fail(f"{what}: go-sendxmpp exited ({self.proc.returncode}) first; output: {tail(self.out)}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise Fail(f"{what}: not within {timeout:.0f} s; output: {tail(self.out)}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def stop(self):
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        await self.reader
        logs.append((self.name, self.out))


def tail(out, n=600):
    if isinstance(out, bytes):
        out = out.decode(errors="replace")
    out = " | ".join(line for line in out.splitlines() if line.strip())
    return out[-n:] if out else "(nothing)"


def note_missing(text):
    """IQs go-sendxmpp sent (its --debug XML) and the errors the server answered."""
    for m in re.finditer(r"<iq[^>]*type=['\"]error['\"][^>]*>.*?</iq>", text, re.S):
        cond = re.search(r"<([a-z-]+) xmlns=['\"]urn:ietf:params:xml:ns:xmpp-stanzas['\"]", m.group(0))
        sent = re.search(r"<(\w+) xmlns=['\"]([^'\"]+)['\"]", m.group(0))
        what = f"<{sent.group(1)} xmlns='{sent.group(2)}'/>" if sent else m.group(0)[:120]
        line = f"{what} answered {cond.group(1) if cond else 'with an error'}"
        if line not in missing:
            missing.append(line)


async def scenario(args):
    home = tempfile.mkdtemp(prefix="go-sendxmpp-home-")
    try:
        await run_steps(args, GoSendxmpp(args, home))
    finally:
        shutil.rmtree(home, ignore_errors=True)


async def run_steps(args, gs):
    _, version = await gs.run("version", [args.go_sendxmpp, "--version"], timeout=10)
    say(f"go-sendxmpp {version.strip().splitlines()[0] if version.strip() else '?'}")

    romeo = Peer(f"romeo@{DOMAIN}/peer", "romeo-pw", args)
    await romeo.start()
    say("slixmpp peer romeo online")

    async def send(tls):
        body = f"go-sendxmpp {'direct TLS' if tls else 'STARTTLS'} {uuid.uuid4().hex[:8]}"
        port = args.tls_port if tls else args.c2s_port
        rc, out = await gs.run("send (direct TLS)" if tls else "send (STARTTLS)",
                               gs.argv("juliet", port, f"romeo@{DOMAIN}", tls=tls), stdin=body + "\n")
        note_missing(out)
        if rc != 0:
            raise Fail(f"exit {rc}: {tail(out)}")
        msg = await romeo.wait("the message at romeo",
                               lambda m: m.name == "message" and m["body"].strip() == body)
        sender = str(msg["from"])
        if not sender.startswith(f"juliet@{DOMAIN}/"):
            raise Fail(f"from {sender}")
        return f"from {sender}"

    await step("send over STARTTLS (SASL PLAIN)", [], lambda: send(False))
    await step("send over direct TLS (XEP-0368, SASL PLAIN)", [], lambda: send(True))
    report("login with SCRAM", "N/A",
           "this go-sendxmpp's go-xmpp offers PLAIN, DIGEST-MD5 and X-OAUTH2 only; it uses PLAIN")

    # -- listen mode, live: juliet's other resource sees go-sendxmpp come online ------------
    watch = Peer(f"juliet@{DOMAIN}/watch", "juliet-pw", args)
    await watch.start()

    async def listen_live():
        listener = await gs.start("listen", gs.argv("juliet", args.c2s_port, "--listen"))
        try:
            def exited():
                # go-sendxmpp quitting first (a failed login) ends the wait at once.
                if listener.reader.done():
                    return f"go-sendxmpp exited ({listener.proc.returncode}) first; output: {tail(listener.out)}"
                return None

            listener.on_change = watch.changed  # its output and exit wake the waiter too
            pres = await watch.wait(
                "go-sendxmpp's presence at juliet's other resource",
                lambda p: p.name == "presence" and str(p["from"]).startswith(f"juliet@{DOMAIN}/")
                and str(p["from"]) != f"juliet@{DOMAIN}/watch" and p["type"] in ("available", ""),
                abort=exited)
            full = str(pres["from"])
            body = f"to go-sendxmpp {uuid.uuid4().hex[:8]}"
            romeo.x.send_message(mto=full, mbody=body, mtype="chat")
            await listener.wait_for("the message printed by go-sendxmpp --listen", body)
            return f"as {full}"
        finally:
            await listener.stop()
            note_missing(listener.out)

    await step("listen mode receives a message (-l)", [], listen_live)
    await watch.stop()

    # -- listen mode, offline: stored while no juliet resource was online -----------------
    async def listen_offline():
        body = f"stored for juliet {uuid.uuid4().hex[:8]}"
        romeo.x.send_message(mto=f"juliet@{DOMAIN}", mbody=body, mtype="chat")
        # Stored, not bounced: an error would come back to romeo.
        listener = await gs.start("listen (offline)", gs.argv("juliet", args.c2s_port, "--listen"))
        try:
            await listener.wait_for("the stored message printed at login", body)
        finally:
            await listener.stop()
        bounced = [m for m in romeo.messages if m["type"] == "error"]
        if bounced:
            raise Fail(f"romeo got an error: {bounced[0]}")
        return ""

    await step("listen mode gets an offline message at login", ["listen mode receives a message (-l)"],
               listen_offline)
    await romeo.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--c2s-port", type=int, required=True)
    ap.add_argument("--tls-port", type=int, required=True)
    ap.add_argument("--ca-cert", required=True)
    ap.add_argument("--go-sendxmpp", default="go-sendxmpp")
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
    if not missing:
        print("MISSING go-sendxmpp: nothing (no request of its own was refused)", flush=True)
    for m in missing:
        print(f"MISSING go-sendxmpp: {m}", flush=True)
    failed = [n for n, s in results.items() if s == "FAIL"]
    if args.verbose or failed or crashed:
        for name, text in logs:
            sys.stderr.write(f"---- go-sendxmpp output: {name} ----\n{text[-20000:]}\n")
    if failed or crashed:
        for n in failed:
            print(f"FAIL: {n}", flush=True)
        sys.exit(1)
    say("PASS: go-sendxmpp interop")
    sys.exit(0)


if __name__ == "__main__":
    main()
