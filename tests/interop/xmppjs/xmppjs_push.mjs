#!/usr/bin/env node
// Interop: xmpp.js (@xmpp/client as the clients, @xmpp/component as the push app
// server) against cloud-notify. Run by tests/interop.rs (xmppjs_*), which starts the
// server in-process with juliet/romeo accounts and the push.localhost component.
//
// Every step prints one line, read by the Rust test:
//   STEP <name>: PASS <detail>
//   STEP <name>: FAIL <why>
//   STEP <name>: SKIP <why>          (a step it depends on failed)
//   STEP <name>: N/A <why>           (the library cannot do it)
//   MISSING <stack>: <what>          (asked for or offered at login, not served)
// Exit 0 when no step failed, 1 otherwise. Every wait has a deadline; nothing relies on
// a fixed sleep. The modules come from --modules (a directory holding node_modules, made
// by .ci/interop-setup.sh from tests/interop/xmppjs/package-lock.json).

import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import tls from "node:tls";
import { parseArgs } from "node:util";
import { pathToFileURL } from "node:url";
import { createRequire } from "node:module";

const DOMAIN = "localhost";
const APP = "push.localhost";
const APP_SECRET = "s3cr3t";
const NODE = "xmppjs-node-1";
const PUBLISH_SECRET = "xmppjs-publish-secret";
const PUSH_NS = "urn:xmpp:push:0";
const SM_NS = "urn:xmpp:sm:3";
const SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl";
const ROSTER_NS = "jabber:iq:roster";
const PUBSUB_NS = "http://jabber.org/protocol/pubsub";
const DATA_NS = "jabber:x:data";
const STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas";

const STEP_TIMEOUT = 15_000;
const TOTAL_TIMEOUT = 120_000;

const { values: args } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    "c2s-port": { type: "string" },
    "tls-port": { type: "string" },
    "component-port": { type: "string" },
    "ca-cert": { type: "string" },
    modules: { type: "string" },
    verbose: { type: "boolean", default: !!process.env.CLOUD_NOTIFY_INTEROP_VERBOSE },
  },
});
for (const k of ["c2s-port", "tls-port", "component-port", "modules"]) {
  if (!args[k]) {
    console.error(`missing --${k}`);
    process.exit(2);
  }
}

// -- the modules, from the directory the setup script filled ----------------------------
const req = createRequire(path.join(path.resolve(args.modules), "node_modules", "x.js"));
const load = async (name) => import(pathToFileURL(req.resolve(name)).href);
const { client, xml } = await load("@xmpp/client");
const componentMod = await load("@xmpp/component");
const component = componentMod.component ?? componentMod.default.component;
const clientVersion = JSON.parse(
  fs.readFileSync(req.resolve("@xmpp/client/package.json"), "utf8"),
).version;
const componentVersion = JSON.parse(
  fs.readFileSync(req.resolve("@xmpp/component/package.json"), "utf8"),
).version;

// -- TLS: trust the server's self-signed certificate, which names the domain -----------
// xmpp.js passes no CA option and, for direct TLS, connects by address with the address
// as the name to check; every TLS connection made here gets the CA and the domain as
// the server name (verification stays on).
if (args["ca-cert"]) {
  const ca = fs.readFileSync(args["ca-cert"]);
  const connect = tls.connect;
  tls.connect = (opts, ...rest) =>
    connect.call(tls, { ca, servername: DOMAIN, ...opts }, ...rest);
} else {
  process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";
}

// -- reporting ----------------------------------------------------------------------------
const started = Date.now();
const say = (line) => console.log(`[${((Date.now() - started) / 1000).toFixed(2).padStart(6)}s] ${line}`);
const results = new Map();
const trace = [];
const traceLine = (who, dir, el) => {
  trace.push(`${((Date.now() - started) / 1000).toFixed(3)} ${who} ${dir} ${el.toString()}`);
  if (trace.length > 4000) trace.shift();
  if (args.verbose) process.stderr.write(`${trace.at(-1)}\n`);
};
const missing = new Set();

