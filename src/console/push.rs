//! `cloud-notify push list|remove|test`.

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::Subcommand;
use xmpp_parsers::jid::Jid;

use super::database::open;
use super::format::{now_secs, quoted, when};
use super::outcome::Outcome;
use super::server::{ANSWER_TIMEOUT, decode, encode, request, server};
use super::user::user_of;
use crate::config::Config;
use crate::push::{TestOutcome, TestPushResult};
use crate::store::admin::AdminError;
use crate::store::ledger::{self, PushLedger, RegistrationView, Removal, Selector};
use crate::store::{ErrorNote, S2sFailureNote};

#[derive(Subcommand, Debug)]
pub enum PushCommand {
    /// A user's push registrations with their health (last success, last error,
    /// errors in a row), and those removed in the last 30 days with why.
    List { user: String },
    /// Remove one registration, named by its node ("" for the one without a node).
    /// A node registered with several app servers needs --jid.
    Remove {
        user: String,
        node: String,
        /// The app server's JID.
        #[arg(long)]
        jid: Option<String>,
    },
    /// Send a test push (a notification with no content) to the user's registrations,
    /// or to those with NODE, and print each app server's answer with the round-trip
    /// time. Needs the running server.
    Test {
        user: String,
        node: Option<String>,
        /// Only the registrations of this app server.
        #[arg(long)]
        jid: Option<String>,
    },
}

/// Runs a `push` command and prints its result.
pub fn push(cmd: PushCommand, cfg: &Config) -> ExitCode {
    run(cmd, cfg).unwrap_or_else(Outcome::fail).finish()
}

fn selector(node: Option<String>, jid: Option<String>) -> Result<Selector, String> {
    let jid = match jid {
        Some(j) => Some(
            crate::jid::parse::<Jid>(&j)
                .ok_or_else(|| format!("--jid {j} is not a valid JID"))?
                .to_string(),
        ),
        None => None,
    };
    Ok(Selector { node, jid })
}

fn run(cmd: PushCommand, cfg: &Config) -> Result<Outcome, String> {
    let no_such_user = |user: &str| format!("no such user: {user}@{}", cfg.domain);
    match cmd {
        PushCommand::List { user } => {
            let user = user_of(&user, cfg)?;
            let ledger = match server(cfg, ANSWER_TIMEOUT) {
                Some(mut c) => match request(&mut c, &format!("push-list {user}")) {
                    Ok(answer) => decode::<PushLedger>(&answer)?,
                    Err(e) if e == "missing" => return Err(no_such_user(&user)),
                    Err(e) => return Err(e),
                },
                None => match ledger::read_ledger(&open(cfg)?, &user) {
                    Ok(l) => l,
                    Err(AdminError::Missing(_)) => return Err(no_such_user(&user)),
                    Err(e) => return Err(e.to_string()),
                },
            };
            Ok(Outcome::ok(format_ledger(
                &format!("{user}@{}", cfg.domain),
                &ledger,
                cfg,
                now_secs(),
            )))
        }
        PushCommand::Remove { user, node, jid } => {
            let user = user_of(&user, cfg)?;
            let sel = selector(Some(node), jid)?;
            let removed: Vec<RegistrationView> = match server(cfg, ANSWER_TIMEOUT) {
                Some(mut c) => {
                    match request(&mut c, &format!("push-remove {user} {}", encode(&sel)?)) {
                        Ok(answer) => decode(&answer)?,
                        Err(e) if e == "missing" => return Err(no_such_user(&user)),
                        Err(e) => return Err(e),
                    }
                }
                None => match ledger::remove_registrations(&open(cfg)?, &user, &sel) {
                    Ok(r) => r,
                    Err(AdminError::Missing(_)) => return Err(no_such_user(&user)),
                    Err(AdminError::Db(e)) => return Err(e),
                    Err(e) => return Err(e.to_string()),
                },
            };
            let mut out = String::new();
            for r in &removed {
                let _ = writeln!(
                    out,
                    "removed {} of {user}@{}",
                    registration(&r.jid, r.node.as_deref()),
                    cfg.domain
                );
            }
            Ok(Outcome::ok(out))
        }
        PushCommand::Test { user, node, jid } => {
            let user = user_of(&user, cfg)?;
            let sel = selector(node, jid)?;
            // The server answers once every publish ended: at most push_response_timeout
            // (this configuration's value, which should be the server's).
            let Some(mut c) = server(cfg, cfg.push_response_timeout + ANSWER_TIMEOUT) else {
                return Ok(Outcome::not_running(format!(
                    "cloud-notify is not running (no server answers on {}): a test push \
                     goes out through the running server; start it first",
                    crate::xmpp::admin::socket_path(&cfg.data_dir).display()
                )));
            };
            let results: Vec<TestPushResult> =
                match request(&mut c, &format!("push-test {user} {}", encode(&sel)?)) {
                    Ok(answer) => decode(&answer)?,
                    Err(e) if e == "missing" => return Err(no_such_user(&user)),
                    Err(e) => return Err(e),
                };
            let all_answered = results
                .iter()
                .all(|r| matches!(r.outcome, TestOutcome::Success));
            let text = format_test(&format!("{user}@{}", cfg.domain), &results, cfg);
            Ok(if all_answered {
                Outcome::ok(text)
            } else {
                Outcome::failed_answer(text)
            })
        }
    }
}

