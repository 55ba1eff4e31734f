//! One test per rule of the policy engine: classification, tiers, evidence, sign-offs and
//! segregation of duties, vetoes, staleness, bypass.

use chrono::{DateTime, Duration, Utc};
use tollgate::policy::decision::{BlockReason, EvidenceStatus, IgnoreReason, Signal};
use tollgate::policy::facts::{
    ChangeFacts, ChangedFile, Comment, FileStatus, Review, ReviewVerdict,
};
use tollgate::policy::{
    ChangeKind, Decision, Gate, Outcome, Policy, RiskTier, evaluate, parse_policy,
};

const HEAD: &str = "headheadheadheadheadheadheadheadheadhead";
const OLD: &str = "0ld0ld0ld0ld0ld0ld0ld0ld0ld0ld0ld0ld0ld0";

/// A policy close to the playbook's worked example 1.
const POLICY: &str = r#"
version = 1
governed_branches = ["main", "release/*"]

[roles]
data_reviewer = ["@acme/data", "dana"]
risk_reviewer = ["@acme/risk"]
ops_reviewer  = ["omar"]
approver      = ["@acme/leads"]
on_call       = ["olga", "alice"]

[[classify]]
kind = "model_artifact"
paths = ["models/**/*.onnx"]
[[classify]]
kind = "training_config"
paths = ["configs/train/**"]
[[classify]]
kind = "feature_schema"
paths = ["features/**"]
[[classify]]
kind = "data_source"
paths = ["data/sources/**"]
[[classify]]
kind = "docs"
paths = ["docs/**", "**/*.md"]

[[key_rules]]
paths = ["configs/train/**"]
keys = ["objective"]
kind = "objective_change"
[[key_rules]]
paths = ["features/**"]
when = "removed_field"
kind = "breaking_schema_change"

[metrics]
files = ["eval/metrics.json"]

[risk.high]
kinds = ["model_artifact"]
labels = ["sensitive-domain"]
paths = ["pii/**"]

[risk.medium]
kinds = ["feature_schema"]

[tiers.low]
sign_offs = ["approver"]
[tiers.medium]
sign_offs = ["data_reviewer", "approver"]
[tiers.high]
sign_offs = ["data_reviewer", "risk_reviewer", "ops_reviewer", "approver"]
evidence = ["model_card", "rollback_plan"]
observation_hours = 24

[evidence.model_card]
paths = ["models/*/MODEL_CARD.md"]
sections = ["Intended use", "Metrics", "Limitations"]
[evidence.rollback_plan]
pr_body_section = "Rollback plan"

[emergency]
approvers = ["on_call"]
ticket = "INC-[0-9]+"
expires_hours = 24
review_within_hours = 48
"#;

const CARD: &str =
    "# Fraud\n## Intended use\nPayments.\n## Metrics\nAUC 0.93\n## Limitations\nNot loans.\n";
const BODY: &str = "## Rollback plan\nRevert this PR.\n";

fn policy() -> Policy {
    parse_policy(POLICY).expect("test policy is valid")
}

fn t(minutes: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + Duration::minutes(minutes)
}

fn file(path: &str, status: FileStatus) -> ChangedFile {
    ChangedFile {
        path: path.to_owned(),
        status,
        previous_path: None,
        additions: 1,
        deletions: 0,
    }
}

