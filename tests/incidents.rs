//! Incidents on GitHub, end to end in one process (issue 8): the playbook's worked example 3 —
//! an incident, `/tollgate rollback` by on-call, the revert passing on its bypass, the
//! post-incident review opened at the merge, reminded once when overdue and recorded when
//! closed — plus refusals, bypass expiry, the overdue-review switch, and the scheduler across a
//! restart and across two replicas. Signed webhooks go through the real intake; the worker talks
//! to the fake GitHub, which checks every request against GitHub's OpenAPI description. Time is
//! the fake's clock, which the worker and the scheduler read too, so tests move it by hours.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use chrono::{DateTime, TimeDelta, Utc};
use secrecy::SecretString;
use serde_json::{Value, json};
use tollgate::config::JobSettings;
use tollgate::forge::github::api::{Auth, GithubApi};
use tollgate::forge::github::worker::{GithubSink, GithubWorker, WorkerOptions};
use tollgate::incident::store::{Incidents, ReviewState};
use tollgate::intake::{IntakeSecrets, IntakeState};
use tollgate::ledger::record::RecordKind;
use tollgate::metrics::Metrics;
use tollgate::schedule::Schedule;
use tollgate::scheduler::{DeadlineHandler, Scheduler};

use common::fake_github::{CommitSpec, FakeGitHub, FileChange, PrSpec};
use common::serve::PgDatabase;
use common::{GITHUB_SECRET, TestApp};

const REPO: &str = "acme/fraud-model";
const BASE: &str = "base0000000000000000000000000000000000000";
const CHECK: &str = "tollgate";
const BOT: &str = "tollgate-test[bot]";
const BODY: &str =
    "Fraud model v2.\n\n## Rollback plan\nRevert this PR; v1 stays in the registry.\n";

/// The worked example 1 policy (its `[emergency]` is example 3's), with the overdue switch on
/// when asked.
fn policy(overdue_blocks: bool) -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/examples/fraud-model.governance.toml"
    ))
    .unwrap();
    if overdue_blocks {
        text.replace(
            "review_within_hours = 48",
            "review_within_hours = 48\noverdue_review_blocks_bypass = true",
        )
    } else {
        text
    }
}

/// The worker's and the scheduler's clock: the fake GitHub's.
struct FakeClock(Arc<FakeGitHub>);

impl tollgate::clock::Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        self.0.now()
    }
}

/// One `tollgate serve` process: intake, worker, scheduler.
struct Replica {
    app: TestApp,
    worker: Arc<GithubWorker>,
    scheduler: Scheduler,
    audit: Arc<tollgate::ledger::Audit>,
}

struct World {
    fake: Arc<FakeGitHub>,
    url: String,
    replicas: Vec<Replica>,
    delivery: std::sync::atomic::AtomicUsize,
    _db: Option<tempfile::TempDir>,
}

impl Drop for World {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.fake.assert_requests_match_openapi();
        }
    }
}

impl World {
    /// One replica on a fresh SQLite file.
    async fn sqlite(overdue_blocks: bool) -> World {
        let db = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", db.path().join("ledger.db").display());
        let mut world = World::on(&url, overdue_blocks).await;
        world._db = Some(db);
        world.start_replica().await;
        world
    }