/// `push.example.org node 'n1'` or `push.example.org (no node)`.
fn registration(jid: &str, node: Option<&str>) -> String {
    match node {
        Some(n) => format!("{} node {}", jid.escape_debug(), quoted(n)),
        None => format!("{} (no node)", jid.escape_debug()),
    }
}

fn error_note(e: &ErrorNote) -> String {
    let mut s = format!(
        "{}/{}",
        e.error_type.escape_debug(),
        e.condition.escape_debug()
    );
    if let Some(t) = &e.text {
        let _ = write!(s, " {}", quoted(t));
    }
    s
}

/// `remote-server-not-found: no DNS record: the domain has no address (SRV, A/AAAA or s2s_hosts)`.
fn s2s_failure_note(f: &S2sFailureNote) -> String {
    format!(
        "{}: {} (our link to the app server's domain; not counted as an error)",
        f.condition.escape_debug(),
        f.reason.escape_debug()
    )
}

fn maybe_when(t: Option<u64>, now: u64) -> String {
    t.map_or_else(|| "never".into(), |t| when(t, now))
}

/// The output of `push list`.
pub(super) fn format_ledger(user: &str, l: &PushLedger, cfg: &Config, now: u64) -> String {
    let mut out = String::new();
    let n = l.registrations.len();
    let _ = writeln!(
        out,
        "{user}: {n} push registration{} (push_max_devices {})",
        if n == 1 { "" } else { "s" },
        cfg.push_max_devices
    );
    for r in &l.registrations {
        let _ = writeln!(out, "\n{}", registration(&r.jid, r.node.as_deref()));
        let _ = writeln!(
            out,
            "  enabled:          {} by {}",
            when(r.enabled_at_us / 1_000_000, now),
            quoted(&r.client)
        );
        let _ = writeln!(
            out,
            "  sessions linked:  {} ({} hibernated)",
            r.linked_sessions, r.hibernated_sessions
        );
        let _ = writeln!(
            out,
            "  last success:     {}",
            maybe_when(r.last_success, now)
        );
        let _ = writeln!(
            out,
            "  last error:       {}",
            r.last_error.as_ref().map_or_else(
                || "never".into(),
                |e| format!("{}: {}", when(e.at, now), error_note(e))
            )
        );
        let _ = writeln!(
            out,
            "  last timeout:     {}",
            maybe_when(r.last_timeout, now)
        );
        let _ = writeln!(
            out,
            "  last s2s failure: {}",
            r.last_s2s_failure.as_ref().map_or_else(
                || "never".into(),
                |f| format!("{}: {}", when(f.at, now), s2s_failure_note(f))
            )
        );
        let _ = writeln!(
            out,
            "  errors in a row:  {} (removed at push_max_errors, {})",
            r.error_count, cfg.push_max_errors
        );
        let _ = writeln!(
            out,
            "  publish-options:  {}",
            if r.publish_options_bytes == 0 {
                "none".to_string()
            } else {
                format!("{} bytes (not shown)", r.publish_options_bytes)
            }
        );
        if !r.extensions.is_empty() {
            let _ = writeln!(out, "  extensions:       {}", r.extensions);
        }
    }
    let _ = writeln!(
        out,
        "\nremoved in the last 30 days: {}",
        if l.removals.is_empty() {
            "none".to_string()
        } else {
            format!("{} (newest first)", l.removals.len())
        }
    );
    for Removal {
        removed_at_us,
        record: r,
    } in &l.removals
    {
        let _ = writeln!(
            out,
            "\n{}  {}",
            when(removed_at_us / 1_000_000, now),
            registration(&r.jid, r.node.as_deref())
        );
        let _ = writeln!(out, "  why:              {}", r.reason);
        let _ = writeln!(
            out,
            "  enabled:          {} by {}",
            when(r.enabled_at_us / 1_000_000, now),
            quoted(&r.client)
        );
        let _ = writeln!(
            out,
            "  last success:     {}",
            maybe_when(r.last_success, now)
        );
        if let Some(e) = &r.last_error {
            let _ = writeln!(
                out,
                "  last error:       {}: {}",
                when(e.at, now),
                error_note(e)
            );
        }
        if let Some(f) = &r.last_s2s_failure {
            let _ = writeln!(
                out,
                "  last s2s failure: {}: {}",
                when(f.at, now),
                s2s_failure_note(f)
            );
        }
        let _ = writeln!(out, "  errors in a row:  {}", r.error_count);
    }
    out
}

