//! The incident side of the policy engine: `/tollgate rollback` on merged changes, the
//! `[emergency] overdue_review_blocks_bypass` switch, bypass expiry, and the ledger records
//! that rollback commands lead to. Pure: policies are parsed from text, facts are written in
//! the README's `--facts` JSON format.

use std::sync::LazyLock;

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::json;
use tollgate::ledger::decide::{self, Context};
use tollgate::ledger::record::RecordKind;
use tollgate::policy::commands::{self, Commands, Rollback};
use tollgate::policy::decision::CommandRecord;
use tollgate::policy::facts::{ChangeFacts, Comment, OverdueReview};
use tollgate::policy::{Gate, Outcome, Policy, evaluate, parse_policy};

const HEAD: &str = "4e5d6c7b8a9f0e1d2c3b4a5f6e7d8c9b0a1f2e3d";
const BASE: &str = "9f2c1e0d4b7a8c6e5f3a2b1c0d9e8f7a6b5c4d3e";

/// A low-tier policy (one approver) with an on-call role held by a user and by a team.
/// `{switch}` is replaced by the `overdue_review_blocks_bypass` line, if any.
const POLICY: &str = r#"
version = 1
governed_branches = ["main"]

[roles]
approver = ["lee"]
on_call  = ["olga", "@acme/oncall"]

[[classify]]
kind = "model_code"
paths = ["src/**"]

[tiers.low]
sign_offs = ["approver"]

[emergency]
approvers = ["on_call"]
ticket = "INC-[0-9]+"
expires_hours = 24
review_within_hours = 48
{switch}
"#;

/// The note of a rollback on a change that is still open.
const NOT_MERGED: &str = "only a merged change can be rolled back; this one is not merged";
/// The note of an emergency command by someone who may not give it.
const NOT_A_HOLDER: &str = "only holders of `on_call` with write access may roll back";

fn policy_text(switch: Option<bool>) -> String {
    let line = switch.map_or(String::new(), |on| {
        format!("overdue_review_blocks_bypass = {on}")
    });
    POLICY.replace("{switch}", &line)
}

fn policy_with(switch: Option<bool>) -> Policy {
    parse_policy(&policy_text(switch)).expect("test policy is valid")
}

fn policy() -> Policy {
    policy_with(None)
}

fn no_emergency_policy() -> Policy {
    let text = policy_text(None);
    let before = text.split("[emergency]").next().expect("has a first part");
    parse_policy(before).expect("policy without [emergency] is valid")
}

/// Minutes after 2026-11-20 10:00 UTC.
fn t(minutes: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z")
        .expect("valid time")
        .with_timezone(&Utc)
        + Duration::minutes(minutes)
}

/// An open change by alice to `main`, read from `--facts` JSON that names neither `merged`
/// nor `overdue_reviews` (both default). olga holds on-call as a user, tess through
/// `@acme/oncall`; dana has write access but no role.
fn facts() -> ChangeFacts {
    serde_json::from_value(json!({
        "author": "alice",
        "base_ref": "main",
        "base_sha": BASE,
        "head_sha": HEAD,
        "files": [{ "path": "src/model.py", "status": "modified" }],
        "commit_authors": ["alice"],
        "teams": { "@acme/oncall": ["tess"] },
        "write_access": ["alice", "lee", "olga", "tess", "dana"],
        "now": "2026-11-20T12:00:00Z"
    }))
    .expect("facts JSON is valid")
}

fn merged_facts() -> ChangeFacts {
    ChangeFacts {
        merged: true,
        ..facts()
    }
}

fn comment(author: &str, body: &str, minute: i64) -> Comment {
    Comment {
        author: author.to_owned(),
        body: body.to_owned(),
        at: t(minute),
        head_sha: HEAD.to_owned(),
        edited: false,
    }
}

fn overdue() -> OverdueReview {
    OverdueReview {
        issue: 41,
        change: 17,
        ticket: "INC-3".to_owned(),
        due: t(-60),
    }
}

