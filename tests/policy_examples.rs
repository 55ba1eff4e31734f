//! The example policies in `config/examples/` and the scenarios in `fixtures/facts/`, through
//! the real binary: every example passes `tollgate check-config`, and every scenario gets the
//! decision the governance playbook describes from `tollgate explain --json`.
//!
//! `fixtures/facts/<example>/<scenario>.json` is evaluated against
//! `config/examples/<example>.governance.toml`. The expected decision of each fixture is a row
//! of `CASES` below; a fixture without a row, or a row without a fixture, fails the suite, so a
//! new scenario cannot go untested. The decision is read as plain JSON (not through the crate's
//! types), so this also pins the `--json` format that other tools read.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::{DateTime, Utc};
use serde_json::Value;

const FRAUD: &str = "fraud-model";
const SMALL: &str = "small-team";
const FEATURES: &str = "feature-store";
const ROLLBACK: &str = "emergency-rollback";

/// An honoured bypass: who, which ticket, and the hours (from the command) after which it
/// expires and the post-incident review is due.
#[derive(Clone, Copy)]
struct Bypass {
    by: &'static str,
    ticket: &'static str,
    expires_after_hours: i64,
    review_within_hours: i64,
}

/// The expected decision for one fixture. Lists marked *exactly* must match as sets; the
/// others are checked only when given.
#[derive(Clone, Copy)]
struct Case {
    example: &'static str,
    scenario: &'static str,
    /// What the scenario shows (printed when it fails).
    shows: &'static str,
    /// `passed`, `waiting`, `blocked`, `bypassed` or `not_governed`.
    outcome: &'static str,
    /// The risk tier (`None` when not governed).
    tier: Option<&'static str>,
    /// Reasons that must be among the tier's reasons, as `"<tier> <signal>"` with the signal
    /// written `kind:<kind>`, `floor:<kind>` (a kind ranked by the playbook's floor),
    /// `key:<kind>@<key>`, `metric:<name>><threshold %>`, `label:<label>`, `path:<path>` or
    /// `governed`.
    signals: &'static [&'static str],
    /// Exactly the roles still short of sign-offs, with how many each needs.
    missing: &'static [(&'static str, u64)],
    /// Exactly the filled sign-off slots: (role, login).
    filled: &'static [(&'static str, &'static str)],
    /// Exactly the approvals that do not count: (login, reason), the reason written as in the
    /// JSON, `stale:<files changed since, comma-separated>` or `already_fills:<role>`.
    ignored: &'static [(&'static str, &'static str)],
    /// Exactly the reasons a blocked change is blocked: evidence ids, or `veto:<login>`.
    blocked_by: &'static [&'static str],
    /// Exactly the commands, in order: (author, honoured, part of the note).
    commands: &'static [(&'static str, bool, &'static str)],
    /// The bypass, when the outcome is `bypassed`.
    bypass: Option<Bypass>,
    /// Exactly the evidence the tier asks for: `id` (found), `id@location` (found there) or
    /// `!id` (missing).
    evidence: Option<&'static [&'static str]>,
    /// Exactly the gates the change passes through.
    gates: Option<&'static [&'static str]>,
    /// Hours of canary observation the tier asks for.
    observation_hours: Option<u64>,
    /// Text that must appear in the outcome (reasons, problems) or in the notes.
    mentions: &'static [&'static str],
}

const CASE: Case = Case {
    example: "",
    scenario: "",
    shows: "",
    outcome: "",
    tier: None,
    signals: &[],
    missing: &[],
    filled: &[],
    ignored: &[],
    blocked_by: &[],
    commands: &[],
    bypass: None,
    evidence: None,
    gates: None,
    observation_hours: None,
    mentions: &[],
};