class Fail extends Error {}

function report(name, status, detail) {
  results.set(name, status);
  console.log(`STEP ${name}: ${status}${detail ? ` ${detail}` : ""}`);
}

/// Runs a step unless one it needs did not pass; a thrown error is its FAIL line.
async function step(name, needs, fn) {
  const blocked = needs.filter((n) => results.get(n) !== "PASS");
  if (blocked.length) {
    report(name, "SKIP", `(needs: ${blocked.join(", ")})`);
    return false;
  }
  try {
    const detail = await fn();
    report(name, "PASS", detail ?? "");
    return true;
  } catch (e) {
    const why = e instanceof Fail ? e.message : `${e?.name ?? "Error"}: ${e?.message ?? e}`;
    report(name, "FAIL", why.replace(/\s+/g, " "));
    return false;
  }
}

// -- waiting on events --------------------------------------------------------------------
/// Keeps every element an entity receives, so nothing is missed by waiting late.
class Inbox {
  constructor(who, entity) {
    this.who = who;
    this.items = [];
    this.waiters = new Set();
    entity.on("element", (el) => {
      traceLine(who, "<-", el);
      this.push(el);
    });
    entity.on("send", (el) => traceLine(who, "->", el));
    entity.on("error", (e) => this.push({ error: e }));
    entity.on("status", (s) => this.push({ status: s }));
  }

  push(item) {
    this.items.push(item);
    for (const w of this.waiters) w();
  }