    /// No replica yet, on the store at `url`.
    async fn on(url: &str, overdue_blocks: bool) -> World {
        let fake = FakeGitHub::start().await;
        fake.set_app("tollgate-test", 4242);
        fake.set_file(REPO, BASE, ".governance.toml", &policy(overdue_blocks));
        fake.set_file(
            REPO,
            BASE,
            "data/transactions/DATASHEET.md",
            "# Transactions\n",
        );
        fake.set_file(REPO, BASE, "eval/metrics.json", r#"{"auc": 0.91}"#);
        fake.set_file(REPO, BASE, "models/fraud/v1/model.onnx", "weights v1");
        for (team, members) in [
            ("data-platform", &["dana"][..]),
            ("model-risk", &["rita"]),
            ("ml-ops", &["omar"]),
            ("ml-leads", &["lena"]),
            ("ml-oncall", &["olga", "oscar"]),
        ] {
            fake.set_team("acme", team, members);
        }
        for user in ["alice", "dana", "rita", "omar", "lena", "olga", "oscar"] {
            fake.set_permission(REPO, user, "write");
        }
        World {
            fake: Arc::new(fake),
            url: url.to_owned(),
            replicas: Vec::new(),
            delivery: 0.into(),
            _db: None,
        }
    }

    /// Starts one more replica on the shared store (or restarts, after `stop_replica`).
    async fn start_replica(&mut self) {
        let pem = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/github-app-test-key.pem"
        ))
        .unwrap();
        let auth = Auth::App {
            app_id: 4242,
            private_key_pem: SecretString::from(pem),
        };
        let api = GithubApi::new(&self.fake.url().parse().unwrap(), auth).unwrap();
        let audit = Arc::new(tollgate::ledger::Audit {
            ledger: tollgate::ledger::store::Ledger::open(&self.url)
                .await
                .unwrap(),
            key: ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]),
        });
        let metrics = Metrics::new();
        let clock: Arc<dyn tollgate::clock::Clock> = Arc::new(FakeClock(self.fake.clone()));
        let worker = GithubWorker::start(
            api,
            WorkerOptions {
                audit: Some(audit.clone()),
                metrics: metrics.clone(),
                jobs: JobSettings::default(),
                clock: clock.clone(),
                ..WorkerOptions::new(
                    CHECK,
                    tollgate::queue::JobQueue::new(audit.ledger.pool().clone()),
                )
            },
        );
        let scheduler = Scheduler::new(
            Schedule::new(audit.ledger.pool().clone()),
            clock,
            vec![(
                "github:".to_owned(),
                worker.clone() as Arc<dyn DeadlineHandler>,
            )],
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
        self.replicas.push(Replica {
            app: TestApp {
                router: tollgate::server::router(state, metrics.clone()),
                sink: Arc::new(tollgate::sink::MemorySink::default()),
                metrics,
            },
            worker,
            scheduler,
            audit,
        });
    }

    /// Stops the newest replica, as a process exit would (its evaluations are done).
    async fn stop_replica(&mut self) {
        let replica = self.replicas.pop().unwrap();
        assert!(replica.worker.drain(Duration::from_secs(5)).await);
    }

    fn first(&self) -> &Replica {
        &self.replicas[0]
    }

    fn incidents(&self) -> Incidents {
        Incidents::new(self.first().audit.ledger.pool().clone())
    }

    /// Moves time (GitHub's, and so tollgate's) forward.
    fn advance(&self, by: TimeDelta) {
        self.fake.advance(by);
    }

    /// Opens PR `number` by `author` with one commit changing `files`.
    fn open_pr(&self, number: u64, author: &str, title: &str, files: Vec<FileChange>) -> String {
        let head = format!("{number:0>4}{}", "h".repeat(36));
        self.fake.open_pr(
            REPO,
            PrSpec {
                number,
                author: author.to_owned(),
                title: title.to_owned(),
                body: BODY.to_owned(),
                base_sha: BASE.to_owned(),
                head_ref: format!("feature-{number}"),
                commits: vec![CommitSpec::new(&head, author, files)],
                ..PrSpec::default()
            },
        );
        head
    }

    fn installation(&self) -> Value {
        json!({ "id": self.fake.installation_id() })
    }

    fn repository(&self) -> Value {
        json!({"id": 99, "full_name": REPO})
    }

    fn pr_payload(&self, number: u64, action: &str) -> Value {
        let pull = self
            .fake
            .pulls(REPO)
            .into_iter()
            .find(|p| p.number == number)
            .unwrap();
        json!({
            "action": action,
            "number": number,
            "pull_request": {
                "number": number, "user": {"login": pull.author, "id": 1},
                "head": {"ref": pull.head_ref, "sha": pull.head_sha},
                "base": {"ref": pull.base_ref, "sha": pull.base_sha},
                "labels": [], "title": pull.title, "body": pull.body,
                "merged": pull.merged,
            },
            "repository": self.repository(),
            "installation": self.installation(),
        })
    }

    /// `who` writes `text` on PR or issue `number`; returns the delivery's payload.
    fn comment(&self, number: u64, who: &str, text: &str) -> Value {
        self.fake.advance(TimeDelta::minutes(1));
        let id = self.fake.add_comment(REPO, number, who, text);
        json!({
            "action": "created",
            "issue": {"number": number, "pull_request": {"url": format!("https://api.github.com/repos/{REPO}/pulls/{number}")}},
            "comment": {"id": id, "user": {"login": who, "id": 7}, "body": text},
            "repository": self.repository(),
            "installation": self.installation(),
        })
    }

    /// Sends a signed delivery through replica `at`'s intake without waiting for the worker.
    async fn send(&self, at: usize, event: &str, payload: &Value) {
        let n = self
            .delivery
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let request = common::github_request(
            event,
            &format!("d-{n}"),
            serde_json::to_vec(payload).unwrap(),
            GITHUB_SECRET,
        );
        let (status, body) = self.replicas[at].app.send(request).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }

    async fn settle(&self) {
        for replica in &self.replicas {
            tokio::time::timeout(Duration::from_secs(20), replica.worker.settle())
                .await
                .expect("the worker settles");
        }
    }

    /// Sends a delivery and waits until it is acted on.
    async fn deliver(&self, event: &str, payload: &Value) {
        self.send(0, event, payload).await;
        self.settle().await;
    }

    /// Runs every replica's scheduler once, then lets the work it queued finish.
    async fn tick(&self) -> usize {
        let mut done = 0;
        for replica in &self.replicas {
            done += replica.scheduler.tick().await.unwrap();
        }
        self.settle().await;
        done
    }

    fn conclusion(&self, sha: &str) -> Option<String> {
        let runs: Vec<_> = self
            .fake
            .check_runs(REPO)
            .into_iter()
            .filter(|r| r.head_sha == sha && r.name == CHECK)
            .collect();
        assert!(runs.len() <= 1, "one check run per head: {runs:#?}");
        runs.into_iter().next().and_then(|r| r.conclusion)
    }

    /// tollgate's comments on `number` other than the sticky one.
    fn replies(&self, number: u64) -> Vec<String> {
        self.fake
            .comments(REPO, number)
            .into_iter()
            .filter(|c| c.author == BOT && !c.body.contains(tollgate::render::COMMENT_MARKER))
            .map(|c| c.body)
            .collect()
    }

    async fn record_kinds(&self, number: u64) -> Vec<(RecordKind, Option<String>, String)> {
        self.first()
            .audit
            .ledger
            .change_records(REPO, number)
            .await
            .unwrap()
            .iter()
            .filter_map(|r| r.signed())
            .map(|s| {
                (
                    s.record.kind,
                    s.record.actor.clone(),
                    s.record.detail.clone(),
                )
            })
            .collect()
    }

    fn requests(&self, method: &str, path_part: &str) -> usize {
        self.fake
            .requests()
            .iter()
            .filter(|r| r.method == method && r.path.contains(path_part))
            .count()
    }

    /// The worked example's model change, PR #1 by alice, opened and evaluated.
    async fn open_model_change(&self, number: u64) -> String {
        let head = self.open_pr(
            number,
            "alice",
            "Fraud model v2",
            vec![
                FileChange::modified("models/fraud/v1/model.onnx", "weights v2"),
                FileChange::modified("eval/metrics.json", r#"{"auc": 0.93}"#),
            ],
        );
        self.deliver("pull_request", &self.pr_payload(number, "opened"))
            .await;
        head
    }

    /// Merges PR `number` (by `by`) and delivers the `closed` event; returns the merge time.
    async fn merge(&self, number: u64, by: &str) -> DateTime<Utc> {
        self.advance(TimeDelta::minutes(5));
        // The fake stamps the merge with its clock's current second, then ticks it.
        let merged_at = self.fake.now();
        self.fake.merge_pr(REPO, number, by);
        self.deliver("pull_request", &self.pr_payload(number, "closed"))
            .await;
        merged_at
    }

    /// PR `number` bypassed by olga and merged: its review is opened. Returns the issue number
    /// and the review's due time.
    async fn bypassed_and_merged(&self, number: u64, ticket: &str) -> (u64, DateTime<Utc>) {
        let head = self.open_model_change(number).await;
        let bypass = self.comment(
            number,
            "olga",
            &format!("/tollgate bypass {ticket} hotfix for the scoring outage"),
        );
        self.deliver("issue_comment", &bypass).await;
        assert_eq!(self.conclusion(&head).as_deref(), Some("success"));
        let merged_at = self.merge(number, "olga").await;
        let review = self
            .fake
            .issues(REPO)
            .into_iter()
            .find(|i| i.title.contains(&format!("#{number} ")))
            .expect("the review issue is opened at the merge");
        (review.number, merged_at + TimeDelta::hours(48))
    }

    fn issue_closed(&self, number: u64, by: &str) -> Value {
        self.fake.close_issue(REPO, number, by);
        json!({
            "action": "closed",
            "issue": {"number": number, "state": "closed"},
            "sender": {"login": by, "id": 11},
            "repository": self.repository(),
            "installation": self.installation(),
        })
    }

    fn reminders(&self, issue: u64) -> usize {
        self.fake
            .comments(REPO, issue)
            .iter()
            .filter(|c| c.author == BOT && c.body.contains(tollgate::incident::REMINDER_MARKER))
            .count()
    }
}

fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The playbook's worked example 3, end to end.
#[tokio::test]
async fn worked_example_3_rollback_bypass_review_reminder_and_closing() {
    let w = World::sqlite(false).await;
    // A model change reaches production the normal way (an admin merge here: its gate is not
    // what this example is about).
    w.open_model_change(1).await;
    w.merge(1, "lena").await;
    assert!(w.fake.issues(REPO).is_empty(), "no bypass, no review");

    // Incident: conversion drops 10% after deployment. On-call asks for the rollback.
    w.advance(TimeDelta::hours(2));
    let command = w.comment(
        1,
        "olga",
        "/tollgate rollback INC-4711 conversion dropped 10% after deployment",
    );
    let started = Instant::now();
    w.send(0, "issue_comment", &command).await;
    let revert = loop {
        if let Some(pull) = w.fake.pulls(REPO).into_iter().find(|p| p.number != 1) {
            break pull;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no revert PR");
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let elapsed = started.elapsed();
    eprintln!(
        "rollback command delivered → revert PR created: {:.1} ms",
        elapsed.as_secs_f64() * 1e3
    );
    w.settle().await;
    let revert = w
        .fake
        .pulls(REPO)
        .into_iter()
        .find(|p| p.number == revert.number)
        .unwrap();

    // The revert: against the same base, by tollgate, labelled as an emergency with the
    // ticket, and its tree is the base's before the merge.
    assert_eq!(revert.base_ref, "main");
    assert_eq!(revert.author, BOT);
    assert!(revert.title.contains("Revert #1"), "{}", revert.title);
    assert!(revert.title.contains("INC-4711"), "{}", revert.title);
    for label in ["emergency", "INC-4711"] {
        assert!(
            revert.labels.iter().any(|l| l == label),
            "{:?}",
            revert.labels
        );
    }
    assert_eq!(
        w.fake.tree_at(REPO, &revert.head_sha),
        w.fake.tree_at(REPO, BASE),
        "the revert restores the tree before the merge"
    );
    // The merge is the branch tip: reverted with the Git Data API.
    assert_eq!(w.requests("POST", "/git/commits"), 1);
    assert_eq!(w.requests("POST", "/git/refs"), 1);
    assert_eq!(w.requests("POST", "/graphql"), 0);
    let replies = w.replies(1);
    assert!(
        replies
            .iter()
            .any(|r| r.contains(&format!("#{}", revert.number)) && r.contains("INC-4711")),
        "{replies:#?}"
    );

    // It passes the emergency gate on the request's own bypass (no sign-offs, no evidence).
    assert_eq!(
        w.conclusion(&revert.head_sha).as_deref(),
        Some("success"),
        "the revert passes on its bypass"
    );
    let kinds = w.record_kinds(1).await;
    assert!(
        kinds.iter().any(
            |(k, who, _)| *k == RecordKind::RollbackRequested && who.as_deref() == Some("olga")
        ),
        "{kinds:#?}"
    );
    assert!(
        kinds
            .iter()
            .any(|(k, _, d)| *k == RecordKind::RollbackOpened
                && d.contains(&format!("#{}", revert.number)))
    );
    let revert_kinds = w.record_kinds(revert.number).await;
    assert!(
        revert_kinds
            .iter()
            .any(|(k, who, d)| *k == RecordKind::BypassHonoured
                && who.as_deref() == Some("olga")
                && d.contains("INC-4711")),
        "{revert_kinds:#?}"
    );

    // The same command delivered again opens nothing more.
    w.deliver("issue_comment", &command).await;
    assert_eq!(w.fake.pulls(REPO).len(), 2);

    // Merged under the bypass: the follow-up issue, due 48 hours after the merge.
    let merged_at = w.merge(revert.number, "olga").await;
    let due = merged_at + TimeDelta::hours(48);
    let stored = w.incidents().reviews(false).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].merged_ms,
        merged_at.timestamp_millis(),
        "GitHub's merge time"
    );
    assert_eq!(stored[0].due_ms, due.timestamp_millis());
    let issues = w.fake.issues(REPO);
    assert_eq!(issues.len(), 1, "{issues:#?}");
    let review = &issues[0];
    assert_eq!(
        review.title,
        format!("Post-incident review: #{} — INC-4711", revert.number)
    );
    assert!(review.labels.iter().any(|l| l == "post-incident-review"));
    assert!(
        review
            .body
            .contains(&format!("| **Due** | **{}** |", when(due))),
        "{}",
        review.body
    );
    for item in [
        "Root cause",
        "Tests updated",
        "Policy adjusted",
        "Learnings",
    ] {
        assert!(review.body.contains(&format!("- [ ] {item}")), "{item}");
    }
    // Assigned to the people whose sign-off the bypass skipped: the revert is high risk,
    // whose roles are teams here, so they are mentioned.
    assert!(review.body.contains("@acme/ml-leads"), "{}", review.body);
    let merge_kinds = w.record_kinds(revert.number).await;
    for kind in [RecordKind::MergedUnderBypass, RecordKind::ReviewOpened] {
        assert!(
            merge_kinds.iter().any(|(k, _, _)| *k == kind),
            "{kind:?}: {merge_kinds:#?}"
        );
    }
    // A redelivered merge opens no second review.
    w.deliver("pull_request", &w.pr_payload(revert.number, "closed"))
        .await;
    assert_eq!(w.fake.issues(REPO).len(), 1);

    // Before the due time: nothing.
    w.advance(TimeDelta::hours(47));
    // Only the revert's bypass expired meanwhile (merged already: that changes nothing).
    assert_eq!(w.tick().await, 1);
    assert_eq!(w.reminders(review.number), 0);
    assert_eq!(w.fake.issues(REPO).len(), 1);
    // Past it: one reminder and the overdue label, and still one however often it ticks.
    w.advance(TimeDelta::hours(2));
    assert_eq!(w.tick().await, 1);
    for _ in 0..3 {
        w.advance(TimeDelta::hours(1));
        w.tick().await;
    }
    assert_eq!(w.reminders(review.number), 1);
    let labelled = w
        .fake
        .issues(REPO)
        .into_iter()
        .find(|i| i.number == review.number)
        .unwrap();
    assert!(
        labelled.labels.iter().any(|l| l == "overdue"),
        "{:?}",
        labelled.labels
    );
    let open = w.incidents().reviews(false).await.unwrap();
    assert_eq!(open.len(), 1);
    assert!(open[0].overdue_at(w.fake.now().timestamp_millis()));

    // Closing the issue records the review.
    let closed = w.issue_closed(review.number, "lena");
    w.deliver("issues", &closed).await;
    let kinds = w.record_kinds(revert.number).await;
    assert!(
        kinds
            .iter()
            .any(|(k, who, d)| *k == RecordKind::ReviewOverdue
                && who.is_none()
                && d.contains(&format!("#{}", review.number))),
        "{kinds:#?}"
    );
    assert!(
        kinds
            .iter()
            .any(|(k, who, d)| *k == RecordKind::ReviewClosed
                && who.as_deref() == Some("lena")
                && d.contains("checklist 0/4")),
        "{kinds:#?}"
    );
    assert!(w.incidents().reviews(false).await.unwrap().is_empty());
    let all = w.incidents().reviews(true).await.unwrap();
    assert_eq!(all[0].state, ReviewState::Closed);
    assert_eq!(all[0].closed_by.as_deref(), Some("lena"));
    // The whole story verifies as one chain.
    let report = w
        .first()
        .audit
        .ledger
        .verify(&w.first().audit.key.verifying_key())
        .await
        .unwrap();
    assert!(report.broken.is_empty(), "{report:?}");
}

