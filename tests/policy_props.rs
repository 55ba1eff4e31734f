//! Properties of `evaluate` over generated changes: changed files drawn from paths that do and
//! do not match the policy's globs, reviews by a pool of users holding various roles (in
//! varying letter case), labels, write access, commit authors, metric values, structured
//! configs and evidence.
//!
//! (a) evaluation is deterministic; (b) one more approval by an eligible person never makes
//! the outcome worse nor empties a slot; (c) one more changed file never lowers the tier;
//! (d) the author and the change's own committers can never pass it alone; (e) every person
//! listed as eligible for a missing role fills a slot by approving.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use tollgate::policy::decision::Outcome;
use tollgate::policy::facts::{
    ChangeFacts, ChangedFile, Comment, FileStatus, Review, ReviewVerdict,
};
use tollgate::policy::{Decision, Policy, RiskTier, evaluate, parse_policy};

const HEAD: &str = "1111111111111111111111111111111111111111";
const OLD: &str = "0000000000000000000000000000000000000000";

/// Close to the playbook's worked example: user and team roles, a person holding two roles,
/// kinds, key rules, labels, sensitive paths, metric thresholds, evidence, a bypass.
const PLAYBOOK: &str = r#"
version = 1
governed_branches = ["main", "release/*"]

[roles]
approver      = ["ann", "@acme/leads"]
data_reviewer = ["dave", "erin"]
risk_reviewer = ["rita", "erin"]
ops_reviewer  = ["otto"]
on_call       = ["olga"]

[[classify]]
kind = "model_artifact"
paths = ["models/**/*.onnx", "models/**/*.pt"]
[[classify]]
kind = "training_config"
paths = ["configs/train/**"]
[[classify]]
kind = "feature_schema"
paths = ["features/**/*.yaml"]
[[classify]]
kind = "data_source"
paths = ["data/sources/**"]
[[classify]]
kind = "deployment_config"
paths = ["deploy/**"]
[[classify]]
kind = "docs"
paths = ["**/*.md"]

[[key_rules]]
paths = ["configs/train/**"]
keys = ["objective"]
kind = "objective_change"
[[key_rules]]
paths = ["features/**/*.yaml"]
when = "removed_field"
kind = "breaking_schema_change"

[metrics]
files = ["eval/metrics.json"]

[risk.high]
kinds = ["model_artifact"]
labels = ["sensitive-domain"]
paths = ["pii/**"]
metric_shift_pct = 5.0
[risk.medium]
kinds = ["training_config", "deployment_config"]
labels = ["retrain"]
metric_shift_pct = { auc = 1.0, "*" = 2.0 }

[tiers.low]
sign_offs = ["approver"]
[tiers.medium]
sign_offs = ["data_reviewer", "approver"]
evidence = ["model_card"]
observation_hours = 4
[tiers.high]
sign_offs = ["data_reviewer", "risk_reviewer", "ops_reviewer", { role = "approver", count = 2 }]
evidence = ["model_card", "rollback_plan"]
observation_hours = 24

[evidence.model_card]
paths = ["models/*/MODEL_CARD.md"]
sections = ["Intended use"]
[evidence.rollback_plan]
pr_body_section = "Rollback plan"

[emergency]
approvers = ["on_call"]
ticket = "INC-[0-9]+"
"#;

/// A small one: only `[tiers.medium]` (the others inherit it), approvals survive pushes, a
/// counted role, overlapping role holders, no evidence, no bypass.
const SMALL: &str = r#"
version = 1
governed_branches = ["main"]

[roles]
approver = ["@acme/leads", "ann"]
reviewer = ["dave", "ann", "rita"]

[[classify]]
kind = "model_code"
paths = ["src/**/*.py"]
[[classify]]
kind = "data_source"
paths = ["data/sources/**"]
[[classify]]
kind = "docs"
paths = ["**/*.md"]

[risk.high]
labels = ["sensitive-domain"]

[tiers.medium]
sign_offs = [{ role = "approver", count = 2 }, "reviewer"]
stale_on_push = false
"#;

/// Logins, some in another letter case than the policy writes them.
const USERS: &[&str] = &[
    "ann", "Ann", "lee", "LEE", "kim", "dave", "erin", "rita", "otto", "olga", "mallory", "zed",
];

/// Members of the one team the policies name.
const LEADS: &[&str] = &["lee", "kim"];