/// A change by alice to `main` touching `paths`, with everyone in the test org able to write.
fn facts(paths: &[&str]) -> ChangeFacts {
    let mut facts = ChangeFacts {
        author: "alice".to_owned(),
        base_ref: "main".to_owned(),
        base_sha: "base".to_owned(),
        head_ref: "feature".to_owned(),
        head_sha: HEAD.to_owned(),
        files: paths
            .iter()
            .map(|p| file(p, FileStatus::Modified))
            .collect(),
        labels: Vec::new(),
        body: BODY.to_owned(),
        base_contents: Default::default(),
        head_contents: Default::default(),
        head_paths: Default::default(),
        reviews: Vec::new(),
        comments: Vec::new(),
        commit_authors: ["alice".to_owned()].into(),
        teams: [
            ("@acme/data", vec!["dave"]),
            ("@acme/risk", vec!["rita", "rick"]),
            ("@acme/leads", vec!["lee", "rita"]),
        ]
        .into_iter()
        .map(|(team, members)| {
            (
                team.to_owned(),
                members.into_iter().map(str::to_owned).collect(),
            )
        })
        .collect(),
        write_access: [
            "alice", "dana", "dave", "rita", "rick", "omar", "lee", "olga",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect(),
        now: t(600),
        merged: false,
        overdue_reviews: Vec::new(),
    };
    facts
        .head_contents
        .insert("models/fraud/MODEL_CARD.md".to_owned(), CARD.to_owned());
    facts
}

fn review(facts: &mut ChangeFacts, who: &str, state: ReviewVerdict, minute: i64) {
    facts.reviews.push(Review {
        reviewer: who.to_owned(),
        state,
        commit: HEAD.to_owned(),
        at: t(minute),
        changed_after: Some(Vec::new()),
    });
}

fn approve(facts: &mut ChangeFacts, who: &str, minute: i64) {
    review(facts, who, ReviewVerdict::Approved, minute);
}

fn filled(decision: &Decision) -> Vec<(String, String)> {
    decision
        .sign_offs
        .iter()
        .filter_map(|s| {
            s.filled_by
                .as_ref()
                .map(|f| (s.role.clone(), f.login.clone()))
        })
        .collect()
}

fn ignored(decision: &Decision, login: &str) -> Option<IgnoreReason> {
    decision
        .ignored_approvals
        .iter()
        .find(|i| i.login == login)
        .map(|i| i.reason.clone())
}

/// A high-risk change with all evidence in place.
fn high_risk() -> ChangeFacts {
    facts(&["models/fraud/model.onnx", "models/fraud/MODEL_CARD.md"])
}

// ---- classification and tiers --------------------------------------------------------------

#[test]
fn a_change_touching_no_governed_path_is_not_governed() {
    let decision = evaluate(&policy(), &facts(&["src/app.py", "README.txt"]));
    assert!(
        matches!(decision.outcome, Outcome::NotGoverned { .. }),
        "{:?}",
        decision.outcome
    );
    assert_eq!(decision.tier, None);
    assert!(decision.outcome.allows_merge());
}

#[test]
fn docs_alone_do_not_govern_a_change() {
    let decision = evaluate(&policy(), &facts(&["docs/usage.md"]));
    assert!(matches!(decision.outcome, Outcome::NotGoverned { .. }));
}

#[test]
fn a_base_branch_outside_the_governed_list_is_not_governed() {
    let mut f = high_risk();
    f.base_ref = "experiments".to_owned();
    let decision = evaluate(&policy(), &f);
    let Outcome::NotGoverned { reason } = &decision.outcome else {
        panic!("{:?}", decision.outcome)
    };
    assert!(reason.contains("experiments"), "{reason}");
    f.base_ref = "release/2026-11".to_owned();
    assert_eq!(evaluate(&policy(), &f).tier, Some(RiskTier::High));
}

#[test]
fn a_file_may_have_several_kinds_and_the_highest_tier_wins() {
    let decision = evaluate(
        &policy(),
        &facts(&["features/user.json", "models/fraud/model.onnx"]),
    );
    assert_eq!(decision.tier, Some(RiskTier::High));
    assert_eq!(decision.reasons[0].tier, RiskTier::High);
    assert!(decision.reasons.iter().any(|r| r.tier == RiskTier::Medium));
    assert_eq!(decision.gates, vec![Gate::Data, Gate::Model]);
}

#[test]
fn a_governed_change_without_higher_signals_is_low() {
    let mut f = facts(&["configs/train/lr.yaml"]);
    f.base_contents.insert(
        "configs/train/lr.yaml".to_owned(),
        "objective: x\nlr: 0.1\n".to_owned(),
    );
    f.head_contents.insert(
        "configs/train/lr.yaml".to_owned(),
        "objective: x\nlr: 0.2\n".to_owned(),
    );
    let decision = evaluate(&policy(), &f);
    assert_eq!(decision.tier, Some(RiskTier::Low), "{:?}", decision.reasons);
}

#[test]
fn a_new_data_source_is_high_risk_by_the_playbook_floor() {
    let mut f = facts(&[]);
    f.files
        .push(file("data/sources/payments.yaml", FileStatus::Added));
    let decision = evaluate(&policy(), &f);
    assert_eq!(decision.tier, Some(RiskTier::High));
    assert!(decision.reasons.iter().any(|r| matches!(
        &r.signal,
        Signal::Kind {
            kind: ChangeKind::DataSource,
            floor: true,
            ..
        }
    )));
    assert!(decision.gates.contains(&Gate::Data));
}

#[test]
fn labels_and_sensitive_paths_raise_the_tier() {
    let mut f = facts(&["docs/x.md", "eval/metrics.json"]);
    f.labels.push("sensitive-domain".to_owned());
    let decision = evaluate(&policy(), &f);
    assert_eq!(decision.tier, Some(RiskTier::High));
    assert!(decision.reasons.iter().any(|r| r.signal
        == Signal::Label {
            label: "sensitive-domain".to_owned()
        }));
    let decision = evaluate(&policy(), &facts(&["pii/masking.py"]));
    assert_eq!(decision.tier, Some(RiskTier::High));
}

#[test]
fn a_changed_objective_key_is_an_objective_change_and_high_risk() {
    let mut f = facts(&["configs/train/fraud.yaml"]);
    f.base_contents.insert(
        "configs/train/fraud.yaml".to_owned(),
        "objective: binary\nlr: 0.1\n".to_owned(),
    );
    f.head_contents.insert(
        "configs/train/fraud.yaml".to_owned(),
        "objective: focal\nlr: 0.1\n".to_owned(),
    );
    let decision = evaluate(&policy(), &f);
    assert_eq!(decision.tier, Some(RiskTier::High));
    let key = decision.reasons.iter().find_map(|r| match &r.signal {
        Signal::Key {
            kind: ChangeKind::ObjectiveChange,
            detail,
            ..
        } => Some(detail.clone()),
        _ => None,
    });
    assert!(
        key.expect("an objective change reason")
            .contains("\"binary\" → \"focal\"")
    );

    // Only the learning rate moved: no objective change, low risk.
    f.head_contents.insert(
        "configs/train/fraud.yaml".to_owned(),
        "objective: binary\nlr: 0.2\n".to_owned(),
    );
    assert_eq!(evaluate(&policy(), &f).tier, Some(RiskTier::Low));
}

#[test]
fn unreadable_structured_files_fail_closed() {
    let f = facts(&["configs/train/fraud.yaml"]);
    // No contents given for a file a key rule must read: assumed to be an objective change.
    assert_eq!(evaluate(&policy(), &f).tier, Some(RiskTier::High));
}

#[test]
fn a_removed_schema_field_is_at_least_medium() {
    let mut f = facts(&["features/user.json"]);
    f.base_contents.insert(
        "features/user.json".to_owned(),
        r#"{"fields": [{"name": "age"}, {"name": "zip"}]}"#.to_owned(),
    );
    f.head_contents.insert(
        "features/user.json".to_owned(),
        r#"{"fields": [{"name": "age"}]}"#.to_owned(),
    );
    let decision = evaluate(&policy(), &f);
    assert!(decision.tier >= Some(RiskTier::Medium));
    assert!(decision.reasons.iter().any(|r| matches!(
        &r.signal,
        Signal::Key { kind: ChangeKind::BreakingSchemaChange, key, .. } if key == "fields[zip]"
    )));
}

fn metric_tier(base: f64, head: f64) -> Option<RiskTier> {
    let mut f = facts(&["eval/metrics.json"]);
    f.base_contents.insert(
        "eval/metrics.json".to_owned(),
        format!(r#"{{"auc": {base}}}"#),
    );
    f.head_contents.insert(
        "eval/metrics.json".to_owned(),
        format!(r#"{{"auc": {head}}}"#),
    );
    evaluate(&policy(), &f).tier
}

#[test]
fn metric_shifts_follow_the_playbook_matrix() {
    assert_eq!(
        metric_tier(0.900, 0.905),
        Some(RiskTier::Low),
        "+0.56 % is within ±1 %"
    );
    assert_eq!(
        metric_tier(0.900, 0.891),
        Some(RiskTier::Low),
        "exactly −1 % is within ±1 %"
    );
    assert_eq!(
        metric_tier(0.900, 0.927),
        Some(RiskTier::Medium),
        "+3 % is medium"
    );
    assert_eq!(
        metric_tier(0.900, 0.873),
        Some(RiskTier::Medium),
        "−3 % is medium"
    );
    assert_eq!(
        metric_tier(0.900, 0.990),
        Some(RiskTier::High),
        "+10 % is high"
    );
    assert_eq!(
        metric_tier(0.900, 0.800),
        Some(RiskTier::High),
        "−11 % is high"
    );
}

#[test]
fn per_metric_thresholds_override_the_default() {
    let text = POLICY.replace(
        "[risk.medium]\nkinds = [\"feature_schema\"]",
        "[risk.medium]\nkinds = [\"feature_schema\"]\nmetric_shift_pct = { auc = 0.1, \"*\" = 1.0 }",
    );
    let p = parse_policy(&text).unwrap();
    let mut f = facts(&["eval/metrics.json"]);
    f.base_contents.insert(
        "eval/metrics.json".to_owned(),
        r#"{"auc": 0.9, "recall": 0.5}"#.to_owned(),
    );
    f.head_contents.insert(
        "eval/metrics.json".to_owned(),
        r#"{"auc": 0.9018, "recall": 0.5025}"#.to_owned(),
    );
    let decision = evaluate(&p, &f);
    assert_eq!(
        decision.tier,
        Some(RiskTier::Medium),
        "auc moved 0.2 % > 0.1 %"
    );
    let metrics: Vec<&str> = decision
        .reasons
        .iter()
        .filter_map(|r| match &r.signal {
            Signal::MetricShift { metric, .. } => Some(metric.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(metrics, ["auc"], "recall moved 0.5 %, under its 1 %");
}

#[test]
fn a_missing_baseline_is_a_new_model_noted_in_the_reasons() {
    let mut f = facts(&[
        "eval/metrics.json",
        "models/fraud/model.onnx",
        "models/fraud/MODEL_CARD.md",
    ]);
    f.head_contents.insert(
        "eval/metrics.json".to_owned(),
        r#"{"auc": 0.93}"#.to_owned(),
    );
    let decision = evaluate(&policy(), &f);
    assert_eq!(
        decision.tier,
        Some(RiskTier::High),
        "tier comes from the kind rules"
    );
    assert!(
        decision
            .notes
            .iter()
            .any(|n| n.contains("No baseline for metric `auc`")),
        "{:?}",
        decision.notes
    );
    assert!(
        !decision
            .reasons
            .iter()
            .any(|r| matches!(r.signal, Signal::MetricShift { .. }))
    );
}

#[test]
fn editing_the_policy_is_a_governance_change_needing_the_approver() {
    let mut f = facts(&[".governance.toml"]);
    f.head_contents.clear();
    let decision = evaluate(&policy(), &f);
    assert_eq!(decision.tier, Some(RiskTier::High));
    assert!(decision.gates.contains(&Gate::Governance));
    assert!(
        decision.classified[0]
            .1
            .contains(&ChangeKind::GovernanceConfig)
    );
    assert!(decision.missing_roles.iter().any(|m| m.role == "approver"));
    assert!(
        decision
            .notes
            .iter()
            .any(|n| n.contains("judged by the policy at the base commit"))
    );
}

#[test]
fn a_rename_out_of_a_governed_folder_is_still_governed() {
    let mut f = facts(&[]);
    f.files.push(ChangedFile {
        path: "archive/old.onnx".to_owned(),
        status: FileStatus::Renamed,
        previous_path: Some("models/fraud/old.onnx".to_owned()),
        additions: 0,
        deletions: 0,
    });
    assert_eq!(evaluate(&policy(), &f).tier, Some(RiskTier::High));
}

// ---- evidence ------------------------------------------------------------------------------

#[test]
fn complete_evidence_is_found_with_its_location() {
    let decision = evaluate(&policy(), &high_risk());
    assert_eq!(decision.evidence.len(), 2);
    for check in &decision.evidence {
        assert!(
            matches!(check.status, EvidenceStatus::Found { .. }),
            "{check:?}"
        );
    }
}

#[test]
fn a_missing_model_card_section_blocks_naming_the_section() {
    let mut f = high_risk();
    f.head_contents.insert(
        "models/fraud/MODEL_CARD.md".to_owned(),
        "# Fraud\n## Intended use\nPayments.\n## Metrics\nAUC\n".to_owned(),
    );
    let decision = evaluate(&policy(), &f);
    let Outcome::Blocked { reasons } = &decision.outcome else {
        panic!("{:?}", decision.outcome)
    };
    let problem = reasons
        .iter()
        .find_map(|r| match r {
            BlockReason::Evidence { id, problem } if id == "model_card" => Some(problem.clone()),
            _ => None,
        })
        .expect("model card reason");
    assert!(problem.contains("\"Limitations\""), "{problem}");
    let EvidenceStatus::Missing { fix, .. } = &decision.evidence[0].status else {
        panic!()
    };
    assert!(fix.contains("## Limitations"), "{fix}");
}

#[test]
fn an_empty_section_counts_as_missing() {
    let mut f = high_risk();
    f.head_contents.insert(
        "models/fraud/MODEL_CARD.md".to_owned(),
        "## Intended use\nx\n## Metrics\n<!-- todo -->\n## Limitations\ny\n".to_owned(),
    );
    let decision = evaluate(&policy(), &f);
    let EvidenceStatus::Missing { problem, .. } = &decision.evidence[0].status else {
        panic!()
    };
    assert!(problem.contains("\"Metrics\" is empty"), "{problem}");
}

#[test]
fn a_missing_rollback_plan_in_the_description_blocks() {
    let mut f = high_risk();
    f.body = "## Summary\nNew model.\n".to_owned();
    let decision = evaluate(&policy(), &f);
    let Outcome::Blocked { reasons } = &decision.outcome else {
        panic!("{:?}", decision.outcome)
    };
    assert!(
        reasons
            .iter()
            .any(|r| matches!(r, BlockReason::Evidence { id, .. } if id == "rollback_plan"))
    );
}

#[test]
fn no_model_card_at_all_blocks_with_the_glob_in_the_fix() {
    let mut f = facts(&["models/fraud/model.onnx"]);
    f.head_contents.clear();
    let decision = evaluate(&policy(), &f);
    let EvidenceStatus::Missing { problem, fix } = &decision.evidence[0].status else {
        panic!()
    };
    assert!(problem.contains("models/*/MODEL_CARD.md"), "{problem}");
    assert!(fix.contains("model card"), "{fix}");
}

// ---- sign-offs and segregation of duties ---------------------------------------------------

#[test]
fn four_distinct_role_holders_pass_a_high_risk_change() {
    let mut f = high_risk();
    for (who, minute) in [("dana", 1), ("rick", 2), ("omar", 3), ("lee", 4)] {
        approve(&mut f, who, minute);
    }
    let decision = evaluate(&policy(), &f);
    assert_eq!(decision.outcome, Outcome::Passed, "{decision:#?}");
    assert_eq!(decision.observation_hours, 24);
}

#[test]
fn the_authors_approval_never_counts() {
    let mut f = high_risk();
    approve(&mut f, "alice", 1);
    let decision = evaluate(&policy(), &f);
    assert_eq!(ignored(&decision, "alice"), Some(IgnoreReason::Author));
    assert!(filled(&decision).is_empty());
    // Logins compare case-insensitively.
    let mut f = high_risk();
    approve(&mut f, "ALICE", 1);
    assert_eq!(
        ignored(&evaluate(&policy(), &f), "ALICE"),
        Some(IgnoreReason::Author)
    );
}

#[test]
fn a_contributor_to_the_change_cannot_approve_it() {
    let mut f = high_risk();
    f.commit_authors.insert("dana".to_owned());
    approve(&mut f, "dana", 1);
    assert_eq!(
        ignored(&evaluate(&policy(), &f), "dana"),
        Some(IgnoreReason::Contributor)
    );
}

#[test]
fn an_approval_without_write_access_does_not_count() {
    let mut f = high_risk();
    f.write_access.remove("omar");
    approve(&mut f, "omar", 1);
    let decision = evaluate(&policy(), &f);
    assert_eq!(
        ignored(&decision, "omar"),
        Some(IgnoreReason::NoWriteAccess)
    );
    let ops = decision
        .missing_roles
        .iter()
        .find(|m| m.role == "ops_reviewer")
        .unwrap();
    assert!(
        ops.eligible.is_empty(),
        "omar cannot sign off, so nobody is eligible"
    );
}

#[test]
fn an_approval_from_someone_without_a_required_role_does_not_count() {
    let mut f = high_risk();
    f.write_access.insert("zed".to_owned());
    approve(&mut f, "zed", 1);
    assert_eq!(
        ignored(&evaluate(&policy(), &f), "zed"),
        Some(IgnoreReason::NoRequiredRole)
    );
}

#[test]
fn one_person_in_two_roles_fills_one_slot() {
    // rita is both risk_reviewer and approver.
    let mut f = high_risk();
    approve(&mut f, "rita", 1);
    let decision = evaluate(&policy(), &f);
    let rita: Vec<_> = filled(&decision)
        .into_iter()
        .filter(|(_, who)| who == "rita")
        .collect();
    assert_eq!(rita.len(), 1, "{:?}", decision.sign_offs);
    assert!(matches!(
        ignored(&decision, "rita"),
        Some(IgnoreReason::AlreadyFills { .. })
    ));
    assert_eq!(decision.missing_roles.len(), 3);
}

#[test]
fn matching_places_people_where_greedy_would_strand_a_role() {
    // Slots in policy order: approver, risk_reviewer. rita (risk_reviewer + approver) approves
    // first, lee (approver only) later. A greedy pass in approval order gives rita the first
    // slot she fits, approver, and then lee fits nothing: risk_reviewer stays empty. The
    // maximum matching moves rita to risk_reviewer so that lee can be the approver.
    let text = POLICY.replace(
        "[tiers.low]\nsign_offs = [\"approver\"]",
        "[tiers.low]\nsign_offs = [\"approver\", \"risk_reviewer\"]",
    );
    let p = parse_policy(&text).unwrap();
    let mut f = facts(&["configs/train/lr.yaml"]);
    f.base_contents.insert(
        "configs/train/lr.yaml".to_owned(),
        "objective: x\n".to_owned(),
    );
    f.head_contents.insert(
        "configs/train/lr.yaml".to_owned(),
        "objective: x\n".to_owned(),
    );
    approve(&mut f, "rita", 1);
    approve(&mut f, "lee", 2);
    let decision = evaluate(&p, &f);
    assert_eq!(decision.tier, Some(RiskTier::Low));
    assert_eq!(
        filled(&decision),
        vec![
            ("approver".to_owned(), "lee".to_owned()),
            ("risk_reviewer".to_owned(), "rita".to_owned())
        ]
    );
    assert_eq!(decision.outcome, Outcome::Passed);
}

#[test]
fn a_role_with_a_count_needs_that_many_distinct_people() {
    let text = POLICY.replace(
        "[tiers.low]\nsign_offs = [\"approver\"]",
        "[tiers.low]\nsign_offs = [{ role = \"risk_reviewer\", count = 2 }]",
    );
    let p = parse_policy(&text).unwrap();
    let mut f = facts(&["configs/train/lr.yaml"]);
    f.base_contents
        .insert("configs/train/lr.yaml".to_owned(), String::new());
    f.head_contents
        .insert("configs/train/lr.yaml".to_owned(), String::new());
    approve(&mut f, "rita", 1);
    approve(&mut f, "rita", 2);
    let decision = evaluate(&p, &f);
    assert_eq!(decision.missing_roles[0].needed, 1);
    approve(&mut f, "rick", 3);
    assert_eq!(evaluate(&p, &f).outcome, Outcome::Passed);
}

#[test]
fn a_later_comment_does_not_cancel_an_approval() {
    let mut f = facts(&["configs/train/lr.yaml"]);
    f.base_contents
        .insert("configs/train/lr.yaml".to_owned(), String::new());
    f.head_contents
        .insert("configs/train/lr.yaml".to_owned(), String::new());
    approve(&mut f, "lee", 1);
    review(&mut f, "lee", ReviewVerdict::Commented, 2);
    assert_eq!(evaluate(&policy(), &f).outcome, Outcome::Passed);
    review(&mut f, "lee", ReviewVerdict::Dismissed, 3);
    assert!(matches!(
        evaluate(&policy(), &f).outcome,
        Outcome::Waiting { .. }
    ));
}

#[test]
fn changes_requested_by_a_required_role_holder_is_a_veto_until_dismissed_or_superseded() {
    let mut f = high_risk();
    for (who, minute) in [("dana", 1), ("rick", 2), ("omar", 3), ("lee", 4)] {
        approve(&mut f, who, minute);
    }
    review(&mut f, "rita", ReviewVerdict::ChangesRequested, 5);
    let decision = evaluate(&policy(), &f);
    let Outcome::Blocked { reasons } = &decision.outcome else {
        panic!("{:?}", decision.outcome)
    };
    assert_eq!(
        reasons,
        &vec![BlockReason::Veto {
            login: "rita".to_owned()
        }]
    );
    assert_eq!(decision.vetoes[0].roles, ["approver", "risk_reviewer"]);

    let mut dismissed = f.clone();
    review(&mut dismissed, "rita", ReviewVerdict::Dismissed, 6);
    assert_eq!(evaluate(&policy(), &dismissed).outcome, Outcome::Passed);

    let mut superseded = f.clone();
    approve(&mut superseded, "rita", 6);
    assert_eq!(evaluate(&policy(), &superseded).outcome, Outcome::Passed);

    // Changes requested by someone without a required role is no veto.
    let mut outsider = f;
    outsider.reviews.retain(|r| r.reviewer != "rita");
    outsider.write_access.insert("zed".to_owned());
    review(&mut outsider, "zed", ReviewVerdict::ChangesRequested, 6);
    assert_eq!(evaluate(&policy(), &outsider).outcome, Outcome::Passed);
}

#[test]
fn an_approval_goes_stale_after_a_governed_push_but_not_after_a_docs_only_push() {
    let mut f = high_risk();
    for (who, minute) in [("dana", 1), ("rick", 2), ("omar", 3), ("lee", 4)] {
        approve(&mut f, who, minute);
    }
    let mut docs_push = f.clone();
    for review in &mut docs_push.reviews {
        review.commit = OLD.to_owned();
        review.changed_after = Some(vec![
            "docs/usage.md".to_owned(),
            "models/fraud/MODEL_CARD.md".to_owned(),
        ]);
    }
    assert_eq!(evaluate(&policy(), &docs_push).outcome, Outcome::Passed);

    let mut governed_push = f.clone();
    governed_push.reviews[0].commit = OLD.to_owned();
    governed_push.reviews[0].changed_after = Some(vec!["models/fraud/model.onnx".to_owned()]);
    let decision = evaluate(&policy(), &governed_push);
    assert_eq!(
        ignored(&decision, "dana"),
        Some(IgnoreReason::Stale {
            changed: vec!["models/fraud/model.onnx".to_owned()]
        })
    );
    assert!(matches!(decision.outcome, Outcome::Waiting { .. }));

    // When the forge cannot tell what changed, an approval on an older commit is stale.
    let mut unknown = f;
    unknown.reviews[0].commit = OLD.to_owned();
    unknown.reviews[0].changed_after = None;
    assert!(matches!(
        ignored(&evaluate(&policy(), &unknown), "dana"),
        Some(IgnoreReason::Stale { .. })
    ));
}

#[test]
fn stale_on_push_can_be_turned_off_per_tier() {
    let text = POLICY.replace(
        "observation_hours = 24",
        "observation_hours = 24\nstale_on_push = false",
    );
    let p = parse_policy(&text).unwrap();
    let mut f = high_risk();
    for (who, minute) in [("dana", 1), ("rick", 2), ("omar", 3), ("lee", 4)] {
        approve(&mut f, who, minute);
    }
    f.reviews[0].commit = OLD.to_owned();
    f.reviews[0].changed_after = Some(vec!["models/fraud/model.onnx".to_owned()]);
    assert_eq!(evaluate(&p, &f).outcome, Outcome::Passed);
}

#[test]
fn missing_roles_name_the_people_who_could_sign() {
    let decision = evaluate(&policy(), &high_risk());
    let Outcome::Waiting { on } = &decision.outcome else {
        panic!("{:?}", decision.outcome)
    };
    assert_eq!(on.len(), 4);
    let data = decision
        .missing_roles
        .iter()
        .find(|m| m.role == "data_reviewer")
        .unwrap();
    assert_eq!(data.eligible, ["dana", "dave"]);
    let approver = decision
        .missing_roles
        .iter()
        .find(|m| m.role == "approver")
        .unwrap();
    assert_eq!(approver.eligible, ["lee", "rita"]);
}

#[test]
fn an_undefined_tier_takes_the_next_stricter_tiers_requirements() {
    let text = POLICY.replace(
        "[tiers.medium]\nsign_offs = [\"data_reviewer\", \"approver\"]\n",
        "",
    );
    let p = parse_policy(&text).unwrap();
    let decision = evaluate(&p, &facts(&["features/user.json"]));
    assert_eq!(decision.tier, Some(RiskTier::Medium));
    assert_eq!(
        decision.sign_offs.len(),
        4,
        "medium falls back to high's four sign-offs"
    );
    assert!(decision.notes.iter().any(|n| n.contains("[tiers.high]")));
}

// ---- emergency bypass ----------------------------------------------------------------------

fn comment(author: &str, body: &str, minute: i64, head: &str) -> Comment {
    Comment {
        author: author.to_owned(),
        body: body.to_owned(),
        at: t(minute),
        head_sha: head.to_owned(),
        edited: false,
    }
}

#[test]
fn an_on_call_bypass_with_a_valid_ticket_passes_until_it_expires() {
    let mut f = high_risk();
    f.comments.push(comment(
        "olga",
        "Rolling back.\n/tollgate bypass INC-4711 conversion dropped 10%",
        500,
        HEAD,
    ));
    let decision = evaluate(&policy(), &f);
    let Outcome::Bypassed {
        by,
        ticket,
        reason,
        expires_at,
        review_due,
    } = &decision.outcome
    else {
        panic!("{:?}", decision.outcome)
    };
    assert_eq!((by.as_str(), ticket.as_str()), ("olga", "INC-4711"));
    assert_eq!(reason, "conversion dropped 10%");
    assert_eq!(*expires_at, t(500) + Duration::hours(24));
    assert_eq!(*review_due, t(500) + Duration::hours(48));
    assert!(decision.gates.contains(&Gate::Emergency));
    assert!(decision.commands[0].honoured);

    f.now = t(500) + Duration::hours(25);
    let decision = evaluate(&policy(), &f);
    assert!(!decision.outcome.allows_merge());
    assert!(
        decision.commands[0].note.starts_with("expired"),
        "{}",
        decision.commands[0].note
    );
}

#[test]
fn a_bypass_is_refused_for_anyone_else_a_bad_ticket_a_new_head_or_an_edit() {
    let cases = [
        (
            comment("dana", "/tollgate bypass INC-1 outage", 500, HEAD),
            "only holders of `on_call`",
        ),
        (
            comment("alice", "/tollgate bypass INC-1 outage", 500, HEAD),
            "the author cannot bypass",
        ),
        (
            comment("olga", "/tollgate bypass JIRA-1 outage", 500, HEAD),
            "does not match",
        ),
        (
            comment("olga", "/tollgate bypass INC-1", 500, HEAD),
            "give a reason",
        ),
        (
            comment("olga", "/tollgate bypass INC-1 outage", 500, OLD),
            "a bypass covers one commit",
        ),
        (
            Comment {
                edited: true,
                ..comment("olga", "/tollgate bypass INC-1 outage", 500, HEAD)
            },
            "edited",
        ),
    ];
    for (c, expected) in cases {
        let mut f = high_risk();
        f.comments.push(c);
        let decision = evaluate(&policy(), &f);
        assert!(
            matches!(decision.outcome, Outcome::Waiting { .. }),
            "{expected}: {:?}",
            decision.outcome
        );
        let record = &decision.commands[0];
        assert!(!record.honoured);
        assert!(
            record.note.contains(expected),
            "expected `{expected}` in `{}`",
            record.note
        );
    }
}

#[test]
fn a_policy_without_an_emergency_section_allows_no_bypass() {
    let text = POLICY.split("[emergency]").next().unwrap().to_owned();
    let p = parse_policy(&text).unwrap();
    let mut f = high_risk();
    f.comments
        .push(comment("olga", "/tollgate bypass INC-1 outage", 500, HEAD));
    let decision = evaluate(&p, &f);
    assert!(decision.commands[0].note.contains("allows no bypass"));
    assert!(!decision.outcome.allows_merge());
}

#[test]
fn other_commands_are_recorded() {
    let mut f = high_risk();
    f.comments.push(comment(
        "dana",
        "/tollgate recheck\n/tollgate frobnicate\n/tollgateway",
        1,
        HEAD,
    ));
    let decision = evaluate(&policy(), &f);
    assert_eq!(decision.commands.len(), 2);
    assert!(decision.commands[0].honoured);
    assert!(
        decision.commands[1]
            .note
            .contains("unknown command `frobnicate`")
    );
}

#[test]
fn without_a_branch_list_every_base_branch_is_governed() {
    let text = POLICY.replace("governed_branches = [\"main\", \"release/*\"]\n", "");
    let p = parse_policy(&text).unwrap();
    for base in ["main", "experiments", "release/2026/11", "team/x/y"] {
        let mut f = high_risk();
        f.base_ref = base.to_owned();
        assert_eq!(evaluate(&p, &f).tier, Some(RiskTier::High), "{base}");
    }
}

#[test]
fn a_veto_counts_only_from_someone_with_write_access() {
    let mut f = high_risk();
    for (who, minute) in [("dana", 1), ("rick", 2), ("omar", 3), ("lee", 4)] {
        approve(&mut f, who, minute);
    }
    review(&mut f, "rita", ReviewVerdict::ChangesRequested, 5);
    f.write_access.remove("rita");
    let decision = evaluate(&policy(), &f);
    assert!(decision.vetoes.is_empty());
    assert_eq!(decision.outcome, Outcome::Passed);
}

#[test]
fn a_contributor_cannot_bypass_the_change_they_built() {
    let mut f = high_risk();
    f.commit_authors.insert("olga".to_owned());
    f.comments
        .push(comment("olga", "/tollgate bypass INC-1 outage", 500, HEAD));
    let decision = evaluate(&policy(), &f);
    assert!(!decision.commands[0].honoured);
    assert!(decision.commands[0].note.contains("authored or committed"));
    assert!(!decision.outcome.allows_merge());
}