/// Worked example 1: the four sign-offs of a high-risk promotion.
const FRAUD_FOUR: &[(&str, u64)] = &[
    ("data_reviewer", 1),
    ("risk_reviewer", 1),
    ("ops_reviewer", 1),
    ("approver", 1),
];
const FRAUD_FOUR_SIGNED: &[(&str, &str)] = &[
    ("data_reviewer", "dana"),
    ("risk_reviewer", "rita"),
    ("ops_reviewer", "omar"),
    ("approver", "lena"),
];
const FRAUD_HIGH_EVIDENCE: &[&str] = &[
    "model_card@models/fraud/MODEL_CARD.md",
    "data_sheet@data/transactions/DATASHEET.md",
    "validation_report@reports/validation/fraud-v13.html",
    "risk_assessment@reports/risk/fraud-v13.md",
    "rollback_plan",
];
const FRAUD_V13_SIGNALS: &[&str] = &[
    "high kind:model_artifact",
    "medium kind:training_config",
    "medium kind:dataset_version",
    "medium metric:auc>1",
];
const STALE_MODEL: &str = "stale:models/fraud/v13/model.onnx,eval/metrics.json";
/// Worked example 2: data platform reviewer, model owner, tech lead.
const FEATURE_THREE: &[(&str, u64)] = &[
    ("data_platform_reviewer", 1),
    ("model_owner", 1),
    ("tech_lead", 1),
];
const FEATURE_THREE_SIGNED: &[(&str, &str)] = &[
    ("data_platform_reviewer", "pablo"),
    ("model_owner", "mona"),
    ("tech_lead", "theo"),
];
const FEATURE_DROP_SIGNALS: &[&str] = &[
    "medium kind:feature_schema",
    "medium kind:feature_definition",
    "medium key:breaking_schema_change@features[days_since_signup]",
];
/// Worked example 3: the normal path a rollback takes without a bypass.
const ROLLBACK_TWO: &[(&str, u64)] = &[("ops_reviewer", 1), ("approver", 1)];