/// Logins holding at least one role in either policy (team members included).
const HOLDERS: &[&str] = &["ann", "lee", "kim", "dave", "erin", "rita", "otto", "olga"];

/// Changed paths: most match some glob of one policy or the other, some match none.
const PATHS: &[&str] = &[
    "models/fraud/model.onnx",
    "models/fraud/v2.pt",
    "configs/train/base.yaml",
    "features/user.yaml",
    "data/sources/s3.toml",
    "deploy/canary.yaml",
    "docs/guide.md",
    "models/fraud/MODEL_CARD.md",
    "eval/metrics.json",
    "pii/users.csv",
    ".governance.toml",
    "src/app.py",
    "src/lib/feat.py",
    // From here on, paths no glob of either policy matches.
    "README.txt",
    "models/fraud/notes.txt",
    "configs/other.yaml",
    "scripts/run.sh",
];

/// How many of `PATHS` (from the start) match some glob of one policy or the other.
const GOVERNED: usize = 13;

const LABELS: &[&str] = &["sensitive-domain", "retrain", "docs", "wip"];

const TRAIN_CONFIGS: &[&str] = &[
    "objective: binary\nlr: 0.1\n",
    "objective: multiclass\nlr: 0.1\n",
    "objective: binary\nlr: 0.2\n",
    "objective: [unclosed\n",
];

const SCHEMAS: &[&str] = &[
    "fields:\n  - name: age\n  - name: income\n",
    "fields:\n  - name: age\n",
    "fields:\n  - name: age\n  - name: income\n  - name: country\n",
];

const CARDS: &[&str] = &[
    "# Fraud\n## Intended use\nPayments.\n",
    "# Fraud\n## Intended use\n\n## Metrics\nAUC\n",
    "# Fraud\n",
];

const BODIES: &[&str] = &[
    "",
    "## Rollback plan\nRevert the PR.\n",
    "## Rollback plan\n\n## Notes\nnone\n",
];

const METRIC_VALUES: &[f64] = &[0.0, 0.5, 0.9, 0.905, 0.91, 0.95, 0.99, 120.0, 125.0];

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z")
        .expect("valid time")
        .with_timezone(&Utc)
}

fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn lower_set<'a>(logins: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    logins.into_iter().map(str::to_owned).collect()
}

// ---------------------------------------------------------------------------------------------
// Generators.

#[derive(Debug, Clone)]
struct FileSpec {
    path: usize,
    status: FileStatus,
    /// For renames: where it came from.
    from: usize,
}

#[derive(Debug, Clone)]
struct ReviewSpec {
    reviewer: usize,
    verdict: ReviewVerdict,
    on_head: bool,
    /// Paths changed after the review (`None`: the forge could not tell).
    changed_after: Option<Vec<usize>>,
}

#[derive(Debug, Clone)]
struct Metrics {
    auc: Option<f64>,
    latency: Option<f64>,
}

/// Everything random about one change; [`Spec::facts`] turns it into `ChangeFacts`.
#[derive(Debug, Clone)]
struct Spec {
    author: usize,
    base_ref: &'static str,
    files: Vec<FileSpec>,
    labels: Vec<&'static str>,
    reviews: Vec<ReviewSpec>,
    commit_authors: Vec<usize>,
    write_access: Vec<usize>,
    base_train: Option<usize>,
    head_train: Option<usize>,
    base_schema: Option<usize>,
    head_schema: Option<usize>,
    base_metrics: Option<Metrics>,
    head_metrics: Option<Metrics>,
    card: Option<usize>,
    body: usize,
    /// `/tollgate bypass` by this user, with a valid ticket or not.
    bypass: Option<(usize, bool)>,
}

fn status() -> impl Strategy<Value = FileStatus> {
    prop_oneof![
        1 => Just(FileStatus::Added),
        3 => Just(FileStatus::Modified),
        1 => Just(FileStatus::Removed),
        1 => Just(FileStatus::Renamed),
    ]
}

fn file_spec() -> impl Strategy<Value = FileSpec> {
    // Mostly paths some glob matches, sometimes any.
    let path = prop_oneof![3 => 0..GOVERNED, 1 => 0..PATHS.len()];
    (path, status(), 0..PATHS.len()).prop_map(|(path, status, from)| FileSpec {
        path,
        status,
        from,
    })
}