  /// Resolves with the first item (from index `from` on) that `pred` accepts.
  wait(what, pred, { from = 0, timeout = STEP_TIMEOUT } = {}) {
    return new Promise((resolve, reject) => {
      const check = () => {
        for (let i = from; i < this.items.length; i++) {
          if (pred(this.items[i])) {
            done();
            resolve(this.items[i]);
            return true;
          }
        }
        return false;
      };
      const timer = setTimeout(() => {
        done();
        reject(new Fail(`${this.who}: ${what}: nothing within ${timeout / 1000} s`));
      }, timeout);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  get mark() {
    return this.items.length;
  }
}

const isEl = (x, name, ns) => x && typeof x.is === "function" && x.is(name) && (!ns || x.getNS() === ns);
const bare = (j) => String(j).split("/")[0];

function deadline(promise, ms, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      t = setTimeout(() => reject(new Fail(`${what}: not within ${ms / 1000} s`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

// -- a loopback TCP proxy that can drop its connections without a stream close -----------
function startProxy(targetPort) {
  const pairs = new Set();
  const server = net.createServer((c) => {
    const s = net.connect(targetPort, args.host);
    const pair = [c, s];
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      c.destroy();
      s.destroy();
    };
    c.on("error", end).on("close", end);
    s.on("error", end).on("close", end);
    c.pipe(s);
    s.pipe(c);
  });
  return new Promise((resolve) => {
    server.listen(0, args.host, () => {
      resolve({
        port: server.address().port,
        /// Destroys every proxied connection: both sockets close, no XML is written.
        cut() {
          const n = pairs.size;
          for (const [c, s] of [...pairs]) {
            c.destroy();
            s.destroy();
          }
          pairs.clear();
          return n;
        },
        close() {
          this.cut();
          server.close();
        },
      });
    });
  });
}

// -- clients ------------------------------------------------------------------------------
const c2s = `xmpp://${args.host}:${args["c2s-port"]}`;
const direct = `xmpps://${args.host}:${args["tls-port"]}`;
const entities = [];

/// An xmpp.js client with the library's defaults (reconnect, stream management) and
/// what it did at login recorded: the mechanisms offered and the one it chose.
function makeClient(user, resource, service, { mechanism } = {}) {
  const password = `${user}-pw`;
  const x = client({
    service,
    domain: DOMAIN,
    resource,
    timeout: 10_000,
    // A function instead of {username, password}: records what SASL offered and picks
    // a mechanism, or lets the library choose (its own rule: the first it supports).
    credentials: async (authenticate, mechanisms) => {
      x.offeredUsable = mechanisms;
      const m = mechanism ?? mechanisms[0];
      x.chosen = m;
      if (!mechanisms.includes(m)) {
        throw new Fail(`mechanism ${m} not offered (usable: ${mechanisms.join(", ") || "none"})`);
      }
      await authenticate({ username: user, password }, m);
    },
  });
  x.inbox = new Inbox(`${user}/${resource}`, x);
  // A client acknowledges roster pushes (RFC 6121 2.1.6); xmpp.js leaves that to the
  // application and would answer service-unavailable.
  x.iqCallee.set(ROSTER_NS, "query", () => true);
  x.features = [];
  x.on("nonza", (el) => {
    if (el.is("features")) x.features.push(el);
  });
  // An error that nobody awaits must not crash the process; it is in the inbox.
  x.on("error", () => {});
  entities.push(x);
  return x;
}

/// Starts a client and waits until it is online (bound) with its own deadline; on
/// failure, says what the stream showed.
async function login(x, what) {
  const errors = x.inbox.mark;
  try {
    await deadline(x.start(), STEP_TIMEOUT, `${what}: online`);
  } catch (e) {
    const err = x.inbox.items.slice(errors).find((i) => i.error)?.error;
    const feats = x.features.map((f) => f.toString()).join(" ");
    throw new Fail(`${e.message}${err && err !== e ? ` (${err.message})` : ""}; stream features seen: ${feats || "none"}`);
  }
}

function mechanismsOffered(x) {
  const out = [];
  for (const f of x.features) {
    const m = f.getChild("mechanisms", SASL_NS);
    if (m) out.push(m.getChildren("mechanism").map((c) => c.text()));
  }
  return out;
}

/// The features xmpp.js would use if offered, and which of them the server offered.
function noteFeatureGaps(x) {
  const all = x.features.map((f) => f.toString()).join("");
  const wants = [
    ["authentication", "urn:xmpp:sasl:2", "SASL2 (XEP-0388), with Bind 2 (XEP-0386) and FAST (XEP-0484) inline"],
  ];
  for (const [name, ns, label] of wants) {
    if (!(all.includes(`<${name}`) && all.includes(ns))) missing.add(`${label}: not offered (xmpp.js 0.14 prefers it; falls back to SASL + bind)`);
  }
}

/// Sends an IQ and returns the result; an error reply is a Fail naming its condition.
async function iq(x, type, payload, to) {
  try {
    return await deadline(
      type === "get" ? x.iqCaller.get(payload, to) : x.iqCaller.set(payload, to),
      STEP_TIMEOUT,
      `iq ${type} ${payload.name} ${payload.attrs.xmlns}`,
    );
  } catch (e) {
    if (e instanceof Fail) throw e;
    throw new Fail(`iq ${type} <${payload.name} xmlns='${payload.attrs.xmlns}'/> answered with error: ${e.condition ?? e.message} ${e.element ?? ""}`);
  }
}

async function rosterItems(x) {
  // xmpp.js's iqCaller resolves with the result's payload: the <query/> itself.
  const q = await iq(x, "get", xml("query", { xmlns: ROSTER_NS }));
  if (!q?.is("query", ROSTER_NS)) throw new Fail(`roster result without <query/>: ${q}`);
  return new Map((q?.getChildren("item") ?? []).map((i) => [i.attrs.jid, i.attrs]));
}

const presenceFrom = (who, type) => (el) =>
  isEl(el, "presence") && bare(el.attrs.from) === who && (el.attrs.type ?? "available") === type;

const rosterPush = (contact, subscription) => (el) =>
  isEl(el, "iq") && el.attrs.type === "set" &&
  el.getChild("query", ROSTER_NS)?.getChildren("item").some(
    (i) => i.attrs.jid === contact && i.attrs.subscription === subscription,
  );

async function stopAll() {
  await Promise.allSettled(
    entities.map((x) => {
      x.reconnect?.stop();
      return x.status === "offline" ? null : deadline(x.stop(), 5_000, "stop").catch(() => {});
    }),
  );
}

// -- the scenario -------------------------------------------------------------------------
async function scenario() {
  say(`xmpp.js: @xmpp/client ${clientVersion}, @xmpp/component ${componentVersion}, node ${process.version}`);

  // The app server: a XEP-0114 component answering every pubsub publish with a result.
  const app = component({
    service: `xmpp://${args.host}:${args["component-port"]}`,
    domain: APP,
    password: APP_SECRET,
  });
  entities.push(app);
  app.on("error", () => {});
  const publishes = [];
  const appInbox = new Inbox("app", app);
  app.iqCallee.set(PUBSUB_NS, "pubsub", (ctx) => {
    publishes.push(ctx.stanza);
    appInbox.push({ publish: ctx.stanza });
    return true; // an empty result: the app server accepted the notification
  });

  await step("component connects as push.localhost (XEP-0114)", [], async () => {
    await deadline(app.start(), STEP_TIMEOUT, "component online");
    return `as ${app.jid}`;
  });

  // -- logins ---------------------------------------------------------------------------
  await step("login: STARTTLS + SCRAM-SHA-1", [], async () => {
    const x = makeClient("juliet", "starttls", c2s);
    await login(x, "juliet over STARTTLS");
    if (!x.isSecure()) throw new Fail("online, but the stream is not TLS");
    if (x.chosen !== "SCRAM-SHA-1") throw new Fail(`authenticated with ${x.chosen}`);
    const offered = mechanismsOffered(x);
    await deadline(x.stop(), 5_000, "clean stop");
    return `bound ${x.jid}; mechanisms offered ${JSON.stringify(offered)}; xmpp.js can use ${x.offeredUsable.join(", ")}`;
  });

  report(
    "login: STARTTLS + SCRAM-SHA-256",
    "N/A",
    "xmpp.js 0.14 implements SCRAM-SHA-1, PLAIN and ANONYMOUS only (SCRAM-SHA-256 is covered by slixmpp)",
  );

  await step("login: STARTTLS + PLAIN", [], async () => {
    const x = makeClient("juliet", "plain", c2s, { mechanism: "PLAIN" });
    await login(x, "juliet over STARTTLS with PLAIN");
    if (!x.isSecure()) throw new Fail("online, but the stream is not TLS");
    await deadline(x.stop(), 5_000, "clean stop");
    return `bound ${x.jid}`;
  });

  await step("login: direct TLS (XEP-0368) + SCRAM-SHA-1", [], async () => {
    const x = makeClient("juliet", "direct", direct);
    await login(x, "juliet over direct TLS");
    if (!x.isSecure()) throw new Fail("online, but the stream is not TLS");
    if (x.chosen !== "SCRAM-SHA-1") throw new Fail(`authenticated with ${x.chosen}`);
    if (x.features.some((f) => f.getChild("starttls"))) throw new Fail("STARTTLS offered inside direct TLS");
    await deadline(x.stop(), 5_000, "clean stop");
    return `bound ${x.jid}`;
  });

  await step("wrong password is refused with <not-authorized/>", [], async () => {
    const x = client({ service: c2s, domain: DOMAIN, resource: "bad", username: "juliet", password: "nope", timeout: 10_000 });
    x.reconnect.stop();
    x.on("error", () => {});
    x.inbox = new Inbox("juliet/bad", x);
    entities.push(x);
    const failure = x.inbox.wait("SASL <failure/>", (el) => isEl(el, "failure", SASL_NS));
    x.start().catch(() => {});
    const el = await failure;
    const cond = el.getChildElements()[0]?.name;
    if (cond !== "not-authorized") throw new Fail(`failure condition ${cond}: ${el}`);
    await deadline(x.stop().catch(() => {}), 5_000, "stop");
    return "";
  });

  // -- two users online: roster, subscriptions, presence, messages ------------------------
  const juliet = makeClient("juliet", "balcony", c2s);
  const romeo = makeClient("romeo", "garden", c2s);
  const J = `juliet@${DOMAIN}`;
  const R = `romeo@${DOMAIN}`;

  await step("two xmpp.js clients online (roster get, initial presence)", ["login: STARTTLS + SCRAM-SHA-1"], async () => {
    await login(juliet, "juliet");
    await login(romeo, "romeo");
    for (const x of [juliet, romeo]) {
      const items = await rosterItems(x);
      if (items.size) throw new Fail(`${x.jid}: roster not empty at start: ${[...items.keys()]}`);
      const m = x.inbox.mark;
      await x.send(xml("presence"));
      // RFC 6121 4.2.2: the server sends the user's own presence back.
      await x.inbox.wait("own initial presence echoed", (el) => isEl(el, "presence") && el.attrs.from === String(x.jid), { from: m });
    }
    return `${juliet.jid}, ${romeo.jid}; empty rosters`;
  });

  const online = "two xmpp.js clients online (roster get, initial presence)";
  await step("subscription request reaches the contact", [online], async () => {
    const rm = romeo.inbox.mark;
    const jm = juliet.inbox.mark;
    await romeo.send(xml("presence", { to: J, type: "subscribe" }));
    await romeo.inbox.wait("roster push ask=subscribe", (el) =>
      isEl(el, "iq") && el.getChild("query", ROSTER_NS)?.getChildren("item").some((i) => i.attrs.jid === J && i.attrs.ask === "subscribe"), { from: rm });
    await juliet.inbox.wait("presence type=subscribe from romeo", presenceFrom(R, "subscribe"), { from: jm });
    return "";
  });

  await step("approval while both online: requester gets subscribed + the contact's presence", ["subscription request reaches the contact"], async () => {
    const rm = romeo.inbox.mark;
    await juliet.send(xml("presence", { to: R, type: "subscribed" }));
    await romeo.inbox.wait("presence type=subscribed from juliet", presenceFrom(J, "subscribed"), { from: rm });
    await romeo.inbox.wait("roster push subscription=to", rosterPush(J, "to"), { from: rm });
    await romeo.inbox.wait("juliet's available presence after the approval (RFC 6121 3.1.5)", presenceFrom(J, "available"), { from: rm, timeout: 5_000 });
    return "";
  });

  await step("mutual subscription: both rosters subscription=both", ["subscription request reaches the contact"], async () => {
    const jm = juliet.inbox.mark;
    const rm = romeo.inbox.mark;
    await juliet.send(xml("presence", { to: R, type: "subscribe" }));
    await romeo.inbox.wait("presence type=subscribe from juliet", presenceFrom(J, "subscribe"), { from: rm });
    await romeo.send(xml("presence", { to: J, type: "subscribed" }));
    await juliet.inbox.wait("presence type=subscribed from romeo", presenceFrom(R, "subscribed"), { from: jm });
    const jr = await rosterItems(juliet);
    const rr = await rosterItems(romeo);
    if (jr.get(R)?.subscription !== "both" || rr.get(J)?.subscription !== "both") {
      throw new Fail(`juliet's item ${JSON.stringify(jr.get(R))}, romeo's item ${JSON.stringify(rr.get(J))}`);
    }
    return "";
  });

  await step("presence broadcast seen on both sides", ["mutual subscription: both rosters subscription=both"], async () => {
    const jm = juliet.inbox.mark;
    const rm = romeo.inbox.mark;
    await juliet.send(xml("presence", {}, xml("show", {}, "away"), xml("status", {}, "on the balcony")));
    await romeo.send(xml("presence", {}, xml("show", {}, "chat")));
    await romeo.inbox.wait("juliet's <show>away</show>", (el) => presenceFrom(J, "available")(el) && el.getChildText("show") === "away", { from: rm });
    await juliet.inbox.wait("romeo's <show>chat</show>", (el) => presenceFrom(R, "available")(el) && el.getChildText("show") === "chat", { from: jm });
    return "";
  });

  const chat = (from, to, body) => from.send(xml("message", { to, type: "chat", id: `m-${Math.random().toString(36).slice(2)}` }, xml("body", {}, body)));
  const bodyFrom = (who, body) => (el) => isEl(el, "message") && bare(el.attrs.from) === who && el.getChildText("body") === body;

  await step("messages both ways", [online], async () => {
    const jm = juliet.inbox.mark;
    const rm = romeo.inbox.mark;
    await chat(juliet, R, "wherefore art thou");
    await chat(romeo, J, "here, below the balcony");
    await romeo.inbox.wait("juliet's message", bodyFrom(J, "wherefore art thou"), { from: rm });
    await juliet.inbox.wait("romeo's message", bodyFrom(R, "here, below the balcony"), { from: jm });
    return "";
  });

  // Needs the subscription: juliet seeing romeo's unavailable presence is the event that
  // says his session is gone (a message racing a closing session is another case).
  await step("offline message delivered at the next login", [online, "mutual subscription: both rosters subscription=both"], async () => {
    const jm = juliet.inbox.mark;
    await deadline(romeo.stop(), 5_000, "romeo logs out");
    await juliet.inbox.wait("romeo's unavailable presence", presenceFrom(R, "unavailable"), { from: jm });
    await chat(juliet, R, "while you were away");
    const errMark = juliet.inbox.mark;
    const again = makeClient("romeo", "garden2", c2s);
    await login(again, "romeo again");
    const m = again.inbox.mark;
    await again.send(xml("presence"));
    const msg = await again.inbox.wait("the offline message after initial presence", bodyFrom(J, "while you were away"), { from: m });
    const bounced = juliet.inbox.items.slice(errMark).find((el) => isEl(el, "message") && el.attrs.type === "error");
    if (bounced) throw new Fail(`juliet got an error for it: ${bounced}`);
    const delay = msg.getChild("delay", "urn:xmpp:delay");
    await deadline(again.stop(), 5_000, "romeo logs out again");
    return delay ? `with <delay stamp='${delay.attrs.stamp}'/>` : "without <delay/> (XEP-0203)";
  });

  // -- stream management through a proxy that can cut the connection ---------------------
  const proxy = await startProxy(Number(args["c2s-port"]));
  const phone = makeClient("juliet", "phone", `xmpp://${args.host}:${proxy.port}`);
  const sender = makeClient("romeo", "desk", c2s);
  const smEnabled = "XEP-0198 enabled with resumption";
  await step(smEnabled, ["login: STARTTLS + SCRAM-SHA-1"], async () => {
    const m = phone.inbox.mark;
    await login(phone, "juliet through the proxy");
    const enabled = await phone.inbox.wait("<enabled/>", (el) => isEl(el, "enabled", SM_NS) || isEl(el, "failed", SM_NS), { from: m });
    if (!isEl(enabled, "enabled")) throw new Fail(`<enable/> answered with ${enabled}`);
    if (!enabled.attrs.id || !["true", "1"].includes(enabled.attrs.resume)) throw new Fail(`no resumption: ${enabled}`);
    const pm = phone.inbox.mark;
    await phone.send(xml("presence"));
    await phone.inbox.wait("own presence echoed", (el) => isEl(el, "presence") && el.attrs.from === String(phone.jid), { from: pm });
    const sm = phone.streamManagement;
    if (!sm.enabled || sm.id !== enabled.attrs.id) throw new Fail(`xmpp.js did not take <enabled/> (enabled ${sm.enabled}, id '${sm.id}')`);
    await login(sender, "romeo as the sender");
    return `id ${phone.streamManagement.id}, max ${enabled.attrs.max ?? "-"}`;
  });

  // All our stanzas acknowledged by the server (xmpp.js asks for an ack 250 ms after
  // sending; the server asks after each of its stanzas and xmpp.js answers at once).
  const allAcked = async (x) => {
    const sm = x.streamManagement;
    if (sm.outbound_q.length === 0) return;
    await x.send(xml("r", { xmlns: SM_NS }));
    await x.inbox.wait("<a/> covering every stanza sent", () => sm.outbound_q.length === 0);
  };

  await step("XEP-0198 resumption after a cut connection", [smEnabled], async () => {
    await allAcked(phone);
    const boundAs = String(phone.jid);
    const onlineBefore = phone.inbox.items.filter((i) => i.status === "online").length;
    const m = phone.inbox.mark;
    const resumed = new Promise((resolve) => phone.streamManagement.once("resumed", resolve));
    const cut = proxy.cut();
    if (cut !== 1) throw new Fail(`proxy held ${cut} connections, expected 1`);
    await phone.inbox.wait("the client notices the cut", (i) => i.status === "disconnect", { from: m });
    // Sent while juliet is away: the server keeps it in the session's queue.
    await chat(sender, `${J}/phone`, "during the cut");
    // xmpp.js's reconnect module connects again (through the proxy's listener: a new
    // TCP connection) and offers <resume/> on its own.
    await deadline(resumed, STEP_TIMEOUT, "<resumed/>");
    await phone.inbox.wait("the message sent during the cut", bodyFrom(R, "during the cut"), { from: m });
    const after = phone.inbox.items.slice(m);
    if (after.some((i) => i.status === "online") && phone.inbox.items.filter((i) => i.status === "online").length > onlineBefore) {
      throw new Fail("a new session was bound instead of resuming");
    }
    if (after.some((el) => isEl(el, "failed", SM_NS))) throw new Fail("got <failed/>");
    if (String(phone.jid) !== boundAs) throw new Fail(`jid changed: ${boundAs} -> ${phone.jid}`);
    return `resumed ${phone.streamManagement.id} as ${phone.jid}`;
  });

  const pushEnabled = "XEP-0357 <enable/> to push.localhost";
  await step(pushEnabled, [smEnabled], async () => {
    const form = xml("x", { xmlns: DATA_NS, type: "submit" },
      xml("field", { var: "FORM_TYPE", type: "hidden" }, xml("value", {}, `${PUBSUB_NS}#publish-options`)),
      xml("field", { var: "secret" }, xml("value", {}, PUBLISH_SECRET)));
    await iq(phone, "set", xml("enable", { xmlns: PUSH_NS, jid: APP, node: NODE }, form));
    return `node ${NODE}`;
  });

  await step("push: publish reaches the xmpp.js app server while hibernated", [pushEnabled, "component connects as push.localhost (XEP-0114)"], async () => {
    // The phone sleeps: no reconnect until the publish is seen.
    phone.reconnect.stop();
    await allAcked(phone);
    const m = phone.inbox.mark;
    const before = publishes.length;
    if (proxy.cut() !== 1) throw new Fail("the phone was not connected through the proxy");
    await phone.inbox.wait("the client notices the cut", (i) => i.status === "disconnect", { from: m });
    await chat(sender, J, "wake up");
    // The message is important (a chat body): its publish carries the placeholder body.
    // An earlier unimportant one may come first: xmpp.js 0.14 does not count the IQ
    // results it asked for in its XEP-0198 'h', so the server still holds the <enable/>
    // result unacknowledged when the connection drops, and publishes for it (Prosody's
    // behaviour; D20 lets the important one through at once).
    const forNode = (i) => i.publish && i.publish.getChild("pubsub", PUBSUB_NS)?.getChild("publish")?.attrs.node === NODE;
    const summary = (p) => Object.fromEntries((p.getChild("pubsub", PUBSUB_NS).getChild("publish").getChild("item")?.getChild("notification", PUSH_NS)?.getChild("x", DATA_NS)?.getChildren("field") ?? []).map((f) => [f.attrs.var, f.getChildText("value")]));
    const got = await appInbox.wait(`an important publish for node ${NODE}`, (i) => forNode(i) && summary(i.publish)["last-message-body"] === "New Message!", { from: 0 });
    const p = got.publish;
    if (p.attrs.from !== DOMAIN) throw new Fail(`publish from ${p.attrs.from}, expected ${DOMAIN}: ${p}`);
    if (p.attrs.to !== APP) throw new Fail(`publish to ${p.attrs.to}: ${p}`);
    const item = p.getChild("pubsub", PUBSUB_NS).getChild("publish").getChild("item");
    const notif = item?.getChild("notification", PUSH_NS);
    if (!notif) throw new Fail(`no <notification xmlns='${PUSH_NS}'>: ${p}`);
    const fields = Object.fromEntries((notif.getChild("x", DATA_NS)?.getChildren("field") ?? []).map((f) => [f.attrs.var, f.getChildText("value")]));
    if (fields.FORM_TYPE !== "urn:xmpp:push:summary") throw new Fail(`summary FORM_TYPE ${fields.FORM_TYPE}: ${p}`);
    const opts = Object.fromEntries((p.getChild("pubsub", PUBSUB_NS).getChild("publish-options")?.getChild("x", DATA_NS)?.getChildren("field") ?? []).map((f) => [f.attrs.var, f.getChildText("value")]));
    if (opts.secret !== PUBLISH_SECRET) throw new Fail(`publish-options secret ${opts.secret}: ${p}`);
    const all = publishes.slice(before).map((x) => JSON.stringify(summary(x)["last-message-body"]));
    return `${all.length} publish(es), bodies ${all.join(", ")}; message-count ${fields["message-count"]}`;
  });

  await step("push: the phone resumes directly and gets the message", ["push: publish reaches the xmpp.js app server while hibernated"], async () => {
    const m = phone.inbox.mark;
    const resumed = new Promise((resolve) => phone.streamManagement.once("resumed", resolve));
    phone.options.service = c2s; // straight to the server this time, not through the proxy
    await deadline(phone.reconnect.reconnect(), STEP_TIMEOUT, "reconnect");
    await deadline(resumed, STEP_TIMEOUT, "<resumed/>");
    await phone.inbox.wait("the message that woke the phone", bodyFrom(R, "wake up"), { from: m });
    return "";
  });

  proxy.close();
  await stopAll();
  const errors = [];
  for (const x of entities) {
    for (const el of x.inbox?.items ?? []) {
      if (isEl(el, "iq") && el.attrs.type === "error") errors.push(`${x.inbox.who}: ${el}`);
    }
  }
  for (const e of errors) missing.add(`an IQ answered with an error: ${e}`);
}

let crashed = null;
try {
  await deadline(scenario(), TOTAL_TIMEOUT, "the whole scenario");
} catch (e) {
  crashed = e;
  console.log(`FAIL: scenario stopped: ${e?.stack ?? e}`);
  await stopAll().catch(() => {});
}
for (const x of entities) if (x.features?.length) noteFeatureGaps(x);
if (missing.size === 0) console.log("MISSING xmpp.js: nothing (the library asks only for bind, stream management and what a step sends)");
for (const m of missing) console.log(`MISSING xmpp.js: ${m}`);
const failed = [...results].filter(([, s]) => s === "FAIL").map(([n]) => n);
if (failed.length || crashed) {
  for (const n of failed) console.log(`FAIL: ${n}`);
  if (!args.verbose) {
    process.stderr.write("---- xmpp.js trace (last 400 elements) ----\n");
    process.stderr.write(trace.slice(-400).join("\n") + "\n---- end of trace ----\n");
  }
  process.exit(1);
}
say("PASS: xmpp.js interop");
process.exit(0);