/// The only command record, which must exist.
fn only_record(commands: &Commands) -> &CommandRecord {
    assert_eq!(commands.records.len(), 1, "{:?}", commands.records);
    &commands.records[0]
}

fn assert_refused(commands: &Commands, expected: &str) {
    let record = only_record(commands);
    assert!(!record.honoured, "honoured: {record:?}");
    assert!(
        record.note.contains(expected),
        "expected `{expected}` in `{}`",
        record.note
    );
    assert!(commands.rollbacks.is_empty(), "{:?}", commands.rollbacks);
    assert_eq!(commands.bypass, None);
}

fn context() -> Context {
    Context {
        forge: "github".to_owned(),
        repo: "acme/fraud".to_owned(),
        number: 17,
        head_sha: HEAD.to_owned(),
        base_sha: BASE.to_owned(),
        policy_sha: None,
        delivery: None,
        time_ms: t(120).timestamp_millis(),
    }
}

// ---- rollback honoured ---------------------------------------------------------------------

#[test]
fn the_facts_json_defaults_to_open_and_no_overdue_review_and_reads_both() {
    let f = facts();
    assert!(!f.merged);
    assert!(f.overdue_reviews.is_empty());

    let mut value = serde_json::to_value(facts()).expect("facts serialise");
    value["merged"] = json!(true);
    value["overdue_reviews"] = json!([
        { "issue": 41, "change": 17, "ticket": "INC-3", "due": "2026-11-20T09:00:00Z" }
    ]);
    let f: ChangeFacts = serde_json::from_value(value).expect("facts JSON is valid");
    assert!(f.merged);
    assert_eq!(f.overdue_reviews, vec![overdue()]);

    let mut value = serde_json::to_value(facts()).expect("facts serialise");
    value["overdue_reviews"] = json!([{ "issue": 41, "change": 17, "ticket": "INC-3" }]);
    let error = serde_json::from_value::<ChangeFacts>(value).expect_err("`due` is required");
    assert!(error.to_string().contains("due"), "{error}");
}

#[test]
fn an_on_call_user_with_write_access_rolls_back_a_merged_change() {
    let mut f = merged_facts();
    f.comments.push(comment(
        "olga",
        "Conversion fell off a cliff.\n  /tollgate rollback INC-4711 conversion dropped 10%  ",
        30,
    ));
    let read = commands::read(&policy(), &f);
    assert_eq!(
        read.rollbacks,
        vec![Rollback {
            by: "olga".to_owned(),
            at: t(30),
            ticket: "INC-4711".to_owned(),
            reason: "conversion dropped 10%".to_owned(),
        }]
    );
    let record = only_record(&read);
    assert!(record.honoured);
    assert_eq!(record.note, "rollback requested under INC-4711");
    assert_eq!(
        record.command,
        "/tollgate rollback INC-4711 conversion dropped 10%"
    );
    assert_eq!(record.author, "olga");
    assert_eq!(record.at, t(30));
    assert_eq!(record.for_head, HEAD);
    assert_eq!(read.bypass, None, "a rollback is no bypass");

    // The decision lists the rollback command but its outcome does not change.
    let decision = evaluate(&policy(), &f);
    assert_eq!(decision.commands, read.records);
    assert!(
        matches!(decision.outcome, Outcome::Waiting { .. }),
        "{:?}",
        decision.outcome
    );
    assert!(!decision.gates.contains(&Gate::Emergency));
}

#[test]
fn an_on_call_team_member_rolls_back_without_a_reason() {
    let mut f = merged_facts();
    // Logins are compared case-insensitively, as forges do.
    f.comments
        .push(comment("Tess", "/tollgate rollback INC-9", 30));
    let read = commands::read(&policy(), &f);
    assert_eq!(
        read.rollbacks,
        vec![Rollback {
            by: "Tess".to_owned(),
            at: t(30),
            ticket: "INC-9".to_owned(),
            reason: String::new(),
        }]
    );
    assert!(only_record(&read).honoured);

    // Membership comes from the team as the facts list it: without it, tess holds nothing.
    f.teams.clear();
    assert_refused(&commands::read(&policy(), &f), NOT_A_HOLDER);
}

