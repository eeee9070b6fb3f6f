#!/usr/bin/env python3
"""Interop: the Tigase encrypted push payload, opened by an independent AES-GCM.

What Siskin IM and Snikket iOS do, with slixmpp and Python's `cryptography` (OpenSSL's
AES-GCM underneath, nothing of ours) in their place:

1. a slixmpp ComponentXMPP app server connects as push.localhost (XEP-0114);
2. juliet logs in and finds tigase:push:encrypt:0 and tigase:push:encrypt:aes-128-gcm
   in her account's disco#info;
3. she makes a random AES-128 key here and enables push with
   <encrypt xmlns='tigase:push:encrypt:0' alg='aes-128-gcm'>KEY</encrypt> and
   <priority xmlns='tigase:push:priority:0'/>, then logs out;
4. romeo sends her a chat message (non-ASCII, with characters JSON escapes);
5. the app server receives one publish: no summary form, an <encrypted iv='…'> whose
   text `cryptography`'s AESGCM opens with the key (so the 16-byte tag verifies), the
   JSON names romeo, the text and the type, and the notification is marked high;
   a payload with one bit flipped does not open.

Each stage is reported as `STEP <name>: PASS|FAIL|SKIP <detail>` for tests/interop.rs.
Exit 0 on success; 1 with a "FAIL: ..." line (and slixmpp's XML trace) otherwise.
"""

import argparse
import asyncio
import base64
import io
import json
import logging
import os
import ssl
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from slixmpp import ClientXMPP, ComponentXMPP, Iq
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream import ElementBase, register_stanza_plugin
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

DOMAIN = "localhost"
APP = "push.localhost"
APP_SECRET = "s3cr3t"
NODE = "siskin-node-1"
PUSH_NS = "urn:xmpp:push:0"
ENCRYPT_NS = "tigase:push:encrypt:0"
PRIORITY_NS = "tigase:push:priority:0"
PUBSUB_NS = "http://jabber.org/protocol/pubsub"
TEXT = 'Wherefore art thou, Romeo? «été» "quoted" \\ back\nslash'

STEP_TIMEOUT = 15.0
TOTAL_TIMEOUT = 50.0

STEPS = [
    "component connects as push.localhost (XEP-0114)",
    "account disco lists tigase:push:encrypt:0 and aes-128-gcm",
    "<enable/> with <encrypt alg='aes-128-gcm'> and <priority/>",
    "publish: AESGCM opens the payload (tag verified), JSON as sent, marked high",
    "a tampered payload does not open",
]
passed_steps = {}


class Fail(Exception):
    pass


def passed(name, detail=""):
    assert name in STEPS, name
    passed_steps[name] = detail
    print(f"STEP {name}: PASS{(' ' + detail) if detail else ''}", flush=True)


class PushEnable(ElementBase):
    name = "enable"
    namespace = PUSH_NS
    plugin_attrib = "push_enable"
    interfaces = {"jid", "node"}


register_stanza_plugin(Iq, PushEnable)


async def until(what, pred, timeout=STEP_TIMEOUT):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise Fail(f"{what}: not within {timeout:.0f} s")
        await asyncio.sleep(0.02)


def make_client(jid, password, ca_cert):
    c = ClientXMPP(jid, password)
    for p in ("xep_0030", "xep_0199"):
        c.register_plugin(p)
    c.enable_direct_tls = False
    c.enable_starttls = True
    c.enable_plaintext = False
    if ca_cert:
        c.ca_certs = Path(ca_cert)
    else:
        c.ssl_context.check_hostname = False
        c.ssl_context.verify_mode = ssl.CERT_NONE
    return c


async def login(c, host, port):
    events = []
    for name in ("session_start", "failed_all_auth", "stream_error", "ssl_invalid_chain",
                 "connection_failed"):
        c.add_event_handler(name, lambda data=None, name=name: events.append(name))
    c.connect(host, port)
    await until(f"{c.boundjid.bare} logs in", lambda: events)
    if events[0] != "session_start":
        raise Fail(f"{c.boundjid.bare}: {events[0]}")


async def logout(c):
    done = []
    c.add_event_handler("disconnected", lambda data=None: done.append(1))
    c.disconnect(wait=2.0)
    await until("clean disconnect", lambda: done, timeout=5)


def open_payload(key, encrypted):
    iv = base64.b64decode(encrypted.get("iv") or "")
    sealed = base64.b64decode("".join((encrypted.text or "").split()))
    if len(iv) != 12:
        raise Fail(f"IV of {len(iv)} bytes, expected 12")
    return iv, sealed, AESGCM(key).decrypt(iv, sealed, None)


