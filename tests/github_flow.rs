//! tollgate on GitHub, end to end in one process: signed webhooks into the real intake, the
//! worker gathering facts from a fake GitHub (which checks every request against GitHub's
//! OpenAPI description), and the check run and sticky comment it publishes.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use chrono::TimeDelta;
use secrecy::SecretString;
use serde_json::{Value, json};
use tollgate::config::JobSettings;
use tollgate::forge::github::api::{Auth, GithubApi};
use tollgate::forge::github::worker::{GithubSink, GithubWorker, WorkerOptions};
use tollgate::intake::{IntakeSecrets, IntakeState};
use tollgate::metrics::Metrics;
use tollgate::render::COMMENT_MARKER;

use common::fake_github::{CheckRunView, CommitSpec, FakeGitHub, FileChange, PrSpec};
use common::{GITHUB_SECRET, TestApp};

use common::fraud_repo::{BASE, REPO};

const HEAD1: &str = "head1111111111111111111111111111111111111";
const HEAD2: &str = "head2222222222222222222222222222222222222";
const CHECK: &str = "tollgate";

const CARD: &str = "# Fraud v2\n## Intended use\nScoring card payments.\n## Metrics\nAUC 0.93\n## Limitations\nNot for loans.\n";
const BODY: &str =
    "New fraud model.\n\n## Rollback plan\nRevert this PR; v1 stays in the registry.\n";

/// Every test's requests are checked against GitHub's OpenAPI description when it ends.
struct Tester {
    fake: FakeGitHub,
    app: TestApp,
    worker: Arc<GithubWorker>,
    delivery: std::sync::atomic::AtomicUsize,
    audit: Arc<tollgate::ledger::Audit>,
    db: tempfile::TempDir,
}

impl Drop for Tester {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.fake.assert_requests_match_openapi();
        }
    }
}

impl Tester {
    async fn new(app_mode: bool) -> Tester {
        Tester::with_default_policy(app_mode, None).await
    }

    async fn with_default_policy(app_mode: bool, default_policy: Option<&str>) -> Tester {
        Tester::build(app_mode, default_policy, JobSettings::default()).await
    }

    /// App mode with the durable queue worked as `jobs` says (short give-up bounds, or an
    /// intake-only process with `workers: 0`).
    async fn with_jobs(jobs: JobSettings) -> Tester {
        Tester::build(true, None, jobs).await
    }

    async fn build(app_mode: bool, default_policy: Option<&str>, jobs: JobSettings) -> Tester {
        let fake = FakeGitHub::start().await;
        let auth = if app_mode {
            fake.set_app("tollgate-test", 4242);
            let pem = std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/fixtures/github-app-test-key.pem"
            ))
            .unwrap();
            Auth::App {
                app_id: 4242,
                private_key_pem: SecretString::from(pem),
            }
        } else {
            fake.set_user("tollgate-bot");
            Auth::Token(SecretString::from("ghp_test"))
        };
        let api = GithubApi::new(&fake.url().parse().unwrap(), auth).unwrap();
        let default_policy =
            default_policy.map(|text| Arc::new(tollgate::policy::parse_policy(text).unwrap()));
        let db = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", db.path().join("ledger.db").display());
        let audit = Arc::new(tollgate::ledger::Audit {
            ledger: tollgate::ledger::store::Ledger::open(&url).await.unwrap(),
            key: ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]),
        });
        let metrics = Metrics::new();
        let worker = GithubWorker::start(
            api,
            WorkerOptions {
                default_policy,
                audit: Some(audit.clone()),
                metrics: metrics.clone(),
                jobs,
                ..WorkerOptions::new(
                    CHECK,
                    tollgate::queue::JobQueue::new(audit.ledger.pool().clone()),
                )
            },
        );
        let secrets = IntakeSecrets {
            github: vec![SecretString::from(GITHUB_SECRET)],
            gitlab: vec![],
        };
        let state = IntakeState::new(
            secrets,
            metrics.clone(),
            Arc::new(GithubSink(worker.clone())),
        );
        let app = TestApp {
            router: tollgate::server::router(state, metrics.clone()),
            sink: Arc::new(tollgate::sink::MemorySink::default()),
            metrics,
        };
        let tester = Tester {
            fake,
            app,
            worker,
            delivery: 0.into(),
            audit,
            db,
        };
        tester.seed();
        tester
    }

    /// The worked example 1 repository: the fraud policy at the base, teams and permissions.
    fn seed(&self) {
        let fake = &self.fake;
        common::fraud_repo::seed_example(fake, &["lena", "alice"]);
        fake.set_permission(REPO, "rhea", "read");
        fake.set_team("acme", "model-risk", &["rita", "rhea"]);
    }

    /// Opens PR #7 by alice into `main` at the base, one commit (the head) with `files`.
    fn open_pr_with(&self, files: Vec<FileChange>) {
        self.fake.open_pr(
            REPO,
            PrSpec {
                number: 7,
                author: "alice".to_owned(),
                title: "Fraud model v2".to_owned(),
                body: BODY.to_owned(),
                base_sha: BASE.to_owned(),
                commits: vec![CommitSpec::new(HEAD1, "alice", files)],
                ..PrSpec::default()
            },
        );
    }

    /// App mode, parking a change as `failed` once it has kept failing for a second.
    async fn giving_up_after_a_second() -> Tester {
        Tester::with_jobs(JobSettings {
            give_up_after: std::time::Duration::from_secs(1),
            ..JobSettings::default()
        })
        .await
    }

    /// Opens the fraud PR with all four sign-offs on its head: it passes once evaluated.
    fn open_fraud_pr_signed_off(&self) {
        self.open_fraud_pr();
        for reviewer in SIGN_OFFS {
            self.fake
                .add_review(REPO, 7, reviewer, "APPROVED", HEAD1, self.fake.now());
        }
    }

    fn open_fraud_pr(&self) {
        self.open_pr_with(vec![
            FileChange::added("models/fraud/v2/model.onnx", "weights"),
            FileChange::modified("models/fraud/MODEL_CARD.md", CARD),
            FileChange::added("reports/validation/fraud-v2.html", "<html>ok</html>"),
            FileChange::added("reports/risk/fraud-v2.md", "# Risk\nLow.\n"),
            FileChange::modified("eval/metrics.json", r#"{"auc": 0.93}"#),
        ]);
    }

    fn installation(&self) -> Value {
        json!({ "id": self.fake.installation_id() })
    }

    fn pr_payload(&self, action: &str, head: &str) -> Value {
        json!({
            "action": action,
            "number": 7,
            "pull_request": {
                "number": 7, "user": {"login": "alice", "id": 1},
                "head": {"ref": "feature", "sha": head}, "base": {"ref": "main", "sha": BASE},
                "labels": [], "title": "Fraud model v2", "body": BODY
            },
            "repository": {"id": 99, "full_name": REPO},
            "installation": self.installation(),
        })
    }

    fn review_payload(&self, reviewer: &str, state: &str, commit: &str) -> Value {
        json!({
            "action": "submitted",
            "review": {"user": {"login": reviewer, "id": 2}, "state": state, "commit_id": commit,
                       "submitted_at": "2026-11-26T10:00:00Z"},
            "pull_request": {"number": 7},
            "repository": {"id": 99, "full_name": REPO},
            "installation": self.installation(),
        })
    }

    /// Sends a signed delivery through intake and waits until the worker is done with it.
    async fn deliver(&self, event: &str, payload: &Value) {
        let n = self
            .delivery
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.deliver_as(event, payload, &format!("d-{n}")).await;
    }

    /// Sends a delivery with a given `X-GitHub-Delivery` (GitHub reuses it on redelivery).
    async fn deliver_as(&self, event: &str, payload: &Value, delivery_id: &str) {
        self.send_as(event, payload, delivery_id).await;
        tokio::time::timeout(std::time::Duration::from_secs(20), self.worker.settle())
            .await
            .expect("the worker settles");
    }

    /// Sends a delivery and returns once intake accepted it (queued), without waiting for
    /// the worker.
    async fn send_as(&self, event: &str, payload: &Value, delivery_id: &str) {
        let request = common::github_request(
            event,
            delivery_id,
            serde_json::to_vec(payload).unwrap(),
            GITHUB_SECRET,
        );
        let (status, body) = self.app.send(request).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }

    async fn review(&self, reviewer: &str, state: &str, commit: &str) {
        self.fake.advance(TimeDelta::minutes(5));
        self.fake.add_review(
            REPO,
            7,
            reviewer,
            &state.to_uppercase(),
            commit,
            self.fake.now(),
        );
        self.deliver(
            "pull_request_review",
            &self.review_payload(reviewer, state, commit),
        )
        .await;
    }

    fn check(&self, sha: &str) -> CheckRunView {
        let runs: Vec<CheckRunView> = self
            .fake
            .check_runs(REPO)
            .into_iter()
            .filter(|r| r.head_sha == sha && r.name == CHECK)
            .collect();
        assert_eq!(
            runs.len(),
            1,
            "exactly one check run per head sha: {runs:#?}"
        );
        runs.into_iter().next().unwrap()
    }

    fn sticky_comments(&self) -> Vec<common::fake_github::CommentView> {
        self.fake
            .comments(REPO, 7)
            .into_iter()
            .filter(|c| c.body.contains(COMMENT_MARKER))
            .collect()
    }
}