/// The output of `push test`.
fn format_test(user: &str, results: &[TestPushResult], cfg: &Config) -> String {
    let mut out = String::new();
    if results.is_empty() {
        let _ = writeln!(out, "{user}: no push registration to test");
        return out;
    }
    let _ = writeln!(
        out,
        "test push to {user}: {} registration{}",
        results.len(),
        if results.len() == 1 { "" } else { "s" }
    );
    for r in results {
        let what = match (&r.outcome, r.round_trip_us) {
            (TestOutcome::Success, Some(us)) => format!("success in {}", ms(us)),
            (TestOutcome::Success, None) => "success".into(),
            (
                TestOutcome::Error {
                    error_type,
                    condition,
                    text,
                },
                rtt,
            ) => {
                let note = ErrorNote {
                    at: 0,
                    error_type: error_type.clone(),
                    condition: condition.clone(),
                    text: text.clone(),
                };
                match rtt {
                    Some(us) => format!("error {} in {}", error_note(&note), ms(us)),
                    None => format!("error {}", error_note(&note)),
                }
            }
            (TestOutcome::Timeout, _) => format!(
                "no answer within {} s (push_response_timeout)",
                cfg.push_response_timeout.as_secs_f64()
            ),
            (TestOutcome::NotSent, _) => {
                "not sent: the server's queue to app servers is full".into()
            }
            (TestOutcome::Undelivered { condition, reason }, _) => format!(
                "not delivered: {}: {} (our link to the app server's domain)",
                condition.escape_debug(),
                reason.escape_debug()
            ),
            (TestOutcome::Gone, _) => "the registration was removed before an answer came".into(),
        };
        let _ = writeln!(
            out,
            "{} (enabled by {}): {what}",
            registration(&r.jid, r.node.as_deref()),
            quoted(&r.client)
        );
    }
    out
}