fn verdict() -> impl Strategy<Value = ReviewVerdict> {
    prop_oneof![
        8 => Just(ReviewVerdict::Approved),
        1 => Just(ReviewVerdict::ChangesRequested),
        1 => Just(ReviewVerdict::Commented),
        1 => Just(ReviewVerdict::Dismissed),
    ]
}

fn review_spec(reviewers: Vec<usize>) -> impl Strategy<Value = ReviewSpec> {
    (
        prop::sample::select(reviewers),
        verdict(),
        prop::bool::weighted(0.7),
        prop::option::of(prop::collection::vec(0..PATHS.len(), 0..3)),
    )
        .prop_map(|(reviewer, verdict, on_head, changed_after)| ReviewSpec {
            reviewer,
            verdict,
            on_head,
            changed_after,
        })
}

fn metrics() -> impl Strategy<Value = Metrics> + Clone {
    (
        prop::option::weighted(0.9, prop::sample::select(METRIC_VALUES)),
        prop::option::weighted(0.7, prop::sample::select(METRIC_VALUES)),
    )
        .prop_map(|(auc, latency)| Metrics { auc, latency })
}

/// Base and head versions of a file: often the same, else independent.
fn sides<T: Clone + std::fmt::Debug>(
    side: impl Strategy<Value = T> + Clone,
) -> impl Strategy<Value = (T, T)> {
    prop_oneof![
        1 => side.clone().prop_map(|v| (v.clone(), v)),
        1 => (side.clone(), side),
    ]
}

fn user() -> impl Strategy<Value = usize> {
    0..USERS.len()
}

fn spec_with(reviews: BoxedStrategy<Vec<ReviewSpec>>) -> impl Strategy<Value = Spec> {
    let change = (
        user(),
        prop_oneof![8 => Just("main"), 1 => Just("release/1.2"), 1 => Just("feature/x")],
        prop::collection::vec(file_spec(), 1..6),
        prop::sample::subsequence(LABELS, 0..=2),
        prop::collection::vec(user(), 0..3),
        prop_oneof![
            1 => prop::collection::vec(user(), 0..6),
            3 => prop::sample::subsequence((0..USERS.len()).collect::<Vec<_>>(), USERS.len() - 3..=USERS.len()),
        ],
    );
    let contents = (
        sides(prop::option::of(0..TRAIN_CONFIGS.len())),
        sides(prop::option::of(0..SCHEMAS.len())),
        sides(prop::option::of(metrics())),
        prop::option::weighted(0.8, prop_oneof![3 => Just(0), 1 => 1..CARDS.len()]),
        prop_oneof![1 => Just(0), 3 => Just(1), 1 => Just(2)],
        prop::option::weighted(0.15, (user(), any::<bool>())),
    );
    (change, contents, reviews).prop_map(
        |(
            (author, base_ref, files, labels, commit_authors, write_access),
            (
                (base_train, head_train),
                (base_schema, head_schema),
                (base_metrics, head_metrics),
                card,
                body,
                bypass,
            ),
            reviews,
        )| Spec {
            author,
            base_ref,
            files,
            labels,
            reviews,
            commit_authors,
            write_access,
            base_train,
            head_train,
            base_schema,
            head_schema,
            base_metrics,
            head_metrics,
            card,
            body,
            bypass,
        },
    )
}

/// Any change, reviews by anyone.
fn spec() -> impl Strategy<Value = Spec> {
    let all: Vec<usize> = (0..USERS.len()).collect();
    spec_with(prop::collection::vec(review_spec(all), 0..8).boxed())
}

/// `{"auc": …, "latency_ms": …}` with the values present.
fn metrics_json(m: &Metrics) -> String {
    let mut map = serde_json::Map::new();
    if let Some(auc) = m.auc {
        map.insert("auc".to_owned(), serde_json::json!(auc));
    }
    if let Some(latency) = m.latency {
        map.insert("latency_ms".to_owned(), serde_json::json!(latency));
    }
    serde_json::Value::Object(map).to_string()
}