#[tokio::test]
async fn worked_example_1_runs_event_by_event() {
    let t = Tester::new(true).await;
    t.open_fraud_pr();
    t.deliver("pull_request", &t.pr_payload("opened", HEAD1))
        .await;

    let run = t.check(HEAD1);
    assert_eq!(
        run.conclusion.as_deref(),
        Some("action_required"),
        "{run:#?}"
    );
    assert_eq!(run.title.as_deref(), Some("High risk — 0 of 4 sign-offs"));
    let summary = run.summary.clone().unwrap();
    for role in ["data_reviewer", "risk_reviewer", "ops_reviewer", "approver"] {
        assert!(
            summary.contains(role),
            "{role} missing from the summary:\n{summary}"
        );
    }
    assert!(
        run.annotations_count >= 1,
        "the model artifact is annotated"
    );

    // The author's approval never counts.
    t.review("alice", "approved", HEAD1).await;
    let run = t.check(HEAD1);
    assert_eq!(run.title.as_deref(), Some("High risk — 0 of 4 sign-offs"));
    let comment = &t.sticky_comments()[0].body;
    assert!(
        comment.contains("alice: the author cannot approve their own change"),
        "{comment}"
    );

    // A read-only member of a required team does not count either.
    t.review("rhea", "approved", HEAD1).await;
    assert_eq!(
        t.check(HEAD1).title.as_deref(),
        Some("High risk — 0 of 4 sign-offs")
    );

    // Each distinct role holder moves it; the fourth makes it pass.
    for (i, reviewer) in ["dana", "rita", "omar"].iter().enumerate() {
        t.review(reviewer, "approved", HEAD1).await;
        let run = t.check(HEAD1);
        assert_eq!(run.conclusion.as_deref(), Some("action_required"));
        assert_eq!(
            run.title,
            Some(format!("High risk — {} of 4 sign-offs", i + 1))
        );
    }
    t.review("lena", "approved", HEAD1).await;
    let run = t.check(HEAD1);
    assert_eq!(run.conclusion.as_deref(), Some("success"), "{run:#?}");
    assert_eq!(run.title.as_deref(), Some("High risk — passed"));
    // Never success before the fourth sign-off.
    let successes = run
        .history
        .iter()
        .filter(|(_, c)| c.as_deref() == Some("success"))
        .count();
    assert_eq!(successes, 1, "{:?}", run.history);

    // A later push touching models/ is no longer a success: approvals on the old head are stale.
    t.fake.advance(TimeDelta::minutes(5));
    t.fake.push(
        REPO,
        7,
        CommitSpec::new(
            HEAD2,
            "alice",
            vec![FileChange::modified(
                "models/fraud/v2/model.onnx",
                "new weights",
            )],
        ),
    );
    t.deliver("pull_request", &t.pr_payload("synchronize", HEAD2))
        .await;
    let run = t.check(HEAD2);
    assert_ne!(run.conclusion.as_deref(), Some("success"), "{run:#?}");
    assert!(
        run.history
            .iter()
            .all(|(_, c)| c.as_deref() != Some("success"))
    );

    // One sticky comment through it all, written by the App.
    let sticky = t.sticky_comments();
    assert_eq!(sticky.len(), 1);
    assert_eq!(sticky[0].author, "tollgate-test[bot]");

    // Every decision is in the ledger, which verifies; the four sign-offs are on record.
    let key = t.audit.key.verifying_key();
    let report = t.audit.ledger.verify(&key).await.unwrap();
    assert!(report.broken.is_empty() && report.records > 0, "{report:?}");
    let records = t.audit.ledger.change_records(REPO, 7).await.unwrap();
    let mut signers: Vec<String> = records
        .iter()
        .filter_map(|r| r.signed())
        .filter(|r| r.record.kind == tollgate::ledger::record::RecordKind::SignOffCounted)
        .filter_map(|r| r.record.actor)
        .collect();
    signers.sort();
    signers.dedup();
    assert_eq!(signers, ["dana", "lena", "omar", "rita"]);
    // The comment carries the signed records; each verifies with the public key alone, and
    // an edited one does not.
    let checks = tollgate::ledger::verify_comment(&sticky[0].body, &key).unwrap();
    assert!(!checks.is_empty());
    assert!(checks.iter().all(|c| c.result.is_ok()), "{checks:?}");
    // `tollgate audit show` answers the playbook's self-check from that ledger.
    let shown = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["audit", "show", "acme/fraud-model#7"])
        .env_clear()
        .env(
            "TOLLGATE_DATABASE_URL",
            format!("sqlite://{}", t.db.path().join("ledger.db").display()),
        )
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    for line in [
        "dana as data_reviewer",
        "rita as risk_reviewer",
        "omar as ops_reviewer",
        "lena as approver",
    ] {
        assert!(shown.contains(line), "`{line}` missing:\n{shown}");
    }
    assert!(shown.contains(&format!("[commit {HEAD1}]")), "{shown}");
    let mut copied = tollgate::ledger::records_in_comment(&sticky[0].body)
        .unwrap()
        .remove(0);
    copied.record.detail.push('!');
    assert!(copied.verify(&key).is_err());
    t.fake.assert_requests_match_openapi();
}