#[test]
fn several_rollbacks_are_kept_oldest_first() {
    let mut f = merged_facts();
    f.comments
        .push(comment("olga", "/tollgate rollback INC-1 first", 10));
    f.comments
        .push(comment("dana", "/tollgate rollback INC-2 not mine", 20));
    f.comments
        .push(comment("tess", "/tollgate rollback INC-3 second", 30));
    let read = commands::read(&policy(), &f);
    let asked: Vec<(&str, &str, DateTime<Utc>)> = read
        .rollbacks
        .iter()
        .map(|r| (r.by.as_str(), r.ticket.as_str(), r.at))
        .collect();
    assert_eq!(
        asked,
        vec![("olga", "INC-1", t(10)), ("tess", "INC-3", t(30))]
    );
    let honoured: Vec<bool> = read.records.iter().map(|r| r.honoured).collect();
    assert_eq!(honoured, vec![true, false, true]);
}

// ---- rollback refused ----------------------------------------------------------------------

#[test]
fn a_rollback_is_refused_on_an_open_change() {
    let mut f = facts();
    f.comments
        .push(comment("olga", "/tollgate rollback INC-1 broken", 30));
    assert_refused(&commands::read(&policy(), &f), NOT_MERGED);

    f.merged = true;
    assert!(only_record(&commands::read(&policy(), &f)).honoured);
}

#[test]
fn a_rollback_is_refused_without_an_emergency_section() {
    let mut f = merged_facts();
    f.comments
        .push(comment("olga", "/tollgate rollback INC-1 broken", 30));
    assert_refused(
        &commands::read(&no_emergency_policy(), &f),
        "this repository's policy allows no roll back (no [emergency] section)",
    );
    assert!(only_record(&commands::read(&policy(), &f)).honoured);
}

#[test]
fn a_rollback_is_refused_for_someone_without_an_on_call_role() {
    let mut f = merged_facts();
    // dana has write access but no role; lee holds a role, just not on-call.
    for who in ["dana", "lee"] {
        f.comments = vec![comment(who, "/tollgate rollback INC-1 broken", 30)];
        assert_refused(&commands::read(&policy(), &f), NOT_A_HOLDER);
    }
}

#[test]
fn a_rollback_is_refused_for_an_on_call_holder_without_write_access() {
    for who in ["olga", "tess"] {
        let mut f = merged_facts();
        f.comments
            .push(comment(who, "/tollgate rollback INC-1 broken", 30));
        assert!(
            only_record(&commands::read(&policy(), &f)).honoured,
            "{who}"
        );
        f.write_access.remove(who);
        assert_refused(&commands::read(&policy(), &f), NOT_A_HOLDER);
    }
}

#[test]
fn an_edited_rollback_comment_is_refused() {
    let mut f = merged_facts();
    f.comments.push(Comment {
        edited: true,
        ..comment("olga", "/tollgate rollback INC-1 broken", 30)
    });
    assert_refused(
        &commands::read(&policy(), &f),
        "the comment was edited; commands count only as first written",
    );
}

#[test]
fn a_rollback_without_a_ticket_gets_the_usage() {
    let mut f = merged_facts();
    f.comments.push(comment("olga", "/tollgate rollback", 30));
    assert_refused(
        &commands::read(&policy(), &f),
        "usage: /tollgate rollback <TICKET> [reason]",
    );
}

#[test]
fn a_rollback_ticket_must_match_the_whole_pattern() {
    for ticket in ["JIRA-1", "INC-", "xINC-1", "INC-1x", "inc-1"] {
        let mut f = merged_facts();
        f.comments.push(comment(
            "olga",
            &format!("/tollgate rollback {ticket} broken"),
            30,
        ));
        assert_refused(
            &commands::read(&policy(), &f),
            &format!("ticket `{ticket}` does not match the policy's pattern `INC-[0-9]+`"),
        );
    }
}