impl Spec {
    fn facts(&self) -> ChangeFacts {
        let now = t0() + Duration::hours(2);
        let files = self
            .files
            .iter()
            .map(|f| ChangedFile {
                path: PATHS[f.path].to_owned(),
                status: f.status,
                previous_path: (f.status == FileStatus::Renamed).then(|| PATHS[f.from].to_owned()),
                additions: 3,
                deletions: 1,
            })
            .collect();
        let mut base_contents = BTreeMap::new();
        let mut head_contents = BTreeMap::new();
        let mut head_paths = BTreeSet::new();
        let put = |contents: &mut BTreeMap<String, String>, path: &str, text: Option<String>| {
            if let Some(text) = text {
                contents.insert(path.to_owned(), text);
            }
        };
        let train = |i: Option<usize>| i.map(|i| TRAIN_CONFIGS[i].to_owned());
        let schema = |i: Option<usize>| i.map(|i| SCHEMAS[i].to_owned());
        put(
            &mut base_contents,
            "configs/train/base.yaml",
            train(self.base_train),
        );
        put(
            &mut head_contents,
            "configs/train/base.yaml",
            train(self.head_train),
        );
        put(
            &mut base_contents,
            "features/user.yaml",
            schema(self.base_schema),
        );
        put(
            &mut head_contents,
            "features/user.yaml",
            schema(self.head_schema),
        );
        put(
            &mut base_contents,
            "eval/metrics.json",
            self.base_metrics.as_ref().map(metrics_json),
        );
        put(
            &mut head_contents,
            "eval/metrics.json",
            self.head_metrics.as_ref().map(metrics_json),
        );
        if let Some(card) = self.card {
            head_paths.insert("models/fraud/MODEL_CARD.md".to_owned());
            put(
                &mut head_contents,
                "models/fraud/MODEL_CARD.md",
                Some(CARDS[card].to_owned()),
            );
        }
        let reviews = self
            .reviews
            .iter()
            .enumerate()
            .map(|(i, r)| Review {
                reviewer: USERS[r.reviewer].to_owned(),
                state: r.verdict,
                commit: if r.on_head { HEAD } else { OLD }.to_owned(),
                at: t0() + Duration::minutes(i as i64),
                changed_after: r
                    .changed_after
                    .as_ref()
                    .map(|paths| paths.iter().map(|p| PATHS[*p].to_owned()).collect()),
            })
            .collect();
        let comments = self
            .bypass
            .iter()
            .map(|(by, valid)| Comment {
                author: USERS[*by].to_owned(),
                body: format!(
                    "/tollgate bypass {} fraud spike in prod",
                    if *valid { "INC-42" } else { "TICKET-42" }
                ),
                at: now - Duration::minutes(30),
                head_sha: HEAD.to_owned(),
                edited: false,
            })
            .collect();
        ChangeFacts {
            author: USERS[self.author].to_owned(),
            base_ref: self.base_ref.to_owned(),
            base_sha: OLD.to_owned(),
            head_ref: "feature/change".to_owned(),
            head_sha: HEAD.to_owned(),
            files,
            labels: self.labels.iter().map(|l| (*l).to_owned()).collect(),
            body: BODIES[self.body].to_owned(),
            base_contents,
            head_contents,
            head_paths,
            reviews,
            comments,
            commit_authors: lower_set(self.commit_authors.iter().map(|u| USERS[*u])),
            teams: BTreeMap::from([("@acme/leads".to_owned(), lower_set(LEADS.iter().copied()))]),
            write_access: lower_set(self.write_access.iter().map(|u| USERS[*u])),
            now,
            merged: false,
            overdue_reviews: Vec::new(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Both policies, parsed once (building glob sets is the slow part in debug builds).
fn policies() -> &'static [(&'static str, Policy); 2] {
    static POLICIES: LazyLock<[(&str, Policy); 2]> = LazyLock::new(parse_both);
    &POLICIES
}

/// The same policies parsed a second time, independently.
fn policies_again() -> &'static [(&'static str, Policy); 2] {
    static POLICIES: LazyLock<[(&str, Policy); 2]> = LazyLock::new(parse_both);
    &POLICIES
}