#[tokio::test]
async fn the_policy_is_read_at_the_base_even_when_the_pr_edits_it() {
    let t = Tester::new(true).await;
    t.fake.open_pr(
        REPO,
        PrSpec {
            number: 7,
            base_sha: BASE.to_owned(),
            body: BODY.to_owned(),
            commits: vec![CommitSpec::new(
                HEAD1,
                "alice",
                vec![FileChange::modified(
                    ".governance.toml",
                    "version = 1\n[tiers.low]\n",
                )],
            )],
            ..PrSpec::default()
        },
    );
    t.deliver("pull_request", &t.pr_payload("opened", HEAD1))
        .await;
    let policy_reads: Vec<_> = t
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/contents/.governance.toml"))
        .collect();
    assert!(!policy_reads.is_empty());
    for read in &policy_reads {
        assert_eq!(
            read.query_param("ref"),
            Some(BASE),
            "the policy must be read at the base sha"
        );
    }
    let run = t.check(HEAD1);
    assert_eq!(
        run.conclusion.as_deref(),
        Some("action_required"),
        "a policy edit needs the approver: {run:#?}"
    );
    let comment = &t.sticky_comments()[0].body;
    assert!(
        comment.contains("judged by the policy at the base commit"),
        "{comment}"
    );
    t.fake.assert_requests_match_openapi();
}

#[tokio::test]
async fn redeliveries_and_bursts_leave_exactly_one_comment() {
    let t = Tester::new(true).await;
    t.open_fraud_pr();
    let payload = t.pr_payload("opened", HEAD1);
    for _ in 0..3 {
        t.deliver("pull_request", &payload).await;
    }
    for action in [
        "edited",
        "labeled",
        "unlabeled",
        "synchronize",
        "ready_for_review",
        "reopened",
        "edited",
    ] {
        t.deliver("pull_request", &t.pr_payload(action, HEAD1))
            .await;
    }
    assert_eq!(t.sticky_comments().len(), 1);
    assert_eq!(
        t.fake.check_runs(REPO).len(),
        1,
        "one check run per head sha, updated in place"
    );
}

#[tokio::test]
async fn a_marker_comment_by_someone_else_is_neither_edited_nor_trusted() {
    let t = Tester::new(true).await;
    t.open_fraud_pr();
    let forged = format!("{COMMENT_MARKER}\n## High risk — passed\nAll signed off.");
    let forged_id = t.fake.add_comment(REPO, 7, "mallory", &forged);
    t.deliver("pull_request", &t.pr_payload("opened", HEAD1))
        .await;
    let comments = t.fake.comments(REPO, 7);
    let mallory = comments.iter().find(|c| c.id == forged_id).unwrap();
    assert_eq!(
        mallory.body, forged,
        "someone else's comment is never edited"
    );
    let ours: Vec<_> = comments
        .iter()
        .filter(|c| c.author == "tollgate-test[bot]")
        .collect();
    assert_eq!(ours.len(), 1);
    assert_eq!(
        t.check(HEAD1).conclusion.as_deref(),
        Some("action_required")
    );
}

#[tokio::test]
async fn token_mode_publishes_a_commit_status() {
    let t = Tester::new(false).await;
    t.open_fraud_pr();
    t.deliver("pull_request", &t.pr_payload("opened", HEAD1))
        .await;
    assert!(
        t.fake.check_runs(REPO).is_empty(),
        "token mode cannot create check runs"
    );
    let statuses = t.fake.statuses(REPO, HEAD1);
    let last = statuses.last().expect("a status");
    assert_eq!(
        (last.context.as_str(), last.state.as_str()),
        (CHECK, "pending")
    );
    assert!(
        last.description
            .as_deref()
            .unwrap()
            .starts_with("High risk")
    );
    let sticky = t.sticky_comments();
    assert_eq!(sticky.len(), 1);
    assert_eq!(sticky[0].author, "tollgate-bot");
    t.fake.assert_requests_match_openapi();
}

#[tokio::test]
async fn a_repository_without_a_policy_is_left_alone() {
    let t = Tester::new(true).await;
    t.fake.open_pr(
        "acme/other",
        PrSpec {
            number: 7,
            base_sha: BASE.to_owned(),
            commits: vec![CommitSpec::new(
                HEAD1,
                "alice",
                vec![FileChange::added("x.py", "1")],
            )],
            ..PrSpec::default()
        },
    );
    let mut payload = t.pr_payload("opened", HEAD1);
    payload["repository"]["full_name"] = "acme/other".into();
    t.deliver("pull_request", &payload).await;
    assert!(t.fake.check_runs("acme/other").is_empty());
    assert!(t.fake.comments("acme/other", 7).is_empty());
}

impl Tester {
    fn comment_payload(&self, author: &str, body: &str) -> Value {
        json!({
            "action": "created",
            "issue": {"number": 7, "pull_request": {"url": "https://example/pulls/7"}},
            "comment": {"id": 1, "user": {"login": author, "id": 3}, "body": body},
            "repository": {"id": 99, "full_name": REPO},
            "installation": self.installation(),
        })
    }

    async fn comment(&self, author: &str, body: &str) {
        self.fake.advance(TimeDelta::minutes(1));
        self.fake.add_comment(REPO, 7, author, body);
        self.deliver("issue_comment", &self.comment_payload(author, body))
            .await;
    }
}

const EXPERIMENTS_BASE: &str = "exp00000000000000000000000000000000000000";