#[test]
fn an_unknown_command_names_rollback_among_the_known_ones() {
    let mut f = merged_facts();
    f.comments
        .push(comment("olga", "/tollgate revert INC-1\n/tollgate", 30));
    let read = commands::read(&policy(), &f);
    let notes: Vec<&str> = read.records.iter().map(|r| r.note.as_str()).collect();
    assert_eq!(
        notes,
        vec![
            "unknown command `revert`; commands: bypass, recheck, rollback",
            "no command given; commands: bypass, recheck, rollback",
        ]
    );
    assert!(read.rollbacks.is_empty());
}

// ---- the overdue-review switch -------------------------------------------------------------

/// The note that refuses every `what` while review #41 is overdue.
fn overdue_note(what: &str) -> String {
    format!(
        "the post-incident review #41 (for #17, INC-3) was due 2026-11-20 09:00 UTC and is \
         still open; this repository's policy refuses every {what} until it is closed"
    )
}

fn bypass_facts(overdue_reviews: Vec<OverdueReview>) -> ChangeFacts {
    let mut f = facts();
    f.overdue_reviews = overdue_reviews;
    f.comments
        .push(comment("olga", "/tollgate bypass INC-8 outage", 30));
    f
}

#[test]
fn the_switch_parses_as_true_or_false_and_defaults_to_false() {
    let switch = |p: Policy| {
        p.emergency
            .expect("has [emergency]")
            .overdue_review_blocks_bypass
    };
    assert!(switch(policy_with(Some(true))));
    assert!(!switch(policy_with(Some(false))));
    assert!(!switch(policy_with(None)));
}

#[test]
fn the_emergency_section_still_rejects_unknown_keys_and_non_booleans() {
    let typo = POLICY.replace("{switch}", "overdue_reviews_block_bypass = true");
    let errors = parse_policy(&typo).expect_err("unknown key");
    let text = errors.to_string();
    assert!(
        text.contains("unknown field `overdue_reviews_block_bypass`"),
        "{text}"
    );
    assert!(
        text.contains("overdue_review_blocks_bypass"),
        "the message lists the real key: {text}"
    );

    let text_value = POLICY.replace("{switch}", "overdue_review_blocks_bypass = \"yes\"");
    assert!(parse_policy(&text_value).is_err());
}

#[test]
fn with_the_switch_on_an_overdue_review_refuses_a_bypass() {
    let f = bypass_facts(vec![overdue()]);
    let p = policy_with(Some(true));
    assert_refused(&commands::read(&p, &f), &overdue_note("bypass"));

    let decision = evaluate(&p, &f);
    assert!(
        matches!(decision.outcome, Outcome::Waiting { .. }),
        "{:?}",
        decision.outcome
    );
    assert!(!decision.outcome.allows_merge());
    assert!(!decision.gates.contains(&Gate::Emergency));
    assert!(!decision.commands[0].honoured);
    assert!(decision.commands[0].note.contains("#41"));
    assert!(decision.commands[0].note.contains("INC-3"));
}

#[test]
fn with_the_switch_on_the_first_overdue_review_is_named() {
    let later = OverdueReview {
        issue: 52,
        change: 20,
        ticket: "INC-5".to_owned(),
        due: t(-30),
    };
    let f = bypass_facts(vec![overdue(), later]);
    assert_refused(
        &commands::read(&policy_with(Some(true)), &f),
        &overdue_note("bypass"),
    );
}

#[test]
fn with_the_switch_on_an_overdue_review_refuses_a_rollback() {
    let mut f = merged_facts();
    f.overdue_reviews = vec![overdue()];
    f.comments
        .push(comment("tess", "/tollgate rollback INC-8 broken", 30));
    assert_refused(
        &commands::read(&policy_with(Some(true)), &f),
        &overdue_note("roll back"),
    );
    // The same request passes once the switch is off.
    let read = commands::read(&policy_with(Some(false)), &f);
    assert!(only_record(&read).honoured);
    assert_eq!(read.rollbacks.len(), 1);
}

