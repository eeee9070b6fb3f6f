#!/usr/bin/env python3
"""Interop: slixmpp (a client nobody on this team wrote) against cloud-notify.

Scenario (XEP-0198 + XEP-0357, Prosody's mod_cloud_notify behaviour):

1. a slixmpp ComponentXMPP app server connects as push.localhost (XEP-0114);
2. juliet logs in over STARTTLS with SCRAM-SHA-256, enables stream management with
   resumption and push (publish-options carrying a secret), acknowledges everything,
   then drops the socket without closing the stream;
3. romeo (SCRAM-SHA-1) sends juliet a chat message;
4. the app server receives exactly one publish in Prosody's shape and answers it;
5. juliet reconnects, resumes the stream (slixmpp's xep_0198) and receives the message;
6. juliet enables carbons (slixmpp's xep_0280); romeo writes to juliet's desk session
   and the phone receives the carbon copy;
7. juliet pages through her archive with slixmpp's xep_0313 (RSM, one message a page)
   and finds both of romeo's messages, in order;
8. with --tls-port, romeo logs in once more over direct TLS (XEP-0368).

Each stage is reported as `STEP <name>: PASS|FAIL|SKIP <detail>` for tests/interop.rs;
the first one that fails is FAIL, the ones after it SKIP.

Exit 0 on success; 1 with a "FAIL: ..." line (and slixmpp's XML trace) otherwise.
Every wait has a deadline. slixmpp ships no XEP-0357 plugin (none up to 1.17), so the
<enable/> payload is declared here as a slixmpp stanza plugin carrying a xep_0004 form.
"""

import argparse
import asyncio
import io
import logging
import os
import ssl
import sys
import time
import uuid
from pathlib import Path

from slixmpp import JID, ClientXMPP, ComponentXMPP, Iq
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.plugins.xep_0004 import Form
from slixmpp.xmlstream import ElementBase, register_stanza_plugin
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath, StanzaPath

DOMAIN = "localhost"
APP = "push.localhost"
APP_SECRET = "s3cr3t"
NODE = "interop-node-1"
PUBLISH_SECRET = "publish-options-secret-42"
PUSH_NS = "urn:xmpp:push:0"
DATA_NS = "jabber:x:data"
SUMMARY_FIELDS = [
    "FORM_TYPE",
    "message-count",
    "pending-subscription-count",
    "last-message-sender",
    "last-message-body",
]

STEP_TIMEOUT = 15.0  # any single step
TOTAL_TIMEOUT = 50.0  # the whole scenario (the Rust test kills us later than this)
QUIET_PERIOD = 1.5  # no second publish may arrive within this after the message is read


class Fail(Exception):
    pass


STEPS = [
    "component connects as push.localhost (XEP-0114)",
    "login: STARTTLS + SCRAM-SHA-256, XEP-0198 enabled with resumption",
    "XEP-0357 <enable/> with publish-options",
    "login: STARTTLS + SCRAM-SHA-1",
    "push: one publish in Prosody's shape while hibernated",
    "XEP-0198 resumption after a dropped socket, message delivered",
    "exactly one publish, no duplicate message",
    "XEP-0280 carbons: the phone receives a copy of a message to the desk",
    "XEP-0313 MAM query with RSM paging finds both messages",
    "login: direct TLS (XEP-0368)",
]
DIRECT_TLS = STEPS[-1]
passed_steps = {}


def passed(name, detail=""):
    assert name in STEPS, name
    passed_steps[name] = detail
    print(f"STEP {name}: PASS{(' ' + detail) if detail else ''}", flush=True)


class PushEnable(ElementBase):
    """XEP-0357 <enable xmlns='urn:xmpp:push:0' jid='…' node='…'>[form]</enable>."""

    name = "enable"
    namespace = PUSH_NS
    plugin_attrib = "push_enable"
    interfaces = {"jid", "node"}


register_stanza_plugin(Iq, PushEnable)
register_stanza_plugin(PushEnable, Form)