#[tokio::test]
async fn retargeting_to_main_never_shows_a_passing_result_for_main() {
    let t = Tester::new(true).await;
    let policy = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/examples/fraud-model.governance.toml"
    ))
    .unwrap();
    t.fake
        .set_file(REPO, EXPERIMENTS_BASE, ".governance.toml", &policy);
    t.fake.set_file(
        REPO,
        EXPERIMENTS_BASE,
        "eval/metrics.json",
        r#"{"auc": 0.91}"#,
    );
    t.fake.open_pr(
        REPO,
        PrSpec {
            number: 7,
            body: BODY.to_owned(),
            base_ref: "experiments".to_owned(),
            base_sha: EXPERIMENTS_BASE.to_owned(),
            commits: vec![CommitSpec::new(
                HEAD1,
                "alice",
                vec![FileChange::added("models/fraud/v2/model.onnx", "weights")],
            )],
            ..PrSpec::default()
        },
    );
    let mut opened = t.pr_payload("opened", HEAD1);
    opened["pull_request"]["base"] = json!({"ref": "experiments", "sha": EXPERIMENTS_BASE});
    t.deliver("pull_request", &opened).await;
    assert!(
        t.fake.check_runs(REPO).is_empty(),
        "an ungoverned base branch gets no check, so nothing green can be carried over"
    );

    t.fake.retarget(REPO, 7, "main", BASE);
    let mut edited = t.pr_payload("edited", HEAD1);
    edited["changes"] =
        json!({"base": {"ref": {"from": "experiments"}, "sha": {"from": EXPERIMENTS_BASE}}});
    t.deliver("pull_request", &edited).await;
    let run = t.check(HEAD1);
    assert_eq!(
        run.history.first().map(|h| h.0.as_str()),
        Some("in_progress"),
        "reset first: {:?}",
        run.history
    );
    assert_eq!(run.conclusion.as_deref(), Some("action_required"));
    assert!(
        run.history
            .iter()
            .all(|(_, c)| c.as_deref() != Some("success")),
        "{:?}",
        run.history
    );
}

#[tokio::test]
async fn a_bypass_is_honoured_for_on_call_with_a_ticket_and_refused_otherwise() {
    let t = Tester::new(true).await;
    t.open_fraud_pr();
    t.deliver("pull_request", &t.pr_payload("opened", HEAD1))
        .await;

    t.comment("dana", "/tollgate bypass INC-42 conversion dropped")
        .await;
    assert_eq!(
        t.check(HEAD1).conclusion.as_deref(),
        Some("action_required")
    );
    let comment = &t.sticky_comments()[0].body;
    assert!(
        comment.contains("bypass refused · '/tollgate bypass INC-42 conversion dropped': only holders of 'on_call'"),
        "{comment}"
    );

    t.comment("olga", "/tollgate bypass JIRA-1 conversion dropped")
        .await;
    // Each refused command gets one reply, however often the PR is evaluated again.
    let replies: Vec<_> = t
        .fake
        .comments(REPO, 7)
        .into_iter()
        .filter(|c| c.author == "tollgate-test[bot]" && c.body.contains("was refused"))
        .collect();
    assert_eq!(replies.len(), 2, "{replies:#?}");
    assert!(
        replies[0].body.contains("@dana your command"),
        "{}",
        replies[0].body
    );
    assert!(
        replies[0].body.contains("only holders of"),
        "{}",
        replies[0].body
    );
    assert!(
        replies[1].body.contains("does not match"),
        "{}",
        replies[1].body
    );
    assert_eq!(
        t.check(HEAD1).conclusion.as_deref(),
        Some("action_required")
    );

    t.comment("olga", "/tollgate bypass INC-42 conversion dropped 10%")
        .await;
    let run = t.check(HEAD1);
    assert_eq!(run.conclusion.as_deref(), Some("success"), "{run:#?}");
    assert!(
        run.title
            .as_deref()
            .unwrap()
            .contains("bypassed by olga (INC-42)")
    );
    let comment = &t.sticky_comments()[0].body;
    assert!(comment.contains("post-incident review due"), "{comment}");

    // A new head is not covered by a bypass given for the old one.
    t.fake.advance(TimeDelta::minutes(5));
    t.fake.push(
        REPO,
        7,
        CommitSpec::new(
            HEAD2,
            "alice",
            vec![FileChange::modified("models/fraud/v2/model.onnx", "v2")],
        ),
    );
    t.deliver("pull_request", &t.pr_payload("synchronize", HEAD2))
        .await;
    assert_eq!(
        t.check(HEAD2).conclusion.as_deref(),
        Some("action_required")
    );
    t.fake.assert_requests_match_openapi();
}

#[tokio::test]
async fn an_installation_token_is_minted_once_and_reused() {
    let t = Tester::new(true).await;
    t.open_fraud_pr();
    for action in ["opened", "edited", "labeled"] {
        t.deliver("pull_request", &t.pr_payload(action, HEAD1))
            .await;
    }
    assert_eq!(t.fake.tokens_minted(), 1);
}