#[test]
fn with_the_switch_off_an_overdue_review_does_not_block_a_bypass() {
    let f = bypass_facts(vec![overdue()]);
    for p in [policy_with(Some(false)), policy_with(None)] {
        let decision = evaluate(&p, &f);
        let Outcome::Bypassed { by, ticket, .. } = &decision.outcome else {
            panic!("{:?}", decision.outcome)
        };
        assert_eq!((by.as_str(), ticket.as_str()), ("olga", "INC-8"));
        assert!(decision.commands[0].honoured);
    }
}

#[test]
fn with_the_switch_on_and_no_overdue_review_a_bypass_is_honoured() {
    let f = bypass_facts(Vec::new());
    let decision = evaluate(&policy_with(Some(true)), &f);
    assert!(
        matches!(decision.outcome, Outcome::Bypassed { .. }),
        "{:?}",
        decision.outcome
    );
    assert!(decision.gates.contains(&Gate::Emergency));
}

// ---- bypass expiry -------------------------------------------------------------------------

#[test]
fn a_bypass_counts_until_just_before_it_expires() {
    let mut f = facts();
    f.comments
        .push(comment("olga", "/tollgate bypass INC-8 outage", 0));
    let expires_at = t(0) + Duration::hours(24);

    f.now = expires_at - Duration::seconds(1);
    let read = commands::read(&policy(), &f);
    assert_eq!(only_record(&read).note, "bypass until 2026-11-21 10:00 UTC");
    let bypass = read.bypass.expect("honoured");
    assert_eq!(bypass.expires_at, expires_at);
    assert_eq!(bypass.review_due, t(0) + Duration::hours(48));
    let decision = evaluate(&policy(), &f);
    let Outcome::Bypassed {
        expires_at: until, ..
    } = decision.outcome
    else {
        panic!("{:?}", decision.outcome)
    };
    assert_eq!(until, expires_at);
}

#[test]
fn a_bypass_is_refused_as_expired_at_and_after_its_expiry() {
    let mut f = facts();
    f.comments
        .push(comment("olga", "/tollgate bypass INC-8 outage", 0));
    let expires_at = t(0) + Duration::hours(24);
    for now in [
        expires_at,
        expires_at + Duration::seconds(1),
        expires_at + Duration::days(30),
    ] {
        f.now = now;
        let read = commands::read(&policy(), &f);
        let record = only_record(&read);
        assert!(!record.honoured, "{now}");
        assert_eq!(record.note, "expired at 2026-11-21 10:00 UTC");
        assert_eq!(read.bypass, None);
        let decision = evaluate(&policy(), &f);
        assert!(
            matches!(decision.outcome, Outcome::Waiting { .. }),
            "{now}: {:?}",
            decision.outcome
        );
        assert!(!decision.gates.contains(&Gate::Emergency));
    }
}

#[test]
fn a_shorter_expiry_in_the_policy_is_what_counts() {
    let text = policy_text(None).replace("expires_hours = 24", "expires_hours = 2");
    let p = parse_policy(&text).expect("valid");
    let mut f = facts();
    f.comments
        .push(comment("olga", "/tollgate bypass INC-8 outage", 0));
    f.now = t(119);
    assert!(matches!(evaluate(&p, &f).outcome, Outcome::Bypassed { .. }));
    f.now = t(120);
    let decision = evaluate(&p, &f);
    assert!(!matches!(decision.outcome, Outcome::Bypassed { .. }));
    assert_eq!(decision.commands[0].note, "expired at 2026-11-20 12:00 UTC");
}

// ---- ledger records ------------------------------------------------------------------------

fn command_records(f: &ChangeFacts) -> Vec<(String, tollgate::ledger::record::DecisionRecord)> {
    let decision = evaluate(&policy(), f);
    decide::records_for(&decision, &context())
        .into_iter()
        .filter(|(key, _)| key.starts_with(decide::COMMAND_KEY_PREFIX))
        .collect()
}

#[test]
fn command_names_are_read_from_the_line() {
    assert_eq!(decide::command_name("/tollgate bypass X y"), Some("bypass"));
    assert_eq!(
        decide::command_name("/tollgate   rollback INC-1"),
        Some("rollback")
    );
    assert_eq!(decide::command_name("/tollgate"), None);
    assert_eq!(decide::command_name("please /tollgate rollback"), None);
}