fn parse_both() -> [(&'static str, Policy); 2] {
    [
        (
            "playbook",
            parse_policy(PLAYBOOK).expect("playbook policy is valid"),
        ),
        ("small", parse_policy(SMALL).expect("small policy is valid")),
    ]
}

/// Blocked < Waiting < Passed = Bypassed. `None` for NotGoverned, which is not on the scale.
fn rank(outcome: &Outcome) -> Option<u8> {
    match outcome {
        Outcome::NotGoverned { .. } => None,
        Outcome::Blocked { .. } => Some(0),
        Outcome::Waiting { .. } => Some(1),
        Outcome::Passed | Outcome::Bypassed { .. } => Some(2),
    }
}

fn filled(decision: &Decision) -> usize {
    decision
        .sign_offs
        .iter()
        .filter(|s| s.filled_by.is_some())
        .count()
}

/// Appends an approval on the head commit, after every other review.
fn approve(facts: &mut ChangeFacts, login: &str) {
    let at = facts.reviews.iter().map(|r| r.at).max().unwrap_or_else(t0) + Duration::minutes(1);
    facts.reviews.push(Review {
        reviewer: login.to_owned(),
        state: ReviewVerdict::Approved,
        commit: HEAD.to_owned(),
        at,
        changed_after: Some(Vec::new()),
    });
}

/// Makes `login` able to sign off: write access, and not among the change's committers.
fn make_eligible(facts: &mut ChangeFacts, login: &str) {
    facts.commit_authors.retain(|c| !same(c, login));
    facts.write_access.insert(login.to_lowercase());
}

/// Some letter case of `login`.
fn recase(login: &str, upper: bool) -> String {
    if upper {
        login.to_uppercase()
    } else {
        login.to_owned()
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 1500,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(config())]

    /// (a) The same policy and facts always give the same decision, also after a round trip
    /// of the facts through their JSON form (the `--facts` file format).
    #[test]
    fn evaluation_is_deterministic(spec in spec()) {
        let facts = spec.facts();
        let text = serde_json::to_string(&facts).expect("facts serialize");
        let reread: ChangeFacts = serde_json::from_str(&text).expect("facts deserialize");
        prop_assert_eq!(&reread, &facts);
        for ((name, policy), (_, again)) in policies().iter().zip(policies_again()) {
            let first = evaluate(policy, &facts);
            let second = evaluate(policy, &facts.clone());
            let third = evaluate(again, &reread);
            prop_assert_eq!(&first, &second, "policy {}", name);
            prop_assert_eq!(&first, &third, "policy {}", name);
            let json = |d: &Decision| serde_json::to_string(d).expect("decision serializes");
            prop_assert_eq!(json(&first), json(&second), "policy {}", name);
            prop_assert_eq!(json(&first), json(&third), "policy {}", name);
        }
    }

    /// (b) One more approval, on the head, by someone who holds a role, has write access, is
    /// neither the author nor a committer, never makes the outcome worse, never changes the
    /// tier, and never leaves fewer slots filled.
    #[test]
    fn an_eligible_approval_never_makes_things_worse(
        spec in spec(),
        who in 0..HOLDERS.len(),
        upper in any::<bool>(),
    ) {
        let mut before = spec.facts();
        let login = HOLDERS[who];
        prop_assume!(!same(login, &before.author));
        make_eligible(&mut before, login);
        let mut after = before.clone();
        approve(&mut after, &recase(login, upper));
        for (name, policy) in policies() {
            let d0 = evaluate(policy, &before);
            let d1 = evaluate(policy, &after);
            prop_assert_eq!(d0.tier, d1.tier, "policy {}", name);
            prop_assert_eq!(
                rank(&d0.outcome).is_none(),
                rank(&d1.outcome).is_none(),
                "policy {}: {:?} → {:?}", name, d0.outcome, d1.outcome
            );
            prop_assert!(
                rank(&d1.outcome) >= rank(&d0.outcome),
                "policy {}: {} approving turned {:?} into {:?}", name, login, d0.outcome, d1.outcome
            );
            prop_assert!(
                filled(&d1) >= filled(&d0),
                "policy {}: {} approving took filled slots from {} to {}",
                name, login, filled(&d0), filled(&d1)
            );
        }
    }

    /// (c) One more changed file never lowers the tier (not governed is the lowest).
    #[test]
    fn another_changed_file_never_lowers_the_tier(spec in spec(), extra in file_spec()) {
        let before = spec.facts();
        let mut more = spec.clone();
        more.files.push(extra);
        let after = more.facts();
        for (name, policy) in policies() {
            let d0 = evaluate(policy, &before);
            let d1 = evaluate(policy, &after);
            prop_assert!(
                d1.tier >= d0.tier,
                "policy {}: adding {:?} lowered the tier from {:?} to {:?}",
                name, after.files.last(), d0.tier, d1.tier
            );
        }
    }

    /// (d) With every approval given by the author or by someone who committed to the change
    /// (whatever roles they hold, with write access, in any letter case), a governed change
    /// never passes nor is bypassed by one of them, and no slot is filled.
    #[test]
    fn the_author_and_committers_alone_never_pass(
        spec in spec(),
        builders in prop::sample::subsequence(HOLDERS, 0..=3),
        approvals in prop::collection::vec((0..4usize, any::<bool>(), any::<bool>()), 1..6),
        bypass in prop::option::of((0..4usize, any::<bool>())),
    ) {
        let mut facts = spec.facts();
        facts.commit_authors = lower_set(builders.iter().copied());
        facts.write_access = lower_set(USERS.iter().copied());
        // Approvals by others are turned into comments; approvals by the author and the
        // builders are added, on the head.
        for review in &mut facts.reviews {
            if review.state == ReviewVerdict::Approved {
                review.state = ReviewVerdict::Commented;
            }
        }
        let author = facts.author.clone();
        for (pick, upper, on_head) in approvals {
            let login = if pick == 0 || builders.is_empty() {
                author.clone()
            } else {
                builders[pick % builders.len()].to_owned()
            };
            approve(&mut facts, &recase(&login, upper));
            if !on_head {
                let last = facts.reviews.last_mut().expect("just added");
                last.commit = OLD.to_owned();
                last.changed_after = Some(Vec::new());
            }
        }
        // Nor can they bypass it: the only `/tollgate bypass` (valid ticket, on the head, in
        // time) is by one of them. `olga` holds on_call, and may be among the builders.
        facts.comments.clear();
        if let Some((pick, upper)) = bypass {
            let login = if pick == 0 || builders.is_empty() {
                author.clone()
            } else {
                builders[pick % builders.len()].to_owned()
            };
            facts.comments.push(Comment {
                author: recase(&login, upper),
                body: "/tollgate bypass INC-7 fraud spike in prod".to_owned(),
                at: facts.now - Duration::minutes(30),
                head_sha: HEAD.to_owned(),
                edited: false,
            });
        }
        for (name, policy) in policies() {
            let decision = evaluate(policy, &facts);
            if decision.tier.is_some() {
                prop_assert!(
                    !decision.outcome.allows_merge(),
                    "policy {}: {:?} with approvals only by {} and {:?}; commands {:?}",
                    name, decision.outcome, author, builders, decision.commands
                );
                prop_assert_eq!(filled(&decision), 0, "policy {}: {:?}", name, decision.sign_offs);
            }
        }
    }

    /// (e) Each person the decision lists as eligible for a missing role fills one more slot
    /// by approving on the head (the list is what a reviewer is told to go and ask).
    #[test]
    fn everyone_listed_as_eligible_can_fill_a_slot(spec in spec(), upper in any::<bool>()) {
        let facts = spec.facts();
        for (name, policy) in policies() {
            let decision = evaluate(policy, &facts);
            for missing in &decision.missing_roles {
                for login in &missing.eligible {
                    let mut after = facts.clone();
                    approve(&mut after, &recase(login, upper));
                    let d1 = evaluate(policy, &after);
                    prop_assert_eq!(
                        filled(&d1),
                        filled(&decision) + 1,
                        "policy {}: {} is listed as eligible for {} but approving filled no slot; ignored: {:?}",
                        name, login, missing.role, d1.ignored_approvals
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The generators reach every outcome and tier (else the properties prove little).

#[test]
fn generated_changes_cover_every_outcome_and_tier() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let strategy = spec();
    let mut outcomes = BTreeSet::new();
    let mut tiers = BTreeSet::new();
    let policy = parse_policy(PLAYBOOK).expect("valid");
    for _ in 0..600 {
        let spec = strategy.new_tree(&mut runner).expect("generate").current();
        let mut facts = spec.facts();
        // Give the reviews a fair chance: everyone can write.
        facts.write_access = lower_set(USERS.iter().copied());
        let decision = evaluate(&policy, &facts);
        outcomes.insert(decision.outcome.name());
        tiers.insert(decision.tier);
    }
    for outcome in ["not_governed", "passed", "waiting", "blocked", "bypassed"] {
        assert!(outcomes.contains(outcome), "never {outcome}: {outcomes:?}");
    }
    for tier in [
        None,
        Some(RiskTier::Low),
        Some(RiskTier::Medium),
        Some(RiskTier::High),
    ] {
        assert!(tiers.contains(&tier), "never {tier:?}: {tiers:?}");
    }
}