#[tokio::test]
async fn a_synchronize_on_a_50_file_pr_with_warm_caches_stays_within_budget() {
    let t = Tester::new(true).await;
    let mut files: Vec<FileChange> = (0..45)
        .map(|i| FileChange::added(&format!("src/features/f{i}.py"), "x = 1\n"))
        .collect();
    files.extend([
        FileChange::added("models/fraud/v2/model.onnx", "weights"),
        FileChange::modified("models/fraud/MODEL_CARD.md", CARD),
        FileChange::added("reports/validation/fraud-v2.html", "<html>ok</html>"),
        FileChange::added("reports/risk/fraud-v2.md", "# Risk\nLow.\n"),
        FileChange::modified("eval/metrics.json", r#"{"auc": 0.93}"#),
    ]);
    t.open_pr_with(files);
    t.deliver("pull_request", &t.pr_payload("opened", HEAD1))
        .await;
    t.review("dana", "approved", HEAD1).await;

    t.fake.advance(TimeDelta::minutes(5));
    t.fake.push(
        REPO,
        7,
        CommitSpec::new(
            HEAD2,
            "alice",
            vec![FileChange::modified("src/features/f1.py", "x = 2\n")],
        ),
    );
    t.fake.clear_requests();
    t.deliver("pull_request", &t.pr_payload("synchronize", HEAD2))
        .await;
    let requests: Vec<String> = t
        .fake
        .requests()
        .iter()
        .filter(|r| r.status != 304)
        .map(|r| format!("{} {} {}", r.method, r.path, r.status))
        .collect();
    println!(
        "synchronize on a 50-file PR: {} requests (304s not counted):\n{}",
        requests.len(),
        requests.join("\n")
    );
    assert!(
        requests.len() <= 12,
        "{} requests:\n{}",
        requests.len(),
        requests.join("\n")
    );
    t.fake.assert_requests_match_openapi();
}

#[tokio::test]
async fn an_ungoverned_change_gets_a_success_check_and_no_comment() {
    let t = Tester::new(true).await;
    t.fake.open_pr(
        REPO,
        PrSpec {
            number: 7,
            base_sha: BASE.to_owned(),
            commits: vec![CommitSpec::new(
                HEAD1,
                "alice",
                vec![FileChange::added("src/app.py", "print(1)\n")],
            )],
            ..PrSpec::default()
        },
    );
    t.deliver("pull_request", &t.pr_payload("opened", HEAD1))
        .await;
    let run = t.check(HEAD1);
    assert_eq!(run.conclusion.as_deref(), Some("success"));
    assert_eq!(
        run.title.as_deref(),
        Some("Not governed: no governed path changed")
    );
    assert!(t.fake.comments(REPO, 7).is_empty());
    t.fake.assert_requests_match_openapi();
}

#[tokio::test]
async fn an_invalid_policy_fails_the_check_naming_file_line_and_fix() {
    let t = Tester::new(true).await;
    t.fake.set_file(
        REPO,
        BASE,
        ".governance.toml",
        "version = 1\n[tiers.low]\nsign_offs = [\"aprover\"]\n",
    );
    t.open_fraud_pr();
    t.deliver("pull_request", &t.pr_payload("opened", HEAD1))
        .await;
    let run = t.check(HEAD1);
    assert_eq!(run.conclusion.as_deref(), Some("failure"));
    let summary = run.summary.unwrap();
    assert!(
        summary.contains(".governance.toml:3:14: role `aprover` is not defined"),
        "{summary}"
    );
    assert!(summary.contains("hint:"), "{summary}");
}

#[tokio::test]
async fn when_github_fails_the_check_is_never_success() {
    let t = Tester::new(true).await;
    t.open_fraud_pr();
    for reviewer in ["dana", "rita", "omar", "lena"] {
        t.fake
            .add_review(REPO, 7, reviewer, "APPROVED", HEAD1, t.fake.now());
    }
    t.fake.fail_next(
        "GET",
        "/repos/acme/fraud-model/pulls/7/reviews",
        500,
        1,
        None,
    );
    t.deliver("pull_request", &t.pr_payload("opened", HEAD1))
        .await;
    // The failed evaluation left a failure, never a pass, and the job was tried again on its
    // own once GitHub answered.
    let run = t.check(HEAD1);
    let conclusions: Vec<&str> = run
        .history
        .iter()
        .filter_map(|(_, conclusion)| conclusion.as_deref())
        .collect();
    assert_eq!(conclusions, ["failure", "success"], "{run:#?}");
    let jobs = tollgate::queue::JobQueue::new(t.audit.ledger.pool().clone())
        .list(true, 10)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!((jobs[0].state.as_str(), jobs[0].attempts), ("done", 1));
    assert!(
        jobs[0].last_error.as_deref().unwrap().contains("500"),
        "{jobs:?}"
    );
}

#[tokio::test]
async fn more_files_than_github_lists_fails_closed() {
    let t = Tester::new(true).await;
    let files: Vec<FileChange> = (0..3_001)
        .map(|i| FileChange::added(&format!("models/m{i}/model.onnx"), "w"))
        .collect();
    t.open_pr_with(files);
    t.deliver("pull_request", &t.pr_payload("opened", HEAD1))
        .await;
    let run = t.check(HEAD1);
    assert_eq!(run.conclusion.as_deref(), Some("failure"));
    let summary = run.summary.unwrap();
    assert!(summary.contains("lists only 3000"), "{summary}");
}

#[tokio::test]
async fn annotations_are_sent_in_batches_of_fifty() {
    let t = Tester::new(true).await;
    let mut files: Vec<FileChange> = (0..120)
        .map(|i| FileChange::added(&format!("models/m{i}/model.onnx"), "w"))
        .collect();
    files.push(FileChange::modified("models/fraud/MODEL_CARD.md", CARD));
    t.open_pr_with(files);
    t.deliver("pull_request", &t.pr_payload("opened", HEAD1))
        .await;
    let run = t.check(HEAD1);
    assert_eq!(run.annotations_count, 120, "{run:#?}");
    for request in t
        .fake
        .requests()
        .iter()
        .filter(|r| r.path.contains("/check-runs"))
    {
        if let Some(annotations) = request
            .body
            .as_ref()
            .and_then(|b| b.pointer("/output/annotations"))
            .and_then(Value::as_array)
        {
            assert!(
                annotations.len() <= 50,
                "{} annotations in one request",
                annotations.len()
            );
        }
    }
    t.fake.assert_requests_match_openapi();
}

#[tokio::test]
async fn a_repository_can_override_the_comment_template_on_its_base_branch() {
    let t = Tester::new(true).await;
    t.fake.set_file(
        REPO,
        BASE,
        ".github/tollgate/comment.md.j2",
        "Custom: {{ headline }}",
    );
    t.open_fraud_pr();
    t.deliver("pull_request", &t.pr_payload("opened", HEAD1))
        .await;
    let sticky = t.sticky_comments();
    let expected = format!(
        "{COMMENT_MARKER}\nCustom: High risk — 0 of 4 sign-offs\n\n<!-- tollgate:records\n"
    );
    assert!(sticky[0].body.starts_with(&expected), "{}", sticky[0].body);
}

#[tokio::test]
async fn an_org_wide_default_policy_governs_repositories_without_one() {
    let default = "version = 1\n[roles]\napprover = [\"lena\"]\n[[classify]]\nkind = \"model_artifact\"\npaths = [\"**/*.onnx\"]\n[tiers.low]\nsign_offs = [\"approver\"]\n";
    let t = Tester::with_default_policy(true, Some(default)).await;
    t.fake.open_pr(
        "acme/other",
        PrSpec {
            number: 7,
            base_sha: BASE.to_owned(),
            commits: vec![CommitSpec::new(
                HEAD1,
                "alice",
                vec![FileChange::added("m.onnx", "w")],
            )],
            ..PrSpec::default()
        },
    );
    let mut payload = t.pr_payload("opened", HEAD1);
    payload["repository"]["full_name"] = "acme/other".into();
    t.deliver("pull_request", &payload).await;
    let runs = t.fake.check_runs("acme/other");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].conclusion.as_deref(), Some("action_required"));
}

#[tokio::test]
async fn a_rerequested_check_suite_without_pull_requests_finds_them_by_commit() {
    let t = Tester::new(true).await;
    t.open_fraud_pr();
    t.deliver("check_suite", &rerequested_suite(&t)).await;
    assert_eq!(
        t.check(HEAD1).conclusion.as_deref(),
        Some("action_required")
    );
    t.fake.assert_requests_match_openapi();
}

/// A `check_suite` re-request that names no pull request (as GitHub sends for forks).
fn rerequested_suite(t: &Tester) -> Value {
    json!({
        "action": "rerequested",
        "check_suite": {"head_sha": HEAD1, "pull_requests": []},
        "repository": {"id": 99, "full_name": REPO},
        "installation": t.installation(),
    })
}

