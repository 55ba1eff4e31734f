//! A GitHub world for end-to-end tests in one process: the fake GitHub with worked example 1's
//! repository (its policy, teams and permissions), and tollgate "replicas" (intake, worker,
//! scheduler) on one store, all reading the fake's clock. Used by the incident, deployment
//! gate and decision page tests.

#![allow(dead_code)] // each test crate uses a different subset

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use chrono::{DateTime, TimeDelta, Utc};
use secrecy::SecretString;
use serde_json::{Value, json};
use tollgate::config::JobSettings;
use tollgate::forge::github::api::{Auth, GithubApi};
use tollgate::forge::github::worker::{GithubSink, GithubWorker, WorkerOptions};
use tollgate::incident::store::Incidents;
use tollgate::intake::{IntakeSecrets, IntakeState};
use tollgate::ledger::record::RecordKind;
use tollgate::metrics::Metrics;
use tollgate::schedule::Schedule;
use tollgate::scheduler::{DeadlineHandler, Scheduler};

use super::fake_github::{CommitSpec, FakeGitHub, FileChange, PrSpec};
use super::{GITHUB_SECRET, TestApp};

pub use super::fraud_repo::{BASE, REPO};
pub const CHECK: &str = "tollgate";
pub const BOT: &str = "tollgate-test[bot]";
pub const BODY: &str =
    "Fraud model v2.\n\n## Rollback plan\nRevert this PR; v1 stays in the registry.\n";

/// The worked example 1 policy (its `[emergency]` is example 3's), with the overdue switch on
/// when asked.
pub fn policy(overdue_blocks: bool) -> String {
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
pub struct FakeClock(pub Arc<FakeGitHub>);

impl tollgate::clock::Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        self.0.now()
    }
}

/// One `tollgate serve` process: intake, worker, scheduler.
pub struct Replica {
    pub app: TestApp,
    pub worker: Arc<GithubWorker>,
    pub scheduler: Scheduler,
    pub audit: Arc<tollgate::ledger::Audit>,
}

pub struct World {
    pub fake: Arc<FakeGitHub>,
    pub url: String,
    pub replicas: Vec<Replica>,
    pub delivery: std::sync::atomic::AtomicUsize,
    pub _db: Option<tempfile::TempDir>,
    /// Where replicas started from now on say their pages are served.
    pub public_url: Option<url::Url>,
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
    pub async fn sqlite(overdue_blocks: bool) -> World {
        World::sqlite_with_policy(&policy(overdue_blocks)).await
    }

    /// One replica on a fresh SQLite file, with `policy_text` as the repository's policy.
    pub async fn sqlite_with_policy(policy_text: &str) -> World {
        let db = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", db.path().join("ledger.db").display());
        let mut world = World::on_with_policy(&url, policy_text).await;
        world._db = Some(db);
        world.start_replica().await;
        world
    }

    /// No replica yet, on the store at `url`.
    pub async fn on(url: &str, overdue_blocks: bool) -> World {
        World::on_with_policy(url, &policy(overdue_blocks)).await
    }

    /// No replica yet, on the store at `url`, with `policy_text` as the repository's policy.
    pub async fn on_with_policy(url: &str, policy_text: &str) -> World {
        let fake = FakeGitHub::start().await;
        fake.set_app("tollgate-test", 4242);
        super::fraud_repo::seed(
            &fake,
            policy_text,
            &[
                ("data-platform", &["dana"]),
                ("model-risk", &["rita"]),
                ("ml-ops", &["omar"]),
                ("ml-leads", &["lena"]),
                ("ml-oncall", &["olga", "oscar"]),
            ],
        );
        fake.set_file(REPO, BASE, "models/fraud/v1/model.onnx", "weights v1");
        World {
            fake: Arc::new(fake),
            url: url.to_owned(),
            replicas: Vec::new(),
            delivery: 0.into(),
            _db: None,
            public_url: None,
        }
    }