const CASES: &[Case] = &[
    // ---- fraud-model: worked example 1, a new fraud model to production.
    Case {
        example: FRAUD,
        scenario: "opened",
        shows: "a new model opened with full evidence: high risk, waiting on all four roles",
        outcome: "waiting",
        tier: Some("high"),
        signals: FRAUD_V13_SIGNALS,
        missing: FRAUD_FOUR,
        evidence: Some(FRAUD_HIGH_EVIDENCE),
        gates: Some(&["data", "model"]),
        observation_hours: Some(24),
        ..CASE
    },
    Case {
        example: FRAUD,
        scenario: "author-approved",
        shows: "the author's own approval is ignored, even though she holds the approver role",
        outcome: "waiting",
        tier: Some("high"),
        missing: FRAUD_FOUR,
        ignored: &[("alice", "author")],
        ..CASE
    },
    Case {
        example: FRAUD,
        scenario: "all-four-signed",
        shows: "data, risk and ops reviewers and the approver signed on the head: passed",
        outcome: "passed",
        tier: Some("high"),
        signals: FRAUD_V13_SIGNALS,
        filled: FRAUD_FOUR_SIGNED,
        evidence: Some(FRAUD_HIGH_EVIDENCE),
        observation_hours: Some(24),
        ..CASE
    },
    Case {
        example: FRAUD,
        scenario: "pushed-after-approval",
        shows: "a push replacing the weights after the approvals makes all of them stale",
        outcome: "waiting",
        tier: Some("high"),
        missing: FRAUD_FOUR,
        ignored: &[
            ("dana", STALE_MODEL),
            ("rita", STALE_MODEL),
            ("omar", STALE_MODEL),
            // The forge could not tell what changed after lena's approval: stale (fail closed).
            ("lena", "stale:"),
        ],
        ..CASE
    },
    Case {
        example: FRAUD,
        scenario: "pushed-docs-after-approval",
        shows: "a docs-only push after the approvals keeps them",
        outcome: "passed",
        tier: Some("high"),
        filled: FRAUD_FOUR_SIGNED,
        ..CASE
    },
    Case {
        example: FRAUD,
        scenario: "approvals-that-do-not-count",
        shows: "no write access, a contributor, a holder of no required role",
        outcome: "waiting",
        tier: Some("high"),
        missing: FRAUD_FOUR,
        ignored: &[
            ("eve", "no_write_access"),
            ("carl", "contributor"),
            ("zed", "no_required_role"),
        ],
        ..CASE
    },
    Case {
        example: FRAUD,
        scenario: "one-person-two-roles",
        shows: "a member of two required roles fills one slot, not two",
        outcome: "waiting",
        tier: Some("high"),
        missing: &[("risk_reviewer", 1)],
        filled: &[
            ("data_reviewer", "dana"),
            ("ops_reviewer", "omar"),
            ("approver", "lena"),
        ],
        ignored: &[("dana", "already_fills:data_reviewer")],
        ..CASE
    },
    Case {
        example: FRAUD,
        scenario: "risk-veto",
        shows: "the risk reviewer's changes request blocks; a later comment does not lift it",
        outcome: "blocked",
        tier: Some("high"),
        missing: &[("risk_reviewer", 1)],
        filled: &[
            ("data_reviewer", "dana"),
            ("ops_reviewer", "omar"),
            ("approver", "lena"),
        ],
        blocked_by: &["veto:rita"],
        ..CASE
    },
    Case {
        example: FRAUD,
        scenario: "risk-veto-dismissed",
        shows: "a dismissed veto no longer blocks, but is no approval either",
        outcome: "waiting",
        tier: Some("high"),
        missing: &[("risk_reviewer", 1)],
        filled: &[
            ("data_reviewer", "dana"),
            ("ops_reviewer", "omar"),
            ("approver", "lena"),
        ],
        ..CASE
    },
    Case {
        example: FRAUD,
        scenario: "missing-evidence",
        shows: "empty model card section, no risk assessment, no rollback plan: blocked",
        outcome: "blocked",
        tier: Some("high"),
        filled: FRAUD_FOUR_SIGNED,
        blocked_by: &["model_card", "risk_assessment", "rollback_plan"],
        evidence: Some(&[
            "!model_card",
            "data_sheet",
            "validation_report",
            "!risk_assessment",
            "!rollback_plan",
        ]),
        mentions: &[
            "section \"Limitations\" is empty",
            "does not update a file matching `reports/risk/**`",
            "no \"Rollback plan\" section",
        ],
        ..CASE
    },
    Case {
        example: FRAUD,
        scenario: "retrain-medium",
        shows: "a retrain with a 1.6 % metric shift: medium, two sign-offs, 4 h observation",
        outcome: "passed",
        tier: Some("medium"),
        signals: &[
            "medium kind:training_config",
            "medium kind:dataset_version",
            "medium metric:auc>1",
        ],
        filled: &[("data_reviewer", "dana"), ("approver", "lena")],
        evidence: Some(&["model_card", "validation_report"]),
        observation_hours: Some(4),
        ..CASE
    },
    Case {
        example: FRAUD,
        scenario: "retrain-metric-drop",
        shows: "a 12 % metric drop makes a retrain high risk, with high-tier evidence",
        outcome: "blocked",
        tier: Some("high"),
        signals: &[
            "high metric:recall_at_1pct_fpr>5",
            "medium kind:training_config",
        ],
        missing: &[("risk_reviewer", 1), ("ops_reviewer", 1)],
        filled: &[("data_reviewer", "dana"), ("approver", "lena")],
        blocked_by: &["risk_assessment", "rollback_plan"],
        ..CASE
    },
    Case {
        example: FRAUD,
        scenario: "objective-change",
        shows: "a changed objective is high by the playbook's floor, over training_config",
        outcome: "waiting",
        tier: Some("high"),
        signals: &[
            "high key:objective_change@objective",
            "medium kind:training_config",
        ],
        missing: FRAUD_FOUR,
        gates: Some(&["model"]),
        ..CASE
    },
    Case {
        example: FRAUD,
        scenario: "threshold-change",
        shows: "a moved decision threshold (key rule) and a sensitive-domain label",
        outcome: "waiting",
        tier: Some("high"),
        signals: &[
            "high key:threshold_change@threshold",
            "high label:sensitive-domain",
        ],
        missing: FRAUD_FOUR,
        ..CASE
    },
    Case {
        example: FRAUD,
        scenario: "experiment-branch",
        shows: "a change into an ungoverned branch",
        outcome: "not_governed",
        mentions: &["`experiments/fraud-v13` is not governed"],
        ..CASE
    },
    Case {
        example: FRAUD,
        scenario: "release-branch",
        shows: "`release/*` is governed",
        outcome: "waiting",
        tier: Some("high"),
        missing: FRAUD_FOUR,
        ..CASE
    },
    // ---- small-team: minimum viable governance.
    Case {
        example: SMALL,
        scenario: "reviewed-to-main",
        shows: "one independent review, model card and rollback plan: passed",
        outcome: "passed",
        tier: Some("low"),
        signals: &["low governed"],
        filled: &[("reviewer", "bea")],
        evidence: Some(&["model_card@models/churn/MODEL_CARD.md", "rollback_plan"]),
        gates: Some(&["data", "model"]),
        ..CASE
    },
    Case {
        example: SMALL,
        scenario: "self-approved",
        shows: "the author's approval is no review",
        outcome: "waiting",
        tier: Some("low"),
        missing: &[("reviewer", 1)],
        ignored: &[("sam", "author")],
        ..CASE
    },
    Case {
        example: SMALL,
        scenario: "missing-rollback-plan",
        shows: "no rollback plan for production: blocked",
        outcome: "blocked",
        tier: Some("low"),
        filled: &[("reviewer", "bea")],
        blocked_by: &["rollback_plan"],
        evidence: Some(&["model_card", "!rollback_plan"]),
        mentions: &["no \"Rollback plan\" section"],
        ..CASE
    },
    Case {
        example: SMALL,
        scenario: "missing-model-card",
        shows: "no model card for production: blocked",
        outcome: "blocked",
        tier: Some("low"),
        filled: &[("reviewer", "bea")],
        blocked_by: &["model_card"],
        mentions: &["no file matching `models/*/MODEL_CARD.md` exists"],
        ..CASE
    },
    Case {
        example: SMALL,
        scenario: "to-staging",
        shows: "staging is promoted automatically: not governed",
        outcome: "not_governed",
        mentions: &["`staging` is not governed"],
        ..CASE
    },
    Case {
        example: SMALL,
        scenario: "docs-only",
        shows: "docs alone are not governed",
        outcome: "not_governed",
        mentions: &["no governed path changed"],
        ..CASE
    },
    Case {
        example: SMALL,
        scenario: "new-data-source",
        shows: "a new data source is high by the floor; high inherits [tiers.low]",
        outcome: "passed",
        tier: Some("high"),
        signals: &["high floor:data_source"],
        filled: &[("reviewer", "bea")],
        evidence: Some(&["model_card", "rollback_plan"]),
        mentions: &["no [tiers.high]; the requirements of [tiers.low] apply"],
        ..CASE
    },
    Case {
        example: SMALL,
        scenario: "edits-policy",
        shows: "an edit of the policy: high, judged by the base policy",
        outcome: "passed",
        tier: Some("high"),
        signals: &["high floor:governance_config"],
        filled: &[("reviewer", "kai")],
        gates: Some(&["governance"]),
        mentions: &[
            "judged by the policy at the base commit",
            "no [tiers.high]; the requirements of [tiers.low] apply",
        ],
        ..CASE
    },
    Case {
        example: SMALL,
        scenario: "bypass-not-allowed",
        shows: "no [emergency] section: a bypass is refused",
        outcome: "waiting",
        tier: Some("low"),
        missing: &[("reviewer", 1)],
        commands: &[("bea", false, "allows no bypass")],
        ..CASE
    },
    Case {
        example: SMALL,
        scenario: "metric-drop-default-thresholds",
        shows: "no thresholds set: the playbook's 1 % / 5 % apply",
        outcome: "passed",
        tier: Some("high"),
        // No thresholds in the policy: the playbook's 5 % (high) and 1 % (medium).
        signals: &["high metric:auc>5", "medium metric:precision>1"],
        filled: &[("reviewer", "bea")],
        ..CASE
    },
    // ---- feature-store: worked example 2, a feature store schema change.
    Case {
        example: FEATURES,
        scenario: "drop-and-add-opened",
        shows: "drop one feature, add two: medium, waiting on the three roles",
        outcome: "waiting",
        tier: Some("medium"),
        signals: FEATURE_DROP_SIGNALS,
        missing: FEATURE_THREE,
        evidence: Some(&["backfill_plan", "impact_analysis"]),
        gates: Some(&["data"]),
        observation_hours: Some(24),
        ..CASE
    },
    Case {
        example: FEATURES,
        scenario: "drop-and-add-approved",
        shows: "data platform reviewer, model owner and tech lead signed: passed",
        outcome: "passed",
        tier: Some("medium"),
        signals: FEATURE_DROP_SIGNALS,
        filled: FEATURE_THREE_SIGNED,
        ..CASE
    },
    Case {
        example: FEATURES,
        scenario: "empty-backfill-plan",
        shows: "an empty \"Backfill plan\" section blocks",
        outcome: "blocked",
        tier: Some("medium"),
        missing: &[("model_owner", 1), ("tech_lead", 1)],
        filled: &[("data_platform_reviewer", "pablo")],
        blocked_by: &["backfill_plan"],
        mentions: &["\"Backfill plan\" section is empty"],
        ..CASE
    },
    Case {
        example: FEATURES,
        scenario: "impact-analysis-document",
        shows: "the impact analysis as a document instead of a PR section",
        outcome: "passed",
        tier: Some("medium"),
        filled: FEATURE_THREE_SIGNED,
        evidence: Some(&[
            "backfill_plan",
            "impact_analysis@docs/impact/2025-06-velocity.md",
        ]),
        ..CASE
    },
    Case {
        example: FEATURES,
        scenario: "contract-field-added",
        shows: "an additive contract change is low: the data platform reviewer alone",
        outcome: "passed",
        tier: Some("low"),
        signals: &["low governed"],
        filled: &[("data_platform_reviewer", "pablo")],
        evidence: Some(&[]),
        ..CASE
    },
    Case {
        example: FEATURES,
        scenario: "contract-field-removed",
        shows: "a removed contract field is lifted to medium by the floor",
        outcome: "waiting",
        tier: Some("medium"),
        // Nothing else ranks the contract: the playbook's floor lifts it to medium.
        signals: &["medium key:breaking_schema_change@properties.currency"],
        missing: &[("model_owner", 1), ("tech_lead", 1)],
        filled: &[("data_platform_reviewer", "pablo")],
        ..CASE
    },
    Case {
        example: FEATURES,
        scenario: "contract-unreadable",
        shows: "contents the key rule cannot read count as a breaking change",
        outcome: "waiting",
        tier: Some("medium"),
        // Fail closed: contents the rule cannot read count as the change it looks for.
        signals: &["medium key:breaking_schema_change@"],
        missing: &[("model_owner", 1), ("tech_lead", 1)],
        filled: &[("data_platform_reviewer", "pablo")],
        ..CASE
    },
    // ---- emergency-rollback: worked example 3.
    Case {
        example: ROLLBACK,
        scenario: "bypass-honoured",
        shows: "an on-call member with a valid ticket on the current head",
        outcome: "bypassed",
        tier: Some("high"),
        missing: ROLLBACK_TWO,
        commands: &[("omar", true, "bypass until 2025-06-05 11:30 UTC")],
        bypass: Some(Bypass {
            by: "omar",
            ticket: "INC-4711",
            expires_after_hours: 2,
            review_within_hours: 48,
        }),
        gates: Some(&["deployment", "emergency"]),
        ..CASE
    },
    Case {
        example: ROLLBACK,
        scenario: "bypass-not-on-call",
        shows: "a bypass by someone not on call is refused",
        outcome: "waiting",
        tier: Some("high"),
        missing: ROLLBACK_TWO,
        commands: &[("carol", false, "only holders of `on_call`")],
        gates: Some(&["deployment"]),
        ..CASE
    },
    Case {
        example: ROLLBACK,
        scenario: "bypass-new-head",
        shows: "a bypass given for an earlier head does not cover a new push",
        outcome: "waiting",
        tier: Some("high"),
        missing: ROLLBACK_TWO,
        commands: &[("omar", false, "a bypass covers one commit")],
        ..CASE
    },
    Case {
        example: ROLLBACK,
        scenario: "bypass-expired",
        shows: "a bypass after its expiry window is refused",
        outcome: "waiting",
        tier: Some("high"),
        missing: ROLLBACK_TWO,
        commands: &[("omar", false, "expired at 2025-06-05 11:30 UTC")],
        ..CASE
    },
    Case {
        example: ROLLBACK,
        scenario: "bypass-bad-ticket",
        shows: "a ticket not matching INC-[0-9]+ is refused",
        outcome: "waiting",
        tier: Some("high"),
        missing: ROLLBACK_TWO,
        commands: &[(
            "omar",
            false,
            "does not match the policy's pattern `INC-[0-9]+`",
        )],
        ..CASE
    },
    Case {
        example: ROLLBACK,
        scenario: "bypass-without-reason",
        shows: "a bypass must give a reason",
        outcome: "waiting",
        tier: Some("high"),
        missing: ROLLBACK_TWO,
        commands: &[("omar", false, "give a reason")],
        ..CASE
    },
    Case {
        example: ROLLBACK,
        scenario: "bypass-edited-comment",
        shows: "an edited comment never grants a bypass",
        outcome: "waiting",
        tier: Some("high"),
        missing: ROLLBACK_TWO,
        commands: &[("omar", false, "edited")],
        ..CASE
    },
    Case {
        example: ROLLBACK,
        scenario: "bypass-by-author",
        shows: "an on-call author cannot bypass their own change",
        outcome: "waiting",
        tier: Some("high"),
        missing: ROLLBACK_TWO,
        commands: &[("omar", false, "author cannot bypass")],
        ..CASE
    },
    Case {
        example: ROLLBACK,
        scenario: "bypass-by-contributor",
        shows: "an on-call committer of the change cannot bypass it either",
        // Omar committed the revert that Sam opened: waving it through himself is the
        // single-person control the playbook rules out (his approval would not count either).
        outcome: "waiting",
        tier: Some("high"),
        missing: ROLLBACK_TWO,
        commands: &[("omar", false, "")],
        ..CASE
    },
    Case {
        example: ROLLBACK,
        scenario: "normal-review",
        shows: "without an incident: ops reviewer and approver",
        outcome: "passed",
        tier: Some("high"),
        filled: &[("ops_reviewer", "carol"), ("approver", "lena")],
        evidence: Some(&["rollback_plan"]),
        observation_hours: Some(24),
        ..CASE
    },
    Case {
        example: ROLLBACK,
        scenario: "release-branch-no-bypass",
        shows: "no governed_branches: release branches are governed too",
        // The policy names no branches: every base branch is governed, `release/…` included.
        outcome: "waiting",
        tier: Some("high"),
        missing: ROLLBACK_TWO,
        ..CASE
    },
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn policy_path(example: &str) -> PathBuf {
    root()
        .join("config/examples")
        .join(format!("{example}.governance.toml"))
}

fn facts_path(example: &str, scenario: &str) -> PathBuf {
    root()
        .join("fixtures/facts")
        .join(example)
        .join(format!("{scenario}.json"))
}

fn tollgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run the tollgate binary")
}