/// Rollback and bypass are refused, with a reply, for anyone without the emergency role and
/// for a change that is not merged; nothing is reverted.
#[tokio::test]
async fn unauthorized_rollbacks_and_bypasses_and_unmerged_rollbacks_are_refused() {
    let w = World::sqlite(false).await;
    let head = w.open_model_change(1).await;
    // An open change cannot be rolled back, even by on-call.
    w.deliver(
        "issue_comment",
        &w.comment(1, "olga", "/tollgate rollback INC-1 too early"),
    )
    .await;
    // Nobody but on-call may bypass.
    w.deliver(
        "issue_comment",
        &w.comment(1, "dana", "/tollgate bypass INC-1 I am sure"),
    )
    .await;
    assert_ne!(w.conclusion(&head).as_deref(), Some("success"));
    let replies = w.replies(1);
    assert!(
        replies
            .iter()
            .any(|r| r.contains("only a merged change can be rolled back")),
        "{replies:#?}"
    );
    assert!(
        replies
            .iter()
            .any(|r| r.contains("@dana") && r.contains("only holders of 'on_call'")),
        "{replies:#?}"
    );

    w.merge(1, "lena").await;
    // Merged, but asked by someone without the role.
    w.deliver(
        "issue_comment",
        &w.comment(1, "alice", "/tollgate rollback INC-2 revert my change"),
    )
    .await;
    // And by on-call with a ticket the policy does not know.
    w.deliver(
        "issue_comment",
        &w.comment(1, "olga", "/tollgate rollback JIRA-3"),
    )
    .await;
    let replies = w.replies(1);
    assert!(
        replies.iter().any(|r| r.contains("@alice")
            && r.contains("only holders of 'on_call' with write access may roll back")),
        "{replies:#?}"
    );
    assert!(
        replies
            .iter()
            .any(|r| r.contains("'JIRA-3' does not match")),
        "{replies:#?}"
    );
    assert_eq!(w.fake.pulls(REPO).len(), 1, "no revert was opened");
    assert_eq!(w.requests("POST", "/pulls"), 0);
    assert_eq!(w.requests("POST", "/graphql"), 0);
    let kinds = w.record_kinds(1).await;
    let refused = kinds
        .iter()
        .filter(|(k, _, _)| *k == RecordKind::RollbackRefused)
        .count();
    assert_eq!(refused, 3, "each refused rollback is on record: {kinds:#?}");
    // Answered once each, however often the change is looked at again.
    let before = w.replies(1).len();
    w.deliver("issue_comment", &w.comment(1, "olga", "/tollgate recheck"))
        .await;
    assert_eq!(w.replies(1).len(), before);
}