#[tokio::test]
async fn looking_up_the_pull_requests_of_a_rerequested_suite_is_a_durable_job() {
    let t = Tester::new(true).await;
    t.open_fraud_pr();
    let lookup = format!("/repos/{REPO}/commits/{HEAD1}/pulls");
    // GitHub fails the lookup once: before, the re-request was dropped with a log line.
    t.fake.fail_next("GET", &lookup, 500, 1, None);
    t.send_as("check_suite", &rerequested_suite(&t), "suite-1")
        .await;
    assert!(
        t.fake.requests().iter().all(|r| r.path != lookup),
        "intake answers before asking GitHub anything"
    );
    tokio::time::timeout(std::time::Duration::from_secs(20), t.worker.settle())
        .await
        .expect("the worker settles");
    let lookups = t
        .fake
        .requests()
        .iter()
        .filter(|r| r.path == lookup)
        .count();
    assert_eq!(lookups, 2, "tried again after the 500");
    assert_eq!(
        t.check(HEAD1).conclusion.as_deref(),
        Some("action_required")
    );
    let jobs = tollgate::queue::JobQueue::new(t.audit.ledger.pool().clone())
        .list(true, 10)
        .await
        .unwrap();
    let keys: Vec<(&str, &str, i64)> = jobs
        .iter()
        .map(|j| (j.change_key.as_str(), j.state.as_str(), j.attempts))
        .collect();
    assert!(
        keys.contains(&(&format!("github:{REPO}@commit:{HEAD1}")[..], "done", 1)),
        "{keys:?}"
    );
    assert!(
        keys.contains(&(&format!("github:{REPO}#7")[..], "done", 0)),
        "{keys:?}"
    );
    // Redelivered: acknowledged, neither looked up nor evaluated again.
    t.deliver_as("check_suite", &rerequested_suite(&t), "suite-1")
        .await;
    assert_eq!(
        t.fake
            .requests()
            .iter()
            .filter(|r| r.path == lookup)
            .count(),
        2
    );
}

#[tokio::test]
async fn a_redelivered_delivery_is_acknowledged_and_evaluated_once() {
    let t = Tester::new(true).await;
    t.open_fraud_pr();
    let payload = t.pr_payload("opened", HEAD1);
    for _ in 0..3 {
        t.deliver_as("pull_request", &payload, "same-delivery-id")
            .await;
    }
    let pr_reads = t
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/repos/acme/fraud-model/pulls/7")
        .count();
    assert_eq!(
        pr_reads, 1,
        "one evaluation for one delivery, however often it arrives"
    );
    assert_eq!(t.sticky_comments().len(), 1);
}

// --- The durable queue under faults ------------------------------------------------------------

/// The fraud PR's files and the four reviewers who hold its roles.
const SIGN_OFFS: [&str; 4] = ["dana", "rita", "omar", "lena"];

/// The head sha of PR `number` in the tests that open several.
fn head_of(number: u64) -> String {
    format!("head{}", number.to_string().repeat(36))
}