#[test]
fn rollback_commands_are_recorded_with_the_commenter_as_actor() {
    let mut f = merged_facts();
    f.comments.push(comment(
        "olga",
        "/tollgate rollback INC-4711 bad deploy",
        30,
    ));
    f.comments
        .push(comment("dana", "/tollgate rollback INC-4712 me too", 40));
    let records = command_records(&f);
    let summary: Vec<(RecordKind, Option<&str>)> = records
        .iter()
        .map(|(_, r)| (r.kind, r.actor.as_deref()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (RecordKind::RollbackRequested, Some("olga")),
            (RecordKind::RollbackRefused, Some("dana")),
        ]
    );
    assert_eq!(
        records[0].1.detail,
        "`/tollgate rollback INC-4711 bad deploy`: rollback requested under INC-4711"
    );
    assert_eq!(
        records[1].1.detail,
        format!("`/tollgate rollback INC-4712 me too`: {NOT_A_HOLDER}")
    );
    let decision = evaluate(&policy(), &f);
    let keys = decide::command_keys(&decision.commands);
    for ((key, _), expected) in records.iter().zip(&keys) {
        assert_eq!(key, expected);
    }
    assert_eq!(
        records[0].0,
        format!(
            "command:olga:{}:{HEAD}:true:rollback",
            t(30).timestamp_millis()
        )
    );
}

/// Two commands in one comment are two records: their keys differ (a bypass and a rollback
/// refused together, two rollbacks), and a bypass's key is pinned to its head as before.
#[test]
fn commands_in_one_comment_never_share_a_record_key() {
    let mut f = merged_facts();
    f.comments.push(comment(
        "dana",
        "/tollgate bypass INC-1 x\n/tollgate rollback INC-1\n/tollgate rollback INC-2",
        30,
    ));
    let records = command_records(&f);
    assert_eq!(records.len(), 3, "{records:#?}");
    let keys: std::collections::BTreeSet<&String> = records.iter().map(|(k, _)| k).collect();
    assert_eq!(keys.len(), 3, "{keys:#?}");
    let at = t(30).timestamp_millis();
    assert_eq!(records[0].0, format!("command:dana:{at}:{HEAD}:false"));
    assert_eq!(
        records[1].0,
        format!("command:dana:{at}:{HEAD}:false:rollback")
    );
    assert_eq!(
        records[2].0,
        format!("command:dana:{at}:{HEAD}:false:rollback:2")
    );
    let pinned = decide::pinned_heads(&keys.into_iter().cloned().collect::<Vec<_>>());
    assert_eq!(pinned.get(&("dana".to_owned(), at)), Some(&HEAD.to_owned()));
}

/// Hours beyond a year are refused when the policy is read, never overflowing a date later.
#[test]
fn emergency_hours_beyond_a_year_are_refused_naming_the_key() {
    for key in ["expires_hours", "review_within_hours"] {
        let text =
            policy_text(None).replace("[emergency]", &format!("[emergency]\n{key} = 4294967295"));
        let text = if key == "expires_hours" {
            text.replacen("expires_hours = 24\n", "", 1)
        } else {
            text.replacen("review_within_hours = 48\n", "", 1)
        };
        let errors = parse_policy(&text).unwrap_err().render(".governance.toml");
        assert!(
            errors.contains(&format!("{key} = 4294967295 is more than a year")),
            "{errors}"
        );
    }
    assert!(
        parse_policy(&policy_text(None).replace("[emergency]", "[emergency]\n# a year\n")).is_ok()
    );
}

#[test]
fn the_same_rollback_has_different_keys_when_honoured_and_when_refused() {
    let mut open = facts();
    open.comments
        .push(comment("olga", "/tollgate rollback INC-1 broken", 30));
    let merged = ChangeFacts {
        merged: true,
        ..open.clone()
    };
    let refused = command_records(&open);
    let honoured = command_records(&merged);
    assert_eq!(refused.len(), 1);
    assert_eq!(honoured.len(), 1);
    assert_eq!(refused[0].1.kind, RecordKind::RollbackRefused);
    assert!(refused[0].1.detail.ends_with(NOT_MERGED));
    assert_eq!(honoured[0].1.kind, RecordKind::RollbackRequested);
    assert_ne!(refused[0].0, honoured[0].0);
    assert_eq!(refused[0].1.actor.as_deref(), Some("olga"));
    assert_eq!(honoured[0].1.actor.as_deref(), Some("olga"));
}