class Recorder:
    """Remembers events (so nothing is missed by waiting late) and wakes waiters."""

    def __init__(self):
        self.seen = {}
        self._changed = asyncio.Event()

    def hook(self, xmpp, *events):
        for name in events:
            xmpp.add_event_handler(name, self._handler(name))

    def _handler(self, name):
        def on(data=None):
            self.add(name, data)

        return on

    def add(self, name, data=None):
        self.seen.setdefault(name, []).append(data)
        self._changed.set()

    def count(self, name):
        return len(self.seen.get(name, []))

    async def wait(self, what, pred, timeout=STEP_TIMEOUT, fail_on=(), hint=""):
        deadline = time.monotonic() + timeout
        while True:
            for bad in fail_on:
                if self.count(bad):
                    raise Fail(f"{what}: got '{bad}' instead: {self.seen[bad][-1]!r}{hint}")
            if pred():
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise Fail(f"{what}: nothing within {timeout:.0f} s")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def poll(self, what, pred, timeout=STEP_TIMEOUT):
        """For state that no event announces: a bounded polling loop."""
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise Fail(f"{what}: not within {timeout:.0f} s")
            await asyncio.sleep(0.02)


def configure_tls(xmpp, ca_cert):
    xmpp.enable_direct_tls = False  # STARTTLS on the c2s port, nothing else
    xmpp.enable_starttls = True
    xmpp.enable_plaintext = False
    if ca_cert:
        xmpp.ca_certs = Path(ca_cert)  # trust the server's self-signed certificate
    else:
        xmpp.ssl_context.check_hostname = False
        xmpp.ssl_context.verify_mode = ssl.CERT_NONE


def make_client(jid, password, mech, ca_cert):
    c = ClientXMPP(jid, password, sasl_mech=mech)
    for p in ("xep_0004", "xep_0030", "xep_0059", "xep_0198", "xep_0199", "xep_0280", "xep_0313"):
        c.register_plugin(p)
    # The server asks for an ack after every stanza; keep our own requests rare.
    c.plugin["xep_0198"].window = 100
    configure_tls(c, ca_cert)
    return c


def field_map(form_xml):
    """[(var, type, [values])] in document order."""
    out = []
    for f in form_xml.findall(f"{{{DATA_NS}}}field"):
        values = [v.text or "" for v in f.findall(f"{{{DATA_NS}}}value")]
        out.append((f.get("var"), f.get("type"), values))
    return out


def check_publish(iq):
    """Prosody's shape, as the app servers in the field parse it."""
    xml = iq.xml
    raw = str(iq)
    if iq["type"] != "set":
        raise Fail(f"publish is not an IQ set: {raw}")
    if str(iq["from"]) != DOMAIN:
        raise Fail(f"publish from={iq['from']!s}, expected {DOMAIN}: {raw}")
    if str(iq["to"]) != APP:
        raise Fail(f"publish to={iq['to']!s}, expected {APP}: {raw}")
    pubsub = xml.find("{http://jabber.org/protocol/pubsub}pubsub")
    if pubsub is None:
        raise Fail(f"no pubsub element: {raw}")
    publish = pubsub.find("{http://jabber.org/protocol/pubsub}publish")
    if publish is None or publish.get("node") != NODE:
        raise Fail(f"no <publish node='{NODE}'>: {raw}")
    items = publish.findall("{http://jabber.org/protocol/pubsub}item")
    if len(items) != 1:
        raise Fail(f"expected one <item>, got {len(items)}: {raw}")
    notif = items[0].find(f"{{{PUSH_NS}}}notification")
    if notif is None:
        raise Fail(f"no <notification xmlns='{PUSH_NS}'>: {raw}")
    form = notif.find(f"{{{DATA_NS}}}x")
    if form is None or form.get("type") != "form":
        raise Fail(f"no summary form of type 'form': {raw}")
    fields = field_map(form)
    if [f[0] for f in fields] != SUMMARY_FIELDS:
        raise Fail(f"summary fields {[f[0] for f in fields]}, expected {SUMMARY_FIELDS}: {raw}")
    values = {var: vals for var, _, vals in fields}
    if values["FORM_TYPE"] != ["urn:xmpp:push:summary"]:
        raise Fail(f"FORM_TYPE {values['FORM_TYPE']}: {raw}")
    if values["message-count"] != ["1"]:
        raise Fail(f"message-count {values['message-count']}: {raw}")
    if values["last-message-body"] != ["New Message!"]:
        raise Fail(f"last-message-body {values['last-message-body']}, expected ['New Message!']: {raw}")
    # The same data through slixmpp's own pubsub stanza API.
    opts = iq["pubsub"]["publish_options"]
    if opts is None:
        raise Fail(f"no publish-options form: {raw}")
    got = {k: (v[0] if isinstance(v, list) and len(v) == 1 else v) for k, v in opts.get_values().items()}
    if got.get("FORM_TYPE") != "http://jabber.org/protocol/pubsub#publish-options":
        raise Fail(f"publish-options FORM_TYPE {got.get('FORM_TYPE')!r}: {raw}")
    if got.get("secret") != PUBLISH_SECRET:
        raise Fail(f"publish-options secret {got.get('secret')!r}, expected {PUBLISH_SECRET!r}: {raw}")
    if iq["pubsub"]["publish"]["node"] != NODE:
        raise Fail(f"slixmpp reads node {iq['pubsub']['publish']['node']!r}: {raw}")