/// A bypass counts for its window only: when it expires, the scheduler has the change
/// evaluated again and its check is no longer green.
#[tokio::test]
async fn a_bypass_expires_after_its_window_and_the_check_turns() {
    let w = World::sqlite(false).await;
    let head = w.open_model_change(1).await;
    w.deliver(
        "issue_comment",
        &w.comment(1, "olga", "/tollgate bypass INC-9 scoring outage"),
    )
    .await;
    assert_eq!(w.conclusion(&head).as_deref(), Some("success"));
    w.advance(TimeDelta::hours(23));
    assert_eq!(w.tick().await, 0, "not yet");
    assert_eq!(w.conclusion(&head).as_deref(), Some("success"));
    w.advance(TimeDelta::hours(1) + TimeDelta::minutes(1));
    assert_eq!(w.tick().await, 1, "the expiry fell due");
    assert_eq!(
        w.conclusion(&head).as_deref(),
        Some("action_required"),
        "an expired bypass no longer carries the change"
    );
}

/// With `overdue_review_blocks_bypass`, an overdue review refuses further bypasses (naming
/// it) until it is closed.
#[tokio::test]
async fn an_overdue_review_blocks_new_bypasses_when_the_switch_is_on() {
    let w = World::sqlite(true).await;
    let (review, due) = w.bypassed_and_merged(1, "INC-10").await;
    w.advance(due - w.fake.now() + TimeDelta::minutes(1));
    w.tick().await;

    let head = w.open_model_change(10).await;
    w.deliver(
        "issue_comment",
        &w.comment(10, "oscar", "/tollgate bypass INC-11 another outage"),
    )
    .await;
    assert_ne!(w.conclusion(&head).as_deref(), Some("success"));
    let replies = w.replies(10);
    assert!(
        replies
            .iter()
            .any(|r| r.contains(&format!("post-incident review #{review}")) && r.contains("INC-10")),
        "{replies:#?}"
    );
    // Closing the review lifts the block: a recheck honours the bypass.
    w.deliver("issues", &w.issue_closed(review, "lena")).await;
    w.deliver(
        "issue_comment",
        &w.comment(10, "oscar", "/tollgate recheck"),
    )
    .await;
    assert_eq!(w.conclusion(&head).as_deref(), Some("success"));
}