async def scenario(args, say):
    host = args.host
    app = ComponentXMPP(APP, APP_SECRET, host, args.component_port)
    app.register_plugin("xep_0004")
    app.register_plugin("xep_0060")  # pubsub stanzas, for the publish's stanza path
    publishes = []
    started = []
    app.add_event_handler("session_start", lambda data=None: started.append(1))

    def on_publish(iq):
        publishes.append(iq)
        iq.reply(clear=True).send()

    app.register_handler(Callback("push publish", StanzaPath("iq@type=set/pubsub/publish"),
                                  on_publish))
    app.connect()
    await until("component handshake", lambda: started)
    passed(STEPS[0])

    juliet = make_client(f"juliet@{DOMAIN}/iphone", "juliet-pw", args.ca_cert)
    await login(juliet, host, args.c2s_port)
    try:
        info = await juliet.plugin["xep_0030"].get_info(jid=f"juliet@{DOMAIN}",
                                                         timeout=STEP_TIMEOUT)
    except (IqError, IqTimeout) as e:
        raise Fail(f"disco#info on the account: {e}")
    features = set(info["disco_info"]["features"])
    for var in (ENCRYPT_NS, "tigase:push:encrypt:aes-128-gcm"):
        if var not in features:
            raise Fail(f"{var} not in the account's features {sorted(features)}")
    passed(STEPS[1])

    key = os.urandom(16)
    iq = juliet.make_iq_set()
    iq["push_enable"]["jid"] = APP
    iq["push_enable"]["node"] = NODE
    enc = ET.SubElement(iq["push_enable"].xml, f"{{{ENCRYPT_NS}}}encrypt",
                        {"alg": "aes-128-gcm", "max-size": "3000"})
    enc.text = base64.b64encode(key).decode()
    ET.SubElement(iq["push_enable"].xml, f"{{{PRIORITY_NS}}}priority")
    try:
        await iq.send(timeout=STEP_TIMEOUT)
    except IqError as e:
        raise Fail(f"push <enable/> refused: {e.iq}")
    except IqTimeout:
        raise Fail("push <enable/>: no answer")
    passed(STEPS[2])
    await logout(juliet)

    romeo = make_client(f"romeo@{DOMAIN}/desk", "romeo-pw", args.ca_cert)
    await login(romeo, host, args.c2s_port)
    romeo.send_message(mto=f"juliet@{DOMAIN}", mbody=TEXT, mtype="chat")
    say("romeo wrote to juliet, who is offline")

    await until("a publish at the app server", lambda: publishes)
    raw = str(publishes[0])
    notification = publishes[0].xml.find(
        f"{{{PUBSUB_NS}}}pubsub/{{{PUBSUB_NS}}}publish/{{{PUBSUB_NS}}}item/{{{PUSH_NS}}}notification")
    if notification is None:
        raise Fail(f"no notification: {raw}")
    if notification.find("{jabber:x:data}x") is not None:
        raise Fail(f"a summary form beside the encrypted payload: {raw}")
    if "Wherefore" in raw or "romeo@" in raw:
        raise Fail(f"the text or the sender is readable on the wire: {raw}")
    encrypted = notification.find(f"{{{ENCRYPT_NS}}}encrypted")
    if encrypted is None:
        raise Fail(f"no <encrypted xmlns='{ENCRYPT_NS}'>: {raw}")
    try:
        iv, sealed, plain = open_payload(key, encrypted)
    except InvalidTag:
        raise Fail(f"AESGCM rejects the tag: {raw}")
    payload = json.loads(plain.decode("utf-8"))
    want = {"unread": 1, "sender": f"romeo@{DOMAIN}", "type": "chat", "message": TEXT}
    if payload != want:
        raise Fail(f"payload {payload!r}, expected {want!r}")
    priority = notification.find(f"{{{PRIORITY_NS}}}priority")
    if priority is None or priority.text != "high":
        raise Fail(f"not marked high: {raw}")
    passed(STEPS[3], f"{len(plain)} bytes of JSON, {len(sealed) - len(plain)}-byte tag")

    for i in (0, len(sealed) - 1):  # a ciphertext byte, then a tag byte
        bad = bytearray(sealed)
        bad[i] ^= 1
        try:
            AESGCM(key).decrypt(iv, bytes(bad), None)
        except InvalidTag:
            continue
        raise Fail(f"a payload with byte {i} flipped opened")
    passed(STEPS[4])

    await logout(romeo)
    app.disconnect(wait=2.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--c2s-port", type=int, required=True)
    ap.add_argument("--tls-port", type=int, help="unused; accepted like the other scripts")
    ap.add_argument("--component-port", type=int, required=True)
    ap.add_argument("--ca-cert")
    ap.add_argument("--verbose", action="store_true",
                    default=bool(os.environ.get("CLOUD_NOTIFY_INTEROP_VERBOSE")))
    args = ap.parse_args()

    trace = io.StringIO()
    handler = logging.StreamHandler(sys.stderr if args.verbose else trace)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.DEBUG, handlers=[handler])
    started = time.monotonic()

    def say(line):
        print(f"[{time.monotonic() - started:6.2f}s] {line}", flush=True)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    failure = None
    try:
        loop.run_until_complete(asyncio.wait_for(scenario(args, say), TOTAL_TIMEOUT))
    except Fail as e:
        failure = str(e)
    except asyncio.TimeoutError:
        failure = f"scenario did not finish within {TOTAL_TIMEOUT:.0f} s"
    except Exception as e:  # noqa: BLE001 - any crash is a failure with its trace
        import traceback

        failure = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
    if failure:
        first = True
        for name in STEPS:
            if name in passed_steps:
                continue
            status = "FAIL " + " ".join(failure.split())[:2000] if first else "SKIP (an earlier step failed)"
            print(f"STEP {name}: {status}", flush=True)
            first = False
        if not args.verbose:
            sys.stderr.write("---- slixmpp trace ----\n")
            sys.stderr.write(trace.getvalue()[-60000:])
            sys.stderr.write("---- end of trace ----\n")
        print(f"FAIL: {failure}", flush=True)
        sys.exit(1)
    say("PASS: the encrypted payload opens with an independent AES-GCM")
    sys.exit(0)


if __name__ == "__main__":
    main()