async def scenario(args, say):
    host = args.host
    # -- the app server (XEP-0114 component) --------------------------------------------
    app = ComponentXMPP(APP, APP_SECRET, host, args.component_port)
    app.register_plugin("xep_0030")
    app.register_plugin("xep_0004")
    app.register_plugin("xep_0060")  # pubsub stanzas: publish, item, publish-options
    app_rec = Recorder()
    app_rec.hook(app, "session_start", "disconnected", "stream_error")
    publishes = []

    def on_publish(iq):
        publishes.append(iq)
        app_rec.add("publish", iq)
        # An app server that accepted the notification answers with a result.
        iq.reply(clear=True).send()

    def on_any_iq(iq):
        if iq["type"] in ("get", "set") and iq.xml.find(
                "{http://jabber.org/protocol/pubsub}pubsub/{http://jabber.org/protocol/pubsub}publish") is None:
            app_rec.add("unexpected_iq", str(iq))

    app.register_handler(Callback("push publish", StanzaPath("iq@type=set/pubsub/publish"), on_publish))
    app.register_handler(Callback("any iq", MatchXPath("{jabber:component:accept}iq"), on_any_iq))
    app.connect()
    await app_rec.wait("component handshake", lambda: app_rec.count("session_start"),
                       fail_on=("stream_error", "disconnected"),
                       hint=" (the server closed the XEP-0114 stream before answering <handshake/>; "
                            "slixmpp's header has no version attribute, as in XEP-0114's examples)")
    say("component push.localhost connected")
    passed(STEPS[0])

    # -- juliet: STARTTLS, SCRAM-SHA-256, stream management, push ----------------------
    juliet = make_client(f"juliet@{DOMAIN}/phone", "juliet-pw", "SCRAM-SHA-256", args.ca_cert)
    jr = Recorder()
    jr.hook(juliet, "session_start", "sm_enabled", "sm_failed", "session_resumed",
            "failed_auth", "failed_all_auth", "disconnected", "stream_error",
            "ssl_invalid_chain", "connection_failed", "session_end", "carbon_received")
    bodies = []

    def on_message(msg):
        if msg["body"]:
            bodies.append((str(msg["from"]), msg["body"]))
            jr.add("body")

    juliet.add_event_handler("message", on_message)

    def on_presence(pres):
        # The server echoes the user's own initial presence (RFC 6121 §4.2.2).
        if pres["from"] == juliet.boundjid:
            jr.add("own_presence")

    juliet.add_event_handler("presence", on_presence)
    juliet.connect(host, args.c2s_port)
    auth_failures = ("failed_all_auth", "failed_auth", "stream_error", "ssl_invalid_chain")
    await jr.wait("juliet session start", lambda: jr.count("session_start"), fail_on=auth_failures)
    await jr.wait("juliet <enabled/>", lambda: jr.count("sm_enabled"), fail_on=("sm_failed",) + auth_failures)
    if "starttls" not in juliet.features:
        raise Fail(f"juliet's stream was not upgraded with STARTTLS (features {juliet.features})")
    mech = juliet.plugin["feature_mechanisms"].mech
    if mech is None or mech.name != "SCRAM-SHA-256":
        raise Fail(f"juliet authenticated with {getattr(mech, 'name', None)}, not SCRAM-SHA-256")
    enabled = jr.seen["sm_enabled"][-1]
    sm = juliet.plugin["xep_0198"]
    if not sm.sm_id or not enabled["resume"]:
        raise Fail(f"<enabled/> without resumption: {enabled}")
    say(f"juliet bound as {juliet.boundjid}, TLS + {mech.name}, SM id {sm.sm_id!r}")
    passed(STEPS[1], f"{juliet.boundjid}")

    juliet.send_presence()  # available: messages to the bare JID reach this session
    iq = juliet.make_iq_set()
    iq["push_enable"]["jid"] = APP
    iq["push_enable"]["node"] = NODE
    form = juliet.plugin["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", ftype="hidden",
                   value="http://jabber.org/protocol/pubsub#publish-options")
    form.add_field(var="secret", value=PUBLISH_SECRET)
    iq["push_enable"].append(form)
    try:
        await iq.send(timeout=STEP_TIMEOUT)
    except IqError as e:
        raise Fail(f"push <enable/> refused: {e.iq}")
    except IqTimeout:
        raise Fail("push <enable/>: no answer")
    say("push enabled")
    passed(STEPS[2])

    # Everything acknowledged both ways, as a client does before its radio sleeps: the
    # server holds nothing unacked but what comes after the drop. The echo of juliet's
    # own presence must have arrived first, or it would still be unacked (and, as in
    # Prosody, its hibernation would then publish an unimportant notification too).
    await jr.poll("juliet's own presence comes back", lambda: jr.count("own_presence"))
    sm.send_ack()
    sm.request_ack()
    await jr.poll("server acks all of juliet's stanzas",
                  lambda: not sm.unacked_queue and sm.last_ack == sm.seq)
    h_before = sm.handled

    # Drop the socket: no </stream:stream>, no unavailable presence.
    juliet.abort()
    await jr.wait("juliet disconnected", lambda: jr.count("disconnected"))
    if jr.count("session_end"):
        raise Fail("slixmpp ended juliet's session on abort: cannot resume")
    say(f"juliet's socket dropped (h={h_before})")

    # -- romeo writes -----------------------------------------------------------------
    romeo = make_client(f"romeo@{DOMAIN}/desk", "romeo-pw", "SCRAM-SHA-1", args.ca_cert)
    rr = Recorder()
    rr.hook(romeo, "session_start", "failed_auth", "failed_all_auth", "stream_error",
            "ssl_invalid_chain", "disconnected")
    romeo.connect(host, args.c2s_port)
    await rr.wait("romeo session start", lambda: rr.count("session_start"), fail_on=auth_failures)
    passed(STEPS[3], f"{romeo.boundjid}")
    text = f"interop {uuid.uuid4().hex[:8]}"
    romeo.send_message(mto=f"juliet@{DOMAIN}", mbody=text, mtype="chat")
    say(f"romeo sent {text!r}")

    # -- the app server: exactly one publish ------------------------------------------
    await app_rec.wait("publish at the app server", lambda: publishes,
                       fail_on=("unexpected_iq", "disconnected", "stream_error"))
    check_publish(publishes[0])
    say("one publish in Prosody's shape, with the publish-options secret")
    passed(STEPS[4])

    # -- juliet resumes and gets the message ------------------------------------------
    juliet.connect(host, args.c2s_port)
    await jr.wait("juliet <resumed/>", lambda: jr.count("session_resumed"),
                  fail_on=("sm_failed", "session_end") + auth_failures,
                  hint=" (did the server keep juliet's session after slixmpp's abort()? "
                       "it drops the socket without </stream:stream>)")
    if jr.count("session_start") != 1:
        raise Fail("juliet got a new session instead of resuming")
    say(f"juliet resumed SM id {sm.sm_id!r}")
    await jr.wait("the message after resumption", lambda: bodies,
                  fail_on=("sm_failed", "stream_error"))
    sender, body = bodies[0]
    if body != text or not sender.startswith(f"romeo@{DOMAIN}"):
        raise Fail(f"juliet received {body!r} from {sender}, expected {text!r} from romeo")
    say(f"juliet received {body!r} from {sender}")
    passed(STEPS[5])

    # Nothing more may reach the app server: not for the resumption, not twice.
    quiet_until = time.monotonic() + QUIET_PERIOD
    while True:
        if len(publishes) != 1 or app_rec.count("unexpected_iq"):
            extra = [str(p) for p in publishes[1:]] + app_rec.seen.get("unexpected_iq", [])
            raise Fail(f"expected exactly one publish, got {len(publishes)}: {extra}")
        if time.monotonic() >= quiet_until:
            break
        await asyncio.sleep(0.05)
    if len(bodies) != 1:
        raise Fail(f"juliet received {len(bodies)} messages: {bodies}")
    say("exactly one publish; no duplicate message")
    passed(STEPS[6])

    # -- carbons: a copy of a message to juliet's other session -------------------------
    try:
        await juliet.plugin["xep_0280"].enable(timeout=STEP_TIMEOUT)
    except (IqError, IqTimeout) as e:
        raise Fail(f"carbons <enable/> refused or unanswered: {e}")
    desk = make_client(f"juliet@{DOMAIN}/desk", "juliet-pw", "SCRAM-SHA-256", args.ca_cert)
    dkr = Recorder()
    dkr.hook(desk, "session_start", "failed_auth", "failed_all_auth", "stream_error",
             "ssl_invalid_chain", "disconnected")
    desk.connect(host, args.c2s_port)
    await dkr.wait("juliet's desk session", lambda: dkr.count("session_start"), fail_on=auth_failures)
    text2 = f"to the desk {uuid.uuid4().hex[:8]}"
    romeo.send_message(mto=f"juliet@{DOMAIN}/desk", mbody=text2, mtype="chat")
    await jr.wait("a carbon of the message to the desk", lambda: jr.count("carbon_received"),
                  fail_on=("stream_error",))
    copy = jr.seen["carbon_received"][-1]["carbon_received"]
    if copy["body"] != text2 or not str(copy["from"]).startswith(f"romeo@{DOMAIN}"):
        raise Fail(f"the carbon holds {copy['body']!r} from {copy['from']!s}, expected {text2!r}")
    say(f"the phone got a carbon of {text2!r}")
    passed(STEPS[7])

    # -- MAM: both of romeo's messages, one per RSM page --------------------------------
    archived = []
    async for m in juliet.plugin["xep_0313"].iterate(with_jid=JID(f"romeo@{DOMAIN}"), rsm={"max": 1}):
        archived.append(m["mam_result"]["forwarded"]["stanza"]["body"])
        if len(archived) > 10:
            break
    if archived != [text, text2]:
        raise Fail(f"the archive with romeo holds {archived}, expected {[text, text2]}")
    say(f"MAM, one message a page: {archived}")
    passed(STEPS[8])

    # Clean ends for everyone.
    for x, rec in ((juliet, jr), (desk, dkr), (romeo, rr), (app, app_rec)):
        n = rec.count("disconnected")
        x.disconnect(wait=2.0)
        await rec.wait("clean disconnect", lambda: rec.count("disconnected") > n, timeout=5)

    # -- direct TLS (XEP-0368) --------------------------------------------------------
    if args.tls_port is None:
        return
    direct = make_client(f"romeo@{DOMAIN}/direct", "romeo-pw", "SCRAM-SHA-256", args.ca_cert)
    direct.enable_direct_tls = True
    direct.enable_starttls = False
    dr = Recorder()
    dr.hook(direct, "session_start", "failed_auth", "failed_all_auth", "stream_error",
            "ssl_invalid_chain", "connection_failed", "disconnected")
    direct.connect(host, args.tls_port)
    await dr.wait("romeo over direct TLS", lambda: dr.count("session_start"),
                  fail_on=auth_failures + ("connection_failed",))
    if "starttls" in direct.features:
        raise Fail("STARTTLS negotiated inside direct TLS")
    passed(DIRECT_TLS, f"{direct.boundjid}")
    n = dr.count("disconnected")
    direct.disconnect(wait=2.0)
    await dr.wait("clean disconnect", lambda: dr.count("disconnected") > n, timeout=5)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--c2s-port", type=int, required=True)
    ap.add_argument("--tls-port", type=int, help="the direct-TLS (XEP-0368) client port")
    ap.add_argument("--component-port", type=int, required=True)
    ap.add_argument("--ca-cert", help="the server's self-signed certificate (PEM); "
                                      "without it, certificate verification is off")
    ap.add_argument("--verbose", action="store_true",
                    default=bool(os.environ.get("CLOUD_NOTIFY_INTEROP_VERBOSE")),
                    help="print slixmpp's XML trace as it happens (also: CLOUD_NOTIFY_INTEROP_VERBOSE=1)")
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
            if name in passed_steps or (name == DIRECT_TLS and args.tls_port is None):
                continue
            status = "FAIL " + " ".join(failure.split())[:2000] if first else "SKIP (an earlier step failed)"
            print(f"STEP {name}: {status}", flush=True)
            first = False
        if not args.verbose:
            sys.stderr.write("---- slixmpp trace ----\n")
            sys.stderr.write(trace.getvalue()[-60000:])
            sys.stderr.write("---- end of trace ----\n")
        print(f"FAIL: {failure}", flush=True)
        sys.stderr.write(f"FAIL: {failure}\n")
        sys.exit(1)
    print("MISSING slixmpp: nothing (with xep_0030, xep_0198, xep_0199, xep_0280 and xep_0313 it "
          "asks for no more than bind, stream management, carbons and MAM)", flush=True)
    say("PASS: slixmpp interop (STARTTLS, direct TLS, SCRAM, XEP-0198 resume, XEP-0357 publish, "
        "carbons, MAM)")
    sys.exit(0)


if __name__ == "__main__":
    main()