/// Without the switch, an overdue review does not block (the default).
#[tokio::test]
async fn without_the_switch_an_overdue_review_does_not_block() {
    let w = World::sqlite(false).await;
    let (_, due) = w.bypassed_and_merged(1, "INC-20").await;
    w.advance(due - w.fake.now() + TimeDelta::minutes(1));
    w.tick().await;
    let head = w.open_model_change(10).await;
    w.deliver(
        "issue_comment",
        &w.comment(10, "oscar", "/tollgate bypass INC-21 another outage"),
    )
    .await;
    assert_eq!(w.conclusion(&head).as_deref(), Some("success"));
}

/// When the merge is no longer the branch tip, the revert is GitHub's own `revertPullRequest`.
#[tokio::test]
async fn a_merge_that_is_not_the_tip_is_reverted_with_the_graphql_mutation() {
    let w = World::sqlite(false).await;
    w.open_model_change(1).await;
    w.merge(1, "lena").await;
    w.fake.commit_to_branch(
        REPO,
        "main",
        CommitSpec::new(
            "later000000000000000000000000000000000000",
            "lena",
            vec![FileChange::added("docs/notes.md", "later\n")],
        ),
    );
    w.deliver(
        "issue_comment",
        &w.comment(1, "olga", "/tollgate rollback INC-30 bad scores"),
    )
    .await;
    assert_eq!(w.requests("POST", "/graphql"), 1);
    let revert = w
        .fake
        .pulls(REPO)
        .into_iter()
        .find(|p| p.number != 1)
        .expect("a revert PR");
    let tree = w.fake.tree_at(REPO, &revert.head_sha);
    assert_eq!(tree["models/fraud/v1/model.onnx"], "weights v1");
    assert_eq!(tree["docs/notes.md"], "later\n", "later work is kept");
    assert!(revert.labels.iter().any(|l| l == "emergency"));
    assert_eq!(w.conclusion(&revert.head_sha).as_deref(), Some("success"));
}