#[test]
fn rollbacks_and_bypasses_are_recorded_side_by_side_and_recheck_is_not() {
    let mut f = facts();
    f.comments
        .push(comment("olga", "/tollgate bypass INC-8 outage", 10));
    f.comments
        .push(comment("tess", "/tollgate rollback INC-8 broken", 20));
    f.comments.push(comment("dana", "/tollgate recheck", 30));
    f.comments
        .push(comment("dana", "/tollgate bypass INC-8 outage", 40));
    let kinds: Vec<RecordKind> = command_records(&f).iter().map(|(_, r)| r.kind).collect();
    assert_eq!(
        kinds,
        vec![
            RecordKind::BypassHonoured,
            RecordKind::RollbackRefused,
            RecordKind::BypassRefused,
        ]
    );
}

#[test]
fn a_rollback_on_a_change_outside_the_policy_is_still_recorded() {
    let mut f = merged_facts();
    f.files[0].path = "README.md".to_owned();
    f.comments
        .push(comment("olga", "/tollgate rollback INC-1 broken", 30));
    let decision = evaluate(&policy(), &f);
    assert!(
        matches!(decision.outcome, Outcome::NotGoverned { .. }),
        "{:?}",
        decision.outcome
    );
    let records = decide::records_for(&decision, &context());
    let rollback = records
        .iter()
        .find(|(_, r)| r.kind == RecordKind::RollbackRequested)
        .expect("the rollback is recorded");
    assert_eq!(rollback.1.actor.as_deref(), Some("olga"));
    assert_eq!(rollback.1.outcome, "not_governed");
}

// ---- properties ----------------------------------------------------------------------------

/// How the commenter relates to the on-call role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    User,
    Team,
    Nobody,
}

/// The ticket given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ticket {
    Valid,
    Invalid,
    Missing,
}

/// One combination of the conditions a rollback depends on.
#[derive(Debug, Clone)]
struct Case {
    emergency: bool,
    merged: bool,
    holder: Holder,
    write_access: bool,
    edited: bool,
    ticket: Ticket,
    number: u32,
    reason: String,
    switch: bool,
    overdue: bool,
}

impl Case {
    fn commenter(&self) -> &'static str {
        match self.holder {
            Holder::User => "olga",
            Holder::Team => "tess",
            Holder::Nobody => "dana",
        }
    }

    fn ticket(&self) -> String {
        match self.ticket {
            Ticket::Valid => format!("INC-{}", self.number),
            Ticket::Invalid => format!("OPS-{}", self.number),
            Ticket::Missing => String::new(),
        }
    }

    fn facts(&self, command: &str) -> ChangeFacts {
        let mut f = facts();
        f.merged = self.merged;
        if self.overdue {
            f.overdue_reviews.push(overdue());
        }
        if !self.write_access {
            f.write_access.remove(self.commenter());
        }
        // Without a ticket there is no reason either (its first word would be the ticket).
        let body = match self.ticket {
            Ticket::Missing => command.to_owned(),
            _ => format!("{command} {} {}", self.ticket(), self.reason),
        };
        f.comments.push(Comment {
            edited: self.edited,
            ..comment(self.commenter(), body.trim_end(), 30)
        });
        f
    }

    fn policy(&self) -> &'static Policy {
        match (self.emergency, self.switch) {
            (false, _) => &POLICIES[0],
            (true, false) => &POLICIES[1],
            (true, true) => &POLICIES[2],
        }
    }

    /// Every required condition holds.
    fn allows_rollback(&self) -> bool {
        self.emergency
            && self.merged
            && self.holder != Holder::Nobody
            && self.write_access
            && !self.edited
            && self.ticket == Ticket::Valid
            && !(self.switch && self.overdue)
    }

    /// The refusal notes the conditions that fail could each explain.
    fn possible_refusals(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if !self.emergency {
            notes.push("no [emergency] section".to_owned());
        }
        if !self.merged {
            notes.push(NOT_MERGED.to_owned());
        }
        if self.holder == Holder::Nobody || !self.write_access {
            notes.push(NOT_A_HOLDER.to_owned());
        }
        if self.edited {
            notes.push("the comment was edited".to_owned());
        }
        match self.ticket {
            Ticket::Valid => {}
            Ticket::Invalid => notes.push("does not match the policy's pattern".to_owned()),
            Ticket::Missing => notes.push("usage: /tollgate rollback <TICKET>".to_owned()),
        }
        if self.switch && self.overdue {
            notes.push(overdue_note("roll back"));
        }
        notes
    }
}

