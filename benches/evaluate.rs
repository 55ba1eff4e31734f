//! Classify + evaluate a 3,000-file change with 20 reviews against a 50-rule policy
//! (40 `[[classify]]` rules of 4 globs each, 4 key rules, risk rules in all three tiers,
//! 3 evidence definitions). Policy text and facts are built here, programmatically.
//!
//! `cargo bench --bench evaluate`. Target: evaluate under 2 ms.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::hint::black_box;

use chrono::{DateTime, Duration, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use tollgate::policy::facts::{ChangeFacts, ChangedFile, FileStatus, Review, ReviewVerdict};
use tollgate::policy::{ChangeKind, Outcome, Policy, classify, evaluate, parse_policy};

const PROJECTS: usize = 40;
const FILES: usize = 3_000;
const REVIEWS: usize = 20;
/// Changed structured files the key rules read (with contents on both sides).
const KEY_FILES: usize = 30;

const HEAD: &str = "1111111111111111111111111111111111111111";
const OLD: &str = "0000000000000000000000000000000000000000";

/// Kinds the classify rules cycle through (none with a playbook floor, so the tier comes from
/// the policy's own risk rules).
const KINDS: [ChangeKind; 8] = [
    ChangeKind::ModelArtifact,
    ChangeKind::ModelCode,
    ChangeKind::TrainingConfig,
    ChangeKind::FeatureDefinition,
    ChangeKind::FeatureSchema,
    ChangeKind::DatasetVersion,
    ChangeKind::ThresholdConfig,
    ChangeKind::DeploymentConfig,
];

/// Holders of each role, by login.
const ROLES: [(&str, &[&str]); 5] = [
    ("data_reviewer", &["dana", "dave", "dora"]),
    ("risk_reviewer", &["rita", "rob"]),
    ("ops_reviewer", &["omar", "olive"]),
    ("approver", &["ann", "abe", "@acme/leads"]),
    ("on_call", &["olga"]),
];

fn policy_text() -> String {
    let mut p =
        String::from("version = 1\ngoverned_branches = [\"main\", \"release/*\"]\n\n[roles]\n");
    for (role, members) in ROLES {
        let members: Vec<String> = members.iter().map(|m| format!("\"{m}\"")).collect();
        let _ = writeln!(p, "{role} = [{}]", members.join(", "));
    }
    // 40 classify rules, 4 globs each (an extension glob, a prefix glob, a `**` in the middle,
    // a literal-ish one), plus docs.
    for i in 0..PROJECTS - 1 {
        let kind = KINDS[i % KINDS.len()];
        let _ = write!(
            p,
            "\n[[classify]]\nkind = \"{kind}\"\npaths = [\"proj{i}/models/**/*.onnx\", \"proj{i}/configs/**/*.yaml\", \"proj{i}/data/v*/**\", \"src/component{i}/**/*.py\"]\n"
        );
    }
    p.push_str("\n[[classify]]\nkind = \"docs\"\npaths = [\"docs/**\", \"**/*.md\", \"**/*.rst\", \"**/*.txt\"]\n");
    // 4 key rules.
    p.push_str(
        r#"
[[key_rules]]
paths = ["proj*/train/*.yaml"]
keys = ["objective", "model.loss"]
kind = "objective_change"
[[key_rules]]
paths = ["proj*/train/*.yaml"]
keys = ["serving.threshold"]
kind = "threshold_change"
[[key_rules]]
paths = ["features/**/*.yaml"]
when = "removed_field"
kind = "breaking_schema_change"
[[key_rules]]
paths = ["proj*/train/*.yaml"]
when = "removed_field"
keys = ["features"]
kind = "breaking_schema_change"

[metrics]
files = ["eval/**/metrics.json"]

[risk.high]
kinds = ["model_artifact", "threshold_change", "objective_change"]
labels = ["sensitive-domain"]
paths = ["pii/**", "**/credit/**"]
metric_shift_pct = { auc = 2.0, "*" = 5.0 }
[risk.medium]
kinds = ["training_config", "dataset_version", "feature_schema", "deployment_config"]
labels = ["retrain"]
metric_shift_pct = 1.0
[risk.low]
kinds = ["model_code", "feature_definition", "threshold_config"]

[tiers.low]
sign_offs = ["approver"]
[tiers.medium]
sign_offs = ["data_reviewer", "approver"]
evidence = ["model_card", "validation_report"]
observation_hours = 4
[tiers.high]
sign_offs = ["data_reviewer", "risk_reviewer", "ops_reviewer", { role = "approver", count = 2 }]
evidence = ["model_card", "validation_report", "rollback_plan"]
observation_hours = 24

[evidence.model_card]
paths = ["proj*/models/*/MODEL_CARD.md"]
sections = ["Intended use", "Metrics", "Limitations"]
[evidence.validation_report]
paths = ["reports/validation/**"]
must = "change"
[evidence.rollback_plan]
pr_body_section = "Rollback plan"

[emergency]
approvers = ["on_call"]
ticket = "INC-[0-9]+"
"#,
    );
    p
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z")
        .expect("valid time")
        .with_timezone(&Utc)
}

/// The j-th changed path: a mix of every classify rule, docs, key-rule files, sensitive
/// paths, evidence, and paths nothing matches.
fn path(j: usize) -> String {
    let p = j % PROJECTS;
    match j % 10 {
        0 => format!("proj{p}/models/m{j}/model.onnx"),
        1 => format!("proj{p}/configs/exp{j}/params.yaml"),
        2 => format!("proj{p}/data/v{j}/part-{j}.parquet"),
        3 => format!("src/component{p}/pkg{}/mod{j}.py", j % 3),
        4 => format!("docs/proj{p}/page{j}.md"),
        5 => format!("vendor/lib{j}/src/file{j}.c"),
        6 => format!("tests/proj{p}/test_{j}.py"),
        7 => format!("web/app/{}/component{j}.tsx", j % 17),
        8 => format!("reports/validation/proj{p}/run{j}.html"),
        _ => format!("scripts/tool{j}.sh"),
    }
}

fn facts() -> ChangeFacts {
    let mut files: Vec<ChangedFile> = (0..FILES - KEY_FILES - 2)
        .map(|j| ChangedFile {
            path: path(j),
            status: match j % 13 {
                0 => FileStatus::Added,
                1 => FileStatus::Removed,
                _ => FileStatus::Modified,
            },
            previous_path: None,
            additions: 10,
            deletions: 2,
        })
        .collect();
    // A few renames out of governed folders.
    for (n, file) in files.iter_mut().enumerate().filter(|(n, _)| n % 97 == 5) {
        file.status = FileStatus::Renamed;
        file.previous_path = Some(format!("old/proj{}/configs/x{n}.yaml", n % PROJECTS));
    }
    let mut base_contents = BTreeMap::new();
    let mut head_contents = BTreeMap::new();
    for k in 0..KEY_FILES {
        let path = format!("proj{}/train/exp{k}.yaml", k % PROJECTS);
        base_contents.insert(
            path.clone(),
            "objective: binary\nmodel:\n  loss: logloss\n  depth: 6\nserving:\n  threshold: 0.7\nfeatures:\n  amount: float\n  country: str\n  age: int\n".to_owned(),
        );
        // Only one file changes a watched key; the others change unwatched values.
        let objective = if k == 7 { "multiclass" } else { "binary" };
        head_contents.insert(
            path.clone(),
            format!("objective: {objective}\nmodel:\n  loss: logloss\n  depth: {}\nserving:\n  threshold: 0.7\nfeatures:\n  amount: float\n  country: str\n  age: int\n", 6 + k),
        );
        files.push(ChangedFile {
            path,
            status: FileStatus::Modified,
            previous_path: None,
            additions: 1,
            deletions: 1,
        });
    }
    // Metrics: 20 numbers, nested.
    let metrics = |shift: f64| {
        let mut m = serde_json::Map::new();
        for i in 0..10 {
            m.insert(format!("m{i}"), serde_json::json!(0.5 + i as f64 / 100.0));
        }
        m.insert("auc".to_owned(), serde_json::json!(0.91 * (1.0 + shift)));
        let segments: serde_json::Map<String, serde_json::Value> = ["eu", "us", "apac", "latam"]
            .iter()
            .map(|s| {
                (
                    s.to_string(),
                    serde_json::json!({"auc": 0.9, "recall": 0.8 * (1.0 + shift)}),
                )
            })
            .collect();
        m.insert("segments".to_owned(), serde_json::Value::Object(segments));
        serde_json::Value::Object(m).to_string()
    };
    base_contents.insert("eval/fraud/metrics.json".to_owned(), metrics(0.0));
    head_contents.insert("eval/fraud/metrics.json".to_owned(), metrics(0.015));
    files.push(ChangedFile {
        path: "eval/fraud/metrics.json".to_owned(),
        status: FileStatus::Modified,
        previous_path: None,
        additions: 5,
        deletions: 5,
    });
    files.push(ChangedFile {
        path: "proj0/models/fraud/MODEL_CARD.md".to_owned(),
        status: FileStatus::Modified,
        previous_path: None,
        additions: 5,
        deletions: 1,
    });
    head_contents.insert(
        "proj0/models/fraud/MODEL_CARD.md".to_owned(),
        "# Fraud model\n\n## Intended use\nCard payments.\n\n## Metrics\nAUC 0.92.\n\n## Limitations\nNot for loans.\n".to_owned(),
    );
    assert_eq!(files.len(), FILES);
    let head_paths: BTreeSet<String> = (1..10)
        .map(|p| format!("proj{p}/models/fraud/MODEL_CARD.md"))
        .collect();

    // 20 reviews: role holders on the head, some stale with 100 files pushed after them, a
    // request for changes later superseded, outsiders without a role.
    let reviewers = [
        "dana", "rita", "omar", "ann", "abe", "lee", "dave", "rob", "olive", "mallory", "zed",
        "dora", "kim", "ann", "dana", "x1", "x2", "x3", "x4", "rita",
    ];
    let pushed: Vec<String> = (0..100).map(|j| path(j * 7)).collect();
    let reviews: Vec<Review> = reviewers
        .iter()
        .enumerate()
        .map(|(i, who)| Review {
            reviewer: (*who).to_owned(),
            state: match i {
                1 => ReviewVerdict::ChangesRequested,
                9 | 15 => ReviewVerdict::Commented,
                _ => ReviewVerdict::Approved,
            },
            commit: if i % 4 == 3 { OLD } else { HEAD }.to_owned(),
            at: t0() + Duration::minutes(i as i64),
            changed_after: (i % 4 == 3).then(|| pushed.clone()),
        })
        .collect();
    assert_eq!(reviews.len(), REVIEWS);

    let everyone: BTreeSet<String> = reviewers.iter().map(|r| (*r).to_owned()).collect();
    ChangeFacts {
        author: "alice".to_owned(),
        base_ref: "main".to_owned(),
        base_sha: OLD.to_owned(),
        head_ref: "feature/big".to_owned(),
        head_sha: HEAD.to_owned(),
        files,
        labels: vec!["retrain".to_owned(), "ml".to_owned(), "size/xl".to_owned()],
        body: "## Summary\nBig change.\n\n## Rollback plan\nRevert; the previous model stays deployed.\n".to_owned(),
        base_contents,
        head_contents,
        head_paths,
        reviews,
        comments: Vec::new(),
        commit_authors: BTreeSet::from(["alice".to_owned(), "bob".to_owned()]),
        teams: BTreeMap::from([(
            "@acme/leads".to_owned(),
            BTreeSet::from(["lee".to_owned(), "kim".to_owned()]),
        )]),
        write_access: everyone,
        now: t0() + Duration::hours(3),
        merged: false,
        overdue_reviews: Vec::new(),
    }
}

fn bench(c: &mut Criterion) {
    let text = policy_text();
    let policy: Policy = parse_policy(&text).unwrap_or_else(|e| panic!("bench policy: {e}"));
    let rules =
        policy.classify.len() + policy.key_rules.len() + policy.risk.len() + policy.evidence.len();
    assert_eq!(rules, 50, "a 50-rule policy");
    let facts = facts();

    // The change is what the bench claims it is: governed, high, every gate exercised.
    let decision = evaluate(&policy, &facts);
    assert_eq!(decision.tier, Some(tollgate::policy::RiskTier::High));
    assert!(
        matches!(
            decision.outcome,
            Outcome::Waiting { .. } | Outcome::Blocked { .. }
        ),
        "{:?}",
        decision.outcome
    );
    assert!(
        decision.classified.len() > 1_000,
        "{}",
        decision.classified.len()
    );

    c.bench_function("evaluate 3000 files, 20 reviews, 50 rules", |b| {
        b.iter(|| evaluate(black_box(&policy), black_box(&facts)))
    });
    // Where the time goes: the classification alone (globs, key rules, metrics).
    c.bench_function("classify 3000 files, 50 rules", |b| {
        b.iter(|| classify::classify(black_box(&policy), black_box(&facts)))
    });
    c.bench_function("parse 50-rule policy", |b| {
        b.iter(|| parse_policy(black_box(&text)).is_ok())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