    /// Starts one more replica on the shared store (or restarts, after `stop_replica`).
    pub async fn start_replica(&mut self) {
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
                public_url: self.public_url.clone(),
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
    pub async fn stop_replica(&mut self) {
        let replica = self.replicas.pop().unwrap();
        assert!(replica.worker.drain(Duration::from_secs(5)).await);
    }

    pub fn first(&self) -> &Replica {
        &self.replicas[0]
    }

    pub fn incidents(&self) -> Incidents {
        Incidents::new(self.first().audit.ledger.pool().clone())
    }

    /// Moves time (GitHub's, and so tollgate's) forward.
    pub fn advance(&self, by: TimeDelta) {
        self.fake.advance(by);
    }

    /// Opens PR `number` by `author` with one commit changing `files`.
    pub fn open_pr(
        &self,
        number: u64,
        author: &str,
        title: &str,
        files: Vec<FileChange>,
    ) -> String {
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

    pub fn installation(&self) -> Value {
        json!({ "id": self.fake.installation_id() })
    }

    pub fn repository(&self) -> Value {
        json!({"id": 99, "full_name": REPO})
    }

    pub fn pr_payload(&self, number: u64, action: &str) -> Value {
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
    pub fn comment(&self, number: u64, who: &str, text: &str) -> Value {
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
    pub async fn send(&self, at: usize, event: &str, payload: &Value) {
        let n = self
            .delivery
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let request = super::github_request(
            event,
            &format!("d-{n}"),
            serde_json::to_vec(payload).unwrap(),
            GITHUB_SECRET,
        );
        let (status, body) = self.replicas[at].app.send(request).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }

    pub async fn settle(&self) {
        for replica in &self.replicas {
            tokio::time::timeout(Duration::from_secs(20), replica.worker.settle())
                .await
                .expect("the worker settles");
        }
    }

    /// Sends a delivery and waits until it is acted on.
    pub async fn deliver(&self, event: &str, payload: &Value) {
        self.send(0, event, payload).await;
        self.settle().await;
    }

    /// Runs every replica's scheduler once, then lets the work it queued finish.
    pub async fn tick(&self) -> usize {
        let mut done = 0;
        for replica in &self.replicas {
            done += replica.scheduler.tick().await.unwrap();
        }
        self.settle().await;
        done
    }

    pub fn conclusion(&self, sha: &str) -> Option<String> {
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
    pub fn replies(&self, number: u64) -> Vec<String> {
        self.fake
            .comments(REPO, number)
            .into_iter()
            .filter(|c| c.author == BOT && !c.body.contains(tollgate::render::COMMENT_MARKER))
            .map(|c| c.body)
            .collect()
    }

    pub async fn record_kinds(&self, number: u64) -> Vec<(RecordKind, Option<String>, String)> {
        super::record_summaries(&self.first().audit.ledger, REPO, number).await
    }

    pub fn requests(&self, method: &str, path_part: &str) -> usize {
        self.fake
            .requests()
            .iter()
            .filter(|r| r.method == method && r.path.contains(path_part))
            .count()
    }

    /// The worked example's model change, PR #1 by alice, opened and evaluated.
    pub async fn open_model_change(&self, number: u64) -> String {
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
    pub async fn merge(&self, number: u64, by: &str) -> DateTime<Utc> {
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
    pub async fn bypassed_and_merged(&self, number: u64, ticket: &str) -> (u64, DateTime<Utc>) {
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

    pub fn issue_closed(&self, number: u64, by: &str) -> Value {
        self.fake.close_issue(REPO, number, by);
        json!({
            "action": "closed",
            "issue": {"number": number, "state": "closed"},
            "sender": {"login": by, "id": 11},
            "repository": self.repository(),
            "installation": self.installation(),
        })
    }

    pub fn reminders(&self, issue: u64) -> usize {
        self.fake
            .comments(REPO, issue)
            .iter()
            .filter(|c| c.author == BOT && c.body.contains(tollgate::incident::REMINDER_MARKER))
            .count()
    }
}

pub fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}