/// Without `[emergency]`, with the switch off, with it on.
static POLICIES: LazyLock<[Policy; 3]> = LazyLock::new(|| {
    [
        no_emergency_policy(),
        policy_with(Some(false)),
        policy_with(Some(true)),
    ]
});

fn holder() -> impl Strategy<Value = Holder> {
    prop_oneof![Just(Holder::User), Just(Holder::Team), Just(Holder::Nobody)]
}

fn ticket() -> impl Strategy<Value = Ticket> {
    prop_oneof![
        3 => Just(Ticket::Valid),
        1 => Just(Ticket::Invalid),
        1 => Just(Ticket::Missing),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        (prop::bool::weighted(0.9), any::<bool>(), holder()),
        (any::<bool>(), any::<bool>(), ticket(), any::<u32>()),
        ("[a-z]{0,8}( [a-z]{1,8}){0,3}", any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(
                (emergency, merged, holder),
                (write_access, edited, ticket, number),
                (reason, switch, overdue),
            )| Case {
                emergency,
                merged,
                holder,
                write_access,
                edited,
                ticket,
                number,
                reason,
                switch,
                overdue,
            },
        )
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// A rollback is honoured exactly when every required condition holds; then it carries
    /// who, when, the ticket and the reason; otherwise the note names a condition that fails.
    #[test]
    fn a_rollback_is_honoured_only_when_every_condition_holds(case in case()) {
        let read = commands::read(case.policy(), &case.facts("/tollgate rollback"));
        prop_assert_eq!(read.records.len(), 1);
        let record = &read.records[0];
        prop_assert_eq!(record.honoured, case.allows_rollback(), "{:?}: {}", case, record.note);
        if case.allows_rollback() {
            let expected = Rollback {
                by: case.commenter().to_owned(),
                at: t(30),
                ticket: case.ticket(),
                reason: case.reason.trim().to_owned(),
            };
            prop_assert_eq!(read.rollbacks, vec![expected]);
        } else {
            prop_assert!(read.rollbacks.is_empty());
            let possible = case.possible_refusals();
            prop_assert!(
                possible.iter().any(|n| record.note.contains(n.as_str())),
                "{:?}: `{}` explains none of {:?}", case, record.note, possible
            );
        }
        prop_assert_eq!(read.bypass, None);
    }

    /// With the switch on and a review overdue, no emergency command passes, whoever asks.
    #[test]
    fn an_overdue_review_under_the_switch_stops_every_emergency_command(
        case in case(),
        bypass in any::<bool>(),
    ) {
        let case = Case { emergency: true, switch: true, overdue: true, ..case };
        let command = if bypass { "/tollgate bypass" } else { "/tollgate rollback" };
        let f = case.facts(command);
        let read = commands::read(case.policy(), &f);
        prop_assert!(!read.records[0].honoured);
        prop_assert!(read.rollbacks.is_empty());
        prop_assert_eq!(read.bypass, None);
        let decision = evaluate(case.policy(), &f);
        let bypassed = matches!(decision.outcome, Outcome::Bypassed { .. });
        prop_assert!(!bypassed, "{:?}", decision.outcome);
    }
}