fn ms(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ledger::{RemovalReason, RemovalRecord};

    #[test]
    fn the_ledger_reads_as_documented() {
        let now = 1_700_000_000;
        let view = RegistrationView {
            jid: "push.example.org".into(),
            node: Some("n1".into()),
            enabled_at_us: (now - 7200) * 1_000_000,
            client: "phone".into(),
            publish_options_bytes: 120,
            error_count: 1,
            last_success: Some(now - 60),
            last_error: Some(ErrorNote {
                at: now - 30,
                error_type: "wait".into(),
                condition: "resource-constraint".into(),
                text: Some("slow\ndown".into()),
            }),
            last_timeout: None,
            last_s2s_failure: Some(S2sFailureNote {
                at: now - 10,
                condition: "remote-server-not-found".into(),
                reason: "connection failed: refused".into(),
            }),
            linked_sessions: 1,
            hibernated_sessions: 1,
            extensions: crate::store::ledger::describe_extensions(&crate::store::PushExtensions {
                encrypt: Some(crate::store::EncryptSettings {
                    key: *b"do not show this",
                    max_size: None,
                }),
                priority: true,
                muted: vec!["bot@example.org".into()],
                ..Default::default()
            }),
        };
        let removed = Removal {
            removed_at_us: (now - 3600) * 1_000_000,
            record: RemovalRecord {
                jid: "push.example.org".into(),
                node: None,
                client: "tablet".into(),
                enabled_at_us: (now - 86_400) * 1_000_000,
                reason: RemovalReason::Errors { count: 16 },
                error_count: 16,
                last_success: None,
                last_error: None,
                last_timeout: None,
                last_s2s_failure: Some(S2sFailureNote {
                    at: now - 4000,
                    condition: "remote-server-timeout".into(),
                    reason: "no answer to the connection".into(),
                }),
            },
        };
        let text = format_ledger(
            "juliet@localhost",
            &PushLedger {
                registrations: vec![view],
                removals: vec![removed],
            },
            &Config::default(),
            now,
        );
        assert!(text.starts_with("juliet@localhost: 1 push registration (push_max_devices 5)\n"));
        assert!(text.contains("\npush.example.org node 'n1'\n"), "{text}");
        assert!(
            text.contains("  sessions linked:  1 (1 hibernated)\n"),
            "{text}"
        );
        assert!(
            text.contains("wait/resource-constraint 'slow\\ndown'"),
            "escaped: {text}"
        );
        assert!(text.contains("120 bytes (not shown)"));
        assert!(
            text.contains("ago): remote-server-not-found: connection failed: refused (our link"),
            "{text}"
        );
        assert!(
            text.contains("  extensions:       encrypted (key not shown), priority, 1 muted\n"),
            "{text}"
        );
        assert!(!text.contains("do not show"), "{text}");
        assert!(text.contains("removed in the last 30 days: 1 (newest first)"));
        assert!(text.contains("push.example.org (no node)\n  why:              16 error answers in a row (push_max_errors)"), "{text}");
        // The removed registration's last s2s failure, after its last success.
        let removed_part = &text[text.find("removed in the last").unwrap_or(0)..];
        assert!(
            removed_part.contains(&format!(
                "  last success:     never\n  last s2s failure: {}: remote-server-timeout: \
                 no answer to the connection (our link",
                when(now - 4000, now)
            )),
            "{text}"
        );
    }

    #[test]
    fn a_test_push_our_links_could_not_deliver_says_why() {
        let results = [TestPushResult {
            jid: "push.example.net".into(),
            node: Some("n1".into()),
            client: "phone".into(),
            outcome: TestOutcome::Undelivered {
                condition: "remote-server-timeout".into(),
                reason: "no link within s2s_timeout".into(),
            },
            round_trip_us: None,
        }];
        let text = format_test("juliet@localhost", &results, &Config::default());
        assert!(
            text.contains(
                "push.example.net node 'n1' (enabled by 'phone'): not delivered: \
                 remote-server-timeout: no link within s2s_timeout (our link to the app \
                 server's domain)"
            ),
            "{text}"
        );
    }
}