/// A pending reminder survives a restart (nothing lost) and is posted once, even when a
/// process died after posting it but before marking it done (nothing doubled).
#[tokio::test]
async fn a_pending_reminder_survives_a_restart_and_a_crash_mid_reminder_posts_it_once() {
    let mut w = World::sqlite(false).await;
    let (review, due) = w.bypassed_and_merged(1, "INC-40").await;
    // Restart before the due time.
    w.stop_replica().await;
    w.start_replica().await;
    w.advance(due - w.fake.now() + TimeDelta::minutes(1));

    // A process claims the reminder, posts it, and dies before marking it done.
    let schedule = Schedule::new(w.first().audit.ledger.pool().clone());
    let now_ms = w.fake.now().timestamp_millis();
    let claimed = schedule
        .claim_due("dead-process", now_ms, 120_000, 10)
        .await
        .unwrap();
    // Due by now: the review, and (24 hours after it was given) the bypass's expiry.
    let kinds: Vec<&str> = claimed.iter().map(|d| d.kind.as_str()).collect();
    assert_eq!(kinds, ["github:bypass_expiry", "github:review_due"]);
    for due in &claimed {
        w.first().worker.handle(due).await.unwrap();
    }
    w.settle().await;
    assert_eq!(w.reminders(review), 1);

    // The restarted process leaves it while the dead one's lease runs…
    assert_eq!(w.tick().await, 0);
    // …then takes it over, finds the reminder posted, and does not post it again.
    w.advance(TimeDelta::minutes(3));
    assert_eq!(w.tick().await, 2);
    assert_eq!(w.reminders(review), 1);
    w.advance(TimeDelta::hours(5));
    assert_eq!(w.tick().await, 0);
    assert_eq!(w.reminders(review), 1);
}