fn utf8(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn explain(case: &Case, json: bool) -> Output {
    let policy = policy_path(case.example);
    let facts = facts_path(case.example, case.scenario);
    let mut args = vec![
        "explain",
        "--policy",
        policy.to_str().expect("UTF-8 path"),
        "--facts",
        facts.to_str().expect("UTF-8 path"),
    ];
    if json {
        args.push("--json");
    }
    tollgate(&args)
}

/// The `*.json` files directly under `dir`, by file stem.
fn json_stems(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            p.file_stem()
                .expect("file stem")
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// (example, scenario) of every fixture on disk.
fn fixtures_on_disk() -> BTreeSet<(String, String)> {
    let dir = root().join("fixtures/facts");
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(
            path.is_dir(),
            "fixtures/facts/{name}: expected only folders named after an example policy"
        );
        for scenario in json_stems(&path) {
            out.insert((name.clone(), scenario));
        }
    }
    out
}

fn example_policies() -> BTreeSet<String> {
    let dir = root().join("config/examples");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").file_name())
        .filter_map(|name| {
            name.to_string_lossy()
                .strip_suffix(".governance.toml")
                .map(str::to_owned)
        })
        .collect()
}

#[test]
fn every_example_policy_passes_check_config() {
    let examples = example_policies();
    for expected in [FRAUD, SMALL, FEATURES, ROLLBACK] {
        assert!(
            examples.contains(expected),
            "config/examples/{expected}.governance.toml is missing"
        );
    }
    for example in &examples {
        let path = policy_path(example);
        let output = tollgate(&["check-config", path.to_str().expect("UTF-8 path")]);
        let (stdout, stderr) = (utf8(&output.stdout), utf8(&output.stderr));
        assert!(
            output.status.success(),
            "check-config {example}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            output.status
        );
        assert!(
            stdout.contains(": valid"),
            "check-config {example} did not say it is valid:\n{stdout}"
        );
    }
}

#[test]
fn every_fixture_has_an_expected_decision_and_every_row_a_fixture() {
    let on_disk = fixtures_on_disk();
    let mut in_table = BTreeSet::new();
    for case in CASES {
        let key = (case.example.to_owned(), case.scenario.to_owned());
        assert!(
            in_table.insert(key),
            "CASES lists {}/{} twice",
            case.example,
            case.scenario
        );
    }
    let untested: Vec<String> = on_disk
        .difference(&in_table)
        .map(|(e, s)| format!("fixtures/facts/{e}/{s}.json"))
        .collect();
    assert!(
        untested.is_empty(),
        "fixtures without an expected decision in CASES (tests/policy_examples.rs): {untested:?}"
    );
    let missing: Vec<String> = in_table
        .difference(&on_disk)
        .map(|(e, s)| format!("fixtures/facts/{e}/{s}.json"))
        .collect();
    assert!(
        missing.is_empty(),
        "CASES rows without a fixture: {missing:?}"
    );
    let examples = example_policies();
    for (example, _) in &on_disk {
        assert!(
            examples.contains(example),
            "fixtures/facts/{example}/ has no config/examples/{example}.governance.toml"
        );
    }
    for example in &examples {
        assert!(
            on_disk.iter().any(|(e, _)| e == example),
            "config/examples/{example}.governance.toml has no scenario in fixtures/facts/{example}/"
        );
    }
}

#[test]
fn every_scenario_gets_the_decision_the_playbook_describes() {
    let mut failures = Vec::new();
    for case in CASES {
        let output = explain(case, true);
        let label = format!("{}/{}", case.example, case.scenario);
        if !output.status.success() {
            failures.push(format!(
                "{label}: explain --json exited with {}: {}",
                output.status,
                utf8(&output.stderr)
            ));
            continue;
        }
        let decision: Value = match serde_json::from_slice(&output.stdout) {
            Ok(value) => value,
            Err(error) => {
                failures.push(format!("{label}: the output is not JSON: {error}"));
                continue;
            }
        };
        let problems = check(case, &decision);
        if !problems.is_empty() {
            failures.push(format!(
                "{label} ({}):\n    {}",
                case.shows,
                problems.join("\n    ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenarios differ from the expected decision:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn text_output_states_the_outcome() {
    let mut failures = Vec::new();
    for case in CASES {
        let label = format!("{}/{}", case.example, case.scenario);
        let output = explain(case, false);
        let stdout = utf8(&output.stdout);
        if !output.status.success() {
            failures.push(format!(
                "{label}: explain exited with {}: {}",
                output.status,
                utf8(&output.stderr)
            ));
            continue;
        }
        let first = stdout.lines().next().unwrap_or_default();
        let expected = match case.outcome {
            "passed" => "outcome: passed".to_owned(),
            "waiting" => "outcome: waiting on ".to_owned(),
            "blocked" => "outcome: blocked: ".to_owned(),
            "not_governed" => "outcome: not governed (".to_owned(),
            "bypassed" => {
                let b = case.bypass.expect("a bypassed case names its bypass");
                format!("outcome: bypassed by {} for {}", b.by, b.ticket)
            }
            other => panic!("{label}: unknown outcome `{other}` in CASES"),
        };
        if !first.starts_with(&expected) {
            failures.push(format!(
                "{label}: the text output starts with {first:?}, expected {expected:?}"
            ));
        }
        if let Some(tier) = case.tier
            && !stdout.lines().any(|l| l == format!("tier: {tier}"))
        {
            failures.push(format!(
                "{label}: the text output does not state `tier: {tier}`"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} text outputs differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---- reading the decision JSON

fn array<'v>(value: &'v Value, key: &str) -> &'v [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn text<'v>(value: &'v Value, key: &str) -> &'v str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn strings(value: &Value, key: &str) -> Vec<String> {
    array(value, key)
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

fn time(value: &Value, key: &str) -> Option<DateTime<Utc>> {
    text(value, key).parse().ok()
}

/// A tier reason as `"<tier> <signal>"` (see [`Case::signals`]).
fn signal(reason: &Value) -> String {
    let tier = text(reason, "tier");
    let signal = match text(reason, "signal") {
        "kind" if reason.get("floor").and_then(Value::as_bool) == Some(true) => {
            format!("floor:{}", text(reason, "kind"))
        }
        "kind" => format!("kind:{}", text(reason, "kind")),
        "key" => format!("key:{}@{}", text(reason, "kind"), text(reason, "key")),
        "metric_shift" => format!(
            "metric:{}>{}",
            text(reason, "metric"),
            reason
                .get("threshold_pct")
                .and_then(Value::as_f64)
                .unwrap_or(f64::NAN)
        ),
        "label" => format!("label:{}", text(reason, "label")),
        "sensitive_path" => format!("path:{}", text(reason, "path")),
        "governed" => "governed".to_owned(),
        other => format!("unknown signal {other}"),
    };
    format!("{tier} {signal}")
}

/// An ignored approval's reason as in [`Case::ignored`].
fn ignore_reason(ignored: &Value) -> String {
    match text(ignored, "reason") {
        "stale" => format!("stale:{}", strings(ignored, "changed").join(",")),
        "already_fills" => format!("already_fills:{}", text(ignored, "role")),
        other => other.to_owned(),
    }
}

fn sorted<T: Ord>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut v: Vec<T> = items.into_iter().collect();
    v.sort();
    v
}

/// Compares two lists as sets, recording a difference.
fn same_set(problems: &mut Vec<String>, what: &str, actual: Vec<String>, expected: Vec<String>) {
    let (actual, expected) = (sorted(actual), sorted(expected));
    if actual != expected {
        problems.push(format!("{what}: got {actual:?}, expected {expected:?}"));
    }
}

/// Everything in which `decision` differs from `case`.
fn check(case: &Case, decision: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let outcome = decision.get("outcome").cloned().unwrap_or(Value::Null);
    let name = text(&outcome, "outcome");
    if name != case.outcome {
        problems.push(format!(
            "outcome: got {outcome}, expected `{}`",
            case.outcome
        ));
    }
    let tier = decision.get("tier").and_then(Value::as_str);
    if tier != case.tier {
        problems.push(format!("tier: got {tier:?}, expected {:?}", case.tier));
    }

    let reasons: Vec<String> = array(decision, "reasons").iter().map(signal).collect();
    for expected in case.signals {
        if !reasons.iter().any(|r| r == expected) {
            problems.push(format!("reasons: `{expected}` not among {reasons:?}"));
        }
    }

    same_set(
        &mut problems,
        "missing roles",
        array(decision, "missing_roles")
            .iter()
            .map(|m| {
                format!(
                    "{} × {}",
                    text(m, "role"),
                    m.get("needed").and_then(Value::as_u64).unwrap_or(0)
                )
            })
            .collect(),
        case.missing
            .iter()
            .map(|(role, n)| format!("{role} × {n}"))
            .collect(),
    );
    same_set(
        &mut problems,
        "filled sign-offs",
        array(decision, "sign_offs")
            .iter()
            .filter_map(|slot| {
                let by = slot.get("filled_by").filter(|b| !b.is_null())?;
                Some(format!("{} by {}", text(slot, "role"), text(by, "login")))
            })
            .collect(),
        case.filled
            .iter()
            .map(|(role, login)| format!("{role} by {login}"))
            .collect(),
    );
    same_set(
        &mut problems,
        "ignored approvals",
        array(decision, "ignored_approvals")
            .iter()
            .map(|i| format!("{}: {}", text(i, "login"), ignore_reason(i)))
            .collect(),
        case.ignored
            .iter()
            .map(|(login, reason)| format!("{login}: {reason}"))
            .collect(),
    );
    same_set(
        &mut problems,
        "blocked by",
        array(&outcome, "reasons")
            .iter()
            .map(|r| match text(r, "kind") {
                "veto" => format!("veto:{}", text(r, "login")),
                _ => text(r, "id").to_owned(),
            })
            .collect(),
        case.blocked_by.iter().map(|s| (*s).to_owned()).collect(),
    );

    let commands = array(decision, "commands");
    if commands.len() != case.commands.len() {
        problems.push(format!(
            "commands: got {} ({commands:?}), expected {}",
            commands.len(),
            case.commands.len()
        ));
    }
    for (command, (author, honoured, note)) in commands.iter().zip(case.commands) {
        let got_honoured = command.get("honoured").and_then(Value::as_bool);
        if text(command, "author") != *author
            || got_honoured != Some(*honoured)
            || !text(command, "note").contains(note)
        {
            problems.push(format!(
                "command: got {command}, expected by {author}, honoured {honoured}, note containing {note:?}"
            ));
        }
    }

    if let Some(bypass) = case.bypass {
        check_bypass(&mut problems, &outcome, commands, bypass);
    }

    if let Some(expected) = case.evidence {
        let actual = array(decision, "evidence")
            .iter()
            .map(|e| {
                let id = text(e, "id");
                if text(e, "status") != "found" {
                    return format!("!{id}");
                }
                // `id@location` when the expectation names a location, else `id`.
                let locations = strings(e, "locations");
                expected
                    .iter()
                    .filter_map(|x| x.strip_prefix(id)?.strip_prefix('@'))
                    .find(|loc| locations.iter().any(|l| l == loc))
                    .map_or_else(|| id.to_owned(), |loc| format!("{id}@{loc}"))
            })
            .collect();
        same_set(
            &mut problems,
            "evidence",
            actual,
            expected.iter().map(|s| (*s).to_owned()).collect(),
        );
    }
    if let Some(expected) = case.gates {
        same_set(
            &mut problems,
            "gates",
            strings(decision, "gates"),
            expected.iter().map(|s| (*s).to_owned()).collect(),
        );
    }
    if let Some(hours) = case.observation_hours {
        let got = decision.get("observation_hours").and_then(Value::as_u64);
        if got != Some(hours) {
            problems.push(format!("observation hours: got {got:?}, expected {hours}"));
        }
    }

    let mut said = Vec::new();
    string_leaves(&outcome, &mut said);
    said.extend(strings(decision, "notes"));
    let said = said.join(" | ");
    for mention in case.mentions {
        if !said.contains(mention) {
            problems.push(format!(
                "`{mention}` not mentioned in the outcome or notes: {said}"
            ));
        }
    }
    problems
}

/// Every string in `value` (the outcome's reasons and problems, unescaped).
fn string_leaves(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| string_leaves(v, out)),
        Value::Object(map) => map.values().for_each(|v| string_leaves(v, out)),
        _ => {}
    }
}

/// The bypass names who and which ticket, expires `expires_after_hours` after the command and
/// asks for the post-incident review within `review_within_hours`.
fn check_bypass(problems: &mut Vec<String>, outcome: &Value, commands: &[Value], b: Bypass) {
    if text(outcome, "by") != b.by || text(outcome, "ticket") != b.ticket {
        problems.push(format!(
            "bypass: got {outcome}, expected by {} for {}",
            b.by, b.ticket
        ));
    }
    let given = commands
        .iter()
        .rev()
        .find(|c| c.get("honoured").and_then(Value::as_bool) == Some(true))
        .and_then(|c| time(c, "at"));
    let (Some(given), Some(expires), Some(review)) = (
        given,
        time(outcome, "expires_at"),
        time(outcome, "review_due"),
    ) else {
        problems.push(format!(
            "bypass: no honoured command time, expiry or review date in {outcome}"
        ));
        return;
    };
    if (expires - given).num_hours() != b.expires_after_hours {
        problems.push(format!(
            "bypass: expires at {expires}, expected {} h after {given}",
            b.expires_after_hours
        ));
    }
    if (review - given).num_hours() != b.review_within_hours {
        problems.push(format!(
            "bypass: post-incident review due {review}, expected {} h after {given}",
            b.review_within_hours
        ));
    }
}