impl Tester {
    /// Opens the fraud PR as `number` (its own head branch and head), approved on its head by
    /// `approvers`.
    fn open_fraud_pr_numbered(&self, number: u64, approvers: &[&str]) {
        let head = head_of(number);
        self.fake.open_pr(
            REPO,
            PrSpec {
                number,
                author: "alice".to_owned(),
                title: "Fraud model v2".to_owned(),
                body: BODY.to_owned(),
                base_sha: BASE.to_owned(),
                head_ref: format!("feature-{number}"),
                commits: vec![CommitSpec::new(
                    &head,
                    "alice",
                    vec![
                        FileChange::added("models/fraud/v2/model.onnx", "weights"),
                        FileChange::modified("models/fraud/MODEL_CARD.md", CARD),
                        FileChange::added("reports/validation/fraud-v2.html", "<html>ok</html>"),
                        FileChange::added("reports/risk/fraud-v2.md", "# Risk\nLow.\n"),
                        FileChange::modified("eval/metrics.json", r#"{"auc": 0.93}"#),
                    ],
                )],
                ..PrSpec::default()
            },
        );
        for reviewer in approvers {
            self.fake
                .add_review(REPO, number, reviewer, "APPROVED", &head, self.fake.now());
        }
    }

    fn pr_payload_for(&self, number: u64, action: &str) -> Value {
        let mut payload = self.pr_payload(action, &head_of(number));
        payload["number"] = number.into();
        payload["pull_request"]["number"] = number.into();
        payload["pull_request"]["head"]["ref"] = format!("feature-{number}").into();
        payload
    }

    /// Sends a delivery with a fresh id without waiting for the worker.
    async fn send(&self, event: &str, payload: &Value) {
        let n = self
            .delivery
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.send_as(event, payload, &format!("d-{n}")).await;
    }

    async fn settle(&self) {
        tokio::time::timeout(std::time::Duration::from_secs(30), self.worker.settle())
            .await
            .expect("the worker settles");
    }

    /// Waits for the worker like [`Tester::settle`], noting meanwhile when each request to
    /// the fake was first seen (every 5 ms), so gaps between requests can be measured.
    async fn settle_noting_request_times(&self) -> Vec<std::time::Instant> {
        let mut seen = Vec::new();
        let settle = tokio::time::timeout(std::time::Duration::from_secs(30), self.worker.settle());
        tokio::pin!(settle);
        loop {
            let count = self.fake.requests().len();
            while seen.len() < count {
                seen.push(std::time::Instant::now());
            }
            tokio::select! {
                settled = &mut settle => {
                    settled.expect("the worker settles");
                    break;
                }
                () = tokio::time::sleep(std::time::Duration::from_millis(5)) => {}
            }
        }
        let count = self.fake.requests().len();
        while seen.len() < count {
            seen.push(std::time::Instant::now());
        }
        seen
    }

    fn queue(&self) -> tollgate::queue::JobQueue {
        tollgate::queue::JobQueue::new(self.audit.ledger.pool().clone())
    }

    fn sticky_comments_on(&self, number: u64) -> Vec<common::fake_github::CommentView> {
        self.fake
            .comments(REPO, number)
            .into_iter()
            .filter(|c| c.body.contains(COMMENT_MARKER))
            .collect()
    }

    /// `tollgate jobs retry` on PR #7's parked job (signed off, see
    /// [`Tester::open_fraud_pr_signed_off`]): it runs again, ends `done`, and its check passes
    /// for the first time, with one sticky comment.
    async fn retry_the_parked_job_to_its_first_pass(&self) {
        let queue = self.queue();
        let now = chrono::Utc::now().timestamp_millis();
        assert_eq!(queue.retry_now(None, now).await.unwrap(), 1);
        self.settle().await;
        let jobs = queue.list(true, 10).await.unwrap();
        assert_eq!(jobs[0].state, "done", "{jobs:#?}");
        let run = self.check(HEAD1);
        assert_eq!(
            (run.conclusion.as_deref(), run.title.as_deref()),
            (Some("success"), Some("High risk — passed")),
            "{run:#?}"
        );
        let conclusions: Vec<&str> = run
            .history
            .iter()
            .filter_map(|(_, c)| c.as_deref())
            .collect();
        assert!(
            !conclusions[..conclusions.len() - 1].contains(&"success"),
            "{conclusions:?}"
        );
        assert_eq!(self.sticky_comments().len(), 1);
    }

    /// A value of the Prometheus text rendering (`name{labels}` as written there).
    fn metric(&self, series: &str) -> Option<f64> {
        metric_value(&self.app.metrics.render(), series)
    }
}

/// The value of `series` (`name` or `name{labels}`, exactly as rendered) in a Prometheus text
/// rendering.
fn metric_value(rendered: &str, series: &str) -> Option<f64> {
    rendered.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

fn never_success(run: &CheckRunView) -> bool {
    run.history
        .iter()
        .all(|(_, conclusion)| conclusion.as_deref() != Some("success"))
}

/// Three PRs (#7 without sign-offs, #8 with one of four, #9 with all four) evaluated together
/// while GitHub answers 500 to writes of check runs and comments and 403 with `Retry-After` to
/// reads: every PR ends with its right result and one sticky comment, the PRs lacking sign-offs
/// never showed a pass on the way, the failures were retried, and a retry after a
/// `Retry-After` came no sooner than it asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_500_then_403_retry_after_are_retried_and_never_pass_without_sign_offs() {
    let t = Tester::new(true).await;
    t.open_fraud_pr_numbered(7, &[]);
    t.open_fraud_pr_numbered(8, &SIGN_OFFS[..1]);
    t.open_fraud_pr_numbered(9, &SIGN_OFFS);
    let fake = &t.fake;
    // Writes: the first two check-run creations, the first check-run update and #7's first
    // comment fail with 500 (GitHub changes nothing). Whichever PR meets them is retried (#9,
    // evaluated first, usually meets the check-run ones).
    fake.fail_next("POST", "/repos/acme/fraud-model/check-runs", 500, 2, None);
    fake.fail_next("PATCH", "/repos/acme/fraud-model/check-runs/", 500, 1, None);
    fake.fail_next(
        "POST",
        "/repos/acme/fraud-model/issues/7/comments",
        500,
        1,
        None,
    );
    // Reads: a secondary rate limit on #8's very first request (wait 2 s, longer than the
    // first backoff of at most 1 s) and on #7's reviews (wait 1 s).
    fake.fail_next("GET", "/repos/acme/fraud-model/pulls/8", 403, 1, Some(2));
    fake.fail_next(
        "GET",
        "/repos/acme/fraud-model/pulls/7/reviews",
        403,
        1,
        Some(1),
    );
    let started = std::time::Instant::now();
    for number in [7, 8, 9] {
        t.send("pull_request", &t.pr_payload_for(number, "opened"))
            .await;
    }
    let seen = t.settle_noting_request_times().await;
    println!("settled after {:?}", started.elapsed());

    let requests = t.fake.requests();
    let served = |status: u16| requests.iter().filter(|r| r.status == status).count();
    assert_eq!(
        (served(500), served(403)),
        (4, 2),
        "every injected fault was met"
    );

    // Every PR got its final result and exactly one sticky comment.
    for (number, conclusion, title) in [
        (7, "action_required", "High risk — 0 of 4 sign-offs"),
        (8, "action_required", "High risk — 1 of 4 sign-offs"),
        (9, "success", "High risk — passed"),
    ] {
        let run = t.check(&head_of(number));
        assert_eq!(
            (run.conclusion.as_deref(), run.title.as_deref()),
            (Some(conclusion), Some(title)),
            "#{number}: {run:#?}"
        );
        assert_eq!(t.sticky_comments_on(number).len(), 1, "#{number}");
    }
    // Those lacking sign-offs never passed, not even for a moment.
    for number in [7, 8] {
        let run = t.check(&head_of(number));
        assert!(never_success(&run), "#{number}: {:?}", run.history);
    }

    // The failures were retried by the queue, not dropped.
    let jobs = t.queue().list(true, 10).await.unwrap();
    assert_eq!(jobs.len(), 3, "{jobs:#?}");
    for job in &jobs {
        assert_eq!(job.state, "done", "{jobs:#?}");
        // #7 met a 403 and its comment's 500, #8 a 403 (and #9 whatever write failed first).
        if !job.change_key.ends_with("#9") {
            assert!(job.attempts > 0, "{jobs:#?}");
        }
    }
    let retried = t
        .metric(r#"tollgate_queue_evaluations_total{result="retried"}"#)
        .unwrap_or(0.0);
    assert!(retried >= 3.0, "{retried} retries");
    assert_eq!(
        t.metric(r#"tollgate_queue_evaluations_total{result="completed"}"#),
        Some(3.0)
    );

    // A retry after `Retry-After` waited at least that long: the gap between the 403 and the
    // change's next read of its pull request.
    let gap_after = |refused_path: &str, next_path: &str| {
        let refused = requests
            .iter()
            .position(|r| r.status == 403 && r.path == refused_path)
            .unwrap_or_else(|| panic!("no 403 for {refused_path}"));
        let next = (refused + 1..requests.len())
            .find(|&i| requests[i].method == "GET" && requests[i].path == next_path)
            .unwrap_or_else(|| panic!("{next_path} never read again"));
        seen[next] - seen[refused]
    };
    let waited_8 = gap_after(
        "/repos/acme/fraud-model/pulls/8",
        "/repos/acme/fraud-model/pulls/8",
    );
    assert!(
        waited_8 >= std::time::Duration::from_millis(1_950),
        "#8 retried {waited_8:?} after a 403 asking to wait 2 s"
    );
    let waited_7 = gap_after(
        "/repos/acme/fraud-model/pulls/7/reviews",
        "/repos/acme/fraud-model/pulls/7",
    );
    assert!(
        waited_7 >= std::time::Duration::from_millis(950),
        "#7 retried {waited_7:?} after a 403 asking to wait 1 s"
    );
    t.fake.assert_requests_match_openapi();
}

/// A change whose facts cannot be read keeps failing; past `give_up_after` its job is parked as
/// `failed`, the check says tollgate gave up (a failure, never a pass), nothing retries it on
/// its own, and once GitHub answers again `tollgate jobs retry` (`retry_now`) evaluates it.
#[tokio::test]
async fn a_change_that_keeps_failing_is_given_up_and_kept_for_jobs_retry() {
    let t = Tester::giving_up_after_a_second().await;
    t.open_fraud_pr_signed_off();
    const FAULTS: usize = 40;
    const REVIEWS: &str = "/repos/acme/fraud-model/pulls/7/reviews";
    t.fake.fail_next("GET", REVIEWS, 502, FAULTS, None);
    // Settles once the job is parked (failed jobs are not waited for).
    t.deliver("pull_request", &t.pr_payload("opened", HEAD1))
        .await;

    let queue = t.queue();
    let jobs = queue.list(true, 10).await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    assert_eq!(jobs[0].state, "failed", "{jobs:#?}");
    assert!(jobs[0].attempts >= 2, "{jobs:#?}");
    assert!(
        jobs[0].last_error.as_deref().unwrap_or("").contains("502"),
        "{jobs:#?}"
    );
    assert_eq!(queue.depth().await.unwrap(), 0);
    let run = t.check(HEAD1);
    assert_eq!(
        (run.conclusion.as_deref(), run.title.as_deref()),
        (
            Some("failure"),
            Some("tollgate gave up evaluating this change")
        ),
        "{run:#?}"
    );
    assert!(never_success(&run), "{:?}", run.history);
    assert_eq!(
        t.metric(r#"tollgate_queue_evaluations_total{result="gave_up"}"#),
        Some(1.0)
    );

    // Parked means parked: a few claim polls later, nobody has tried again.
    let reads = |t: &Tester| {
        t.fake
            .requests()
            .iter()
            .filter(|r| r.path == REVIEWS)
            .count()
    };
    let before = reads(&t);
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(reads(&t), before, "a failed job is not retried on its own");
    assert_eq!(queue.list(true, 10).await.unwrap()[0].state, "failed");

    // GitHub recovers (the rest of the injected faults are used up here).
    let http = reqwest::Client::new();
    let mut drained = 0;
    loop {
        let status = http
            .get(format!("{}{REVIEWS}", t.fake.url()))
            .header("user-agent", "tollgate-test")
            .send()
            .await
            .unwrap()
            .status();
        if status != 502 {
            break;
        }
        drained += 1;
        assert!(drained <= FAULTS, "the fault never cleared");
    }

    // The operator's `tollgate jobs retry`: the job runs again, now to its right result.
    t.retry_the_parked_job_to_its_first_pass().await;
}

/// The audit ledger refuses every write (a real store failure: a trigger that aborts each
/// insert, as a full disk or a read-only file would): a change with all its sign-offs gets no
/// pass and no comment without its signed record. The job is retried, then parked with an
/// error that names the ledger (not GitHub), and once the store takes writes again `tollgate
/// jobs retry` records the decision and passes the change.
#[tokio::test]
async fn when_the_audit_ledger_fails_nothing_passes_until_the_decision_is_recorded() {
    let t = Tester::giving_up_after_a_second().await;
    t.open_fraud_pr_signed_off();
    let pool = t.audit.ledger.pool();
    common::ledger_refuses_writes(pool).await;
    // Settles once the job is parked (failed jobs are not waited for).
    t.deliver("pull_request", &t.pr_payload("opened", HEAD1))
        .await;

    let queue = t.queue();
    common::assert_parked_for_the_ledger(&queue, "GitHub").await;
    let run = t.check(HEAD1);
    assert_eq!(run.conclusion.as_deref(), Some("failure"), "{run:#?}");
    assert!(never_success(&run), "{:?}", run.history);
    assert!(
        t.sticky_comments().is_empty(),
        "no comment without its record"
    );
    assert!(
        common::record_summaries(&t.audit.ledger, REPO, 7)
            .await
            .is_empty()
    );

    // The store takes writes again; the operator retries the parked job.
    common::ledger_takes_writes(pool).await;
    t.retry_the_parked_job_to_its_first_pass().await;
    assert!(
        !common::record_summaries(&t.audit.ledger, REPO, 7)
            .await
            .is_empty(),
        "the pass has its signed records"
    );
}

/// A 403 with `x-ratelimit-remaining: 0` and no `Retry-After` means the primary budget is spent
/// until `x-ratelimit-reset` (60 s ahead here): the job waits for it instead of retrying after
/// its one-second backoff.
#[tokio::test]
async fn a_spent_rate_limit_is_waited_out_until_its_reset() {
    let t = Tester::new(true).await;
    t.open_fraud_pr();
    const PULL: &str = "/repos/acme/fraud-model/pulls/7";
    t.fake.fail_next("GET", PULL, 403, 1, None);
    t.send("pull_request", &t.pr_payload("opened", HEAD1)).await;

    let queue = t.queue();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let job = loop {
        let jobs = queue.list(true, 10).await.unwrap();
        if let Some(job) = jobs.iter().find(|j| j.state == "queued" && j.attempts == 1) {
            break job.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the failure was never settled: {jobs:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let now = chrono::Utc::now().timestamp_millis();
    assert!(
        job.available_ms >= now + 50_000,
        "retry at {} ms from now, before the rate limit resets",
        job.available_ms - now
    );
    assert!(
        job.last_error.as_deref().unwrap_or("").contains("403"),
        "{job:?}"
    );
    // Longer than the first backoff (at most 1 s): still not tried again.
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let reads = || {
        t.fake
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path == PULL)
            .count()
    };
    assert_eq!(reads(), 1, "retried before the reset");
    assert_eq!(queue.list(true, 10).await.unwrap()[0].state, "queued");

    // `tollgate jobs retry` does not wait for the reset.
    let now = chrono::Utc::now().timestamp_millis();
    assert_eq!(queue.retry_now(Some(job.id), now).await.unwrap(), 1);
    t.settle().await;
    assert_eq!(queue.list(true, 10).await.unwrap()[0].state, "done");
    assert_eq!(
        t.check(HEAD1).conclusion.as_deref(),
        Some("action_required")
    );
}

/// An intake-only process (`workers: 0`) queues deliveries without evaluating them, and its
/// `/metrics` shows them: jobs by state and the age of the oldest.
#[tokio::test]
async fn metrics_show_the_queue_of_an_intake_only_process() {
    let t = Tester::with_jobs(JobSettings {
        workers: 0,
        ..JobSettings::default()
    })
    .await;
    for number in [7, 8, 9] {
        t.send("pull_request", &t.pr_payload_for(number, "opened"))
            .await;
    }
    // A redelivery is acknowledged, not queued twice.
    t.send_as("pull_request", &t.pr_payload_for(9, "opened"), "d-2")
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;

    let request = axum::http::Request::get("/metrics")
        .body(axum::body::Body::empty())
        .unwrap();
    let (status, body) = t.app.send(request).await;
    assert_eq!(status, StatusCode::OK);
    for (series, value) in [
        (r#"tollgate_queue_jobs{state="queued"}"#, 3.0),
        (r#"tollgate_queue_jobs{state="running"}"#, 0.0),
        (r#"tollgate_queue_jobs{state="failed"}"#, 0.0),
        ("tollgate_queue_commit_batch_deliveries_sum", 4.0),
    ] {
        assert_eq!(
            metric_value(&body, series),
            Some(value),
            "{series}:\n{body}"
        );
    }
    let age = metric_value(&body, "tollgate_queue_oldest_job_age_seconds").unwrap();
    assert!((0.05..60.0).contains(&age), "oldest job age {age}:\n{body}");
    assert!(
        t.fake.requests().is_empty(),
        "an intake-only process does not evaluate"
    );
}