/// Two replicas on one PostgreSQL database: the reminder is posted by one of them, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_replicas_on_postgresql_one_reminder_is_posted() {
    let Some(db) =
        PgDatabase::create("with_two_replicas_on_postgresql_one_reminder_is_posted").await
    else {
        return;
    };
    {
        let mut w = World::on(&db.url, false).await;
        w.start_replica().await;
        w.start_replica().await;
        let (review, due) = w.bypassed_and_merged(1, "INC-50").await;
        w.advance(due - w.fake.now() + TimeDelta::minutes(1));
        let (a, b) = tokio::join!(
            w.replicas[0].scheduler.tick(),
            w.replicas[1].scheduler.tick()
        );
        w.settle().await;
        // Two deadlines were due (the review and the bypass's expiry): each was acted on once.
        assert_eq!(a.unwrap() + b.unwrap(), 2);
        assert_eq!(w.reminders(review), 1);
        for _ in 0..3 {
            w.advance(TimeDelta::hours(1));
            w.tick().await;
        }
        assert_eq!(w.reminders(review), 1);
    }
    db.drop_now().await;
}

/// A process that dies while opening a review loses nothing and doubles nothing: if it died
/// after opening the issue but before noting it, the retry finds the issue instead of opening
/// a second; if it died after noting it but before scheduling the reminder, the retry schedules
/// it.
#[tokio::test]
async fn a_crash_while_opening_a_review_neither_doubles_the_issue_nor_loses_the_reminder() {
    let w = World::sqlite(false).await;
    let (review, due) = w.bypassed_and_merged(1, "INC-60").await;
    let pool = w.first().audit.ledger.pool().clone();
    // Died after opening the issue, before noting it (and so before scheduling anything).
    sqlx::query(
        "UPDATE incident_reviews SET state = 'opening', issue_number = NULL, issue_url = NULL",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("DELETE FROM deadlines WHERE kind = 'github:review_due'")
        .execute(&pool)
        .await
        .unwrap();
    w.deliver("pull_request", &w.pr_payload(1, "closed")).await;
    assert_eq!(
        w.fake.issues(REPO).len(),
        1,
        "the issue is found, not opened again"
    );
    let stored = w.incidents().reviews(false).await.unwrap();
    assert_eq!(stored[0].issue, Some(review));
    assert_eq!(stored[0].state, ReviewState::Open);
    let schedule = Schedule::new(pool.clone());
    let pending = schedule.pending("github:review_due").await.unwrap();
    assert_eq!(pending.len(), 1, "the reminder is scheduled again");
    assert_eq!(pending[0].1, due.timestamp_millis());

    // Died after noting it, before scheduling the reminder.
    sqlx::query("DELETE FROM deadlines WHERE kind = 'github:review_due'")
        .execute(&pool)
        .await
        .unwrap();
    w.deliver("pull_request", &w.pr_payload(1, "closed")).await;
    assert_eq!(w.fake.issues(REPO).len(), 1);
    assert_eq!(
        schedule.pending("github:review_due").await.unwrap().len(),
        1
    );
    w.advance(due - w.fake.now() + TimeDelta::minutes(1));
    w.tick().await;
    assert_eq!(w.reminders(review), 1);
}
