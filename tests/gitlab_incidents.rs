//! Incidents on GitLab, end to end in one process (issue 8): worked example 3 on a merge
//! request — a bypassed merge opens its post-incident review issue, `/tollgate rollback` by
//! on-call opens the revert with GitLab's commit revert API and it passes on its own bypass, the
//! review is reminded once when overdue and recorded when closed — and refusals. Time is the
//! fake GitLab's clock, which the worker and the scheduler read too.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use chrono::{DateTime, TimeDelta, Utc};
use secrecy::SecretString;
use serde_json::{Value, json};
use tollgate::config::JobSettings;
use tollgate::forge::gitlab::api::GitlabApi;
use tollgate::forge::gitlab::worker::{GitlabSink, GitlabWorker, WorkerOptions};
use tollgate::incident::REMINDER_MARKER;
use tollgate::incident::store::{Incidents, ReviewState};
use tollgate::intake::{IntakeSecrets, IntakeState};
use tollgate::ledger::record::RecordKind;
use tollgate::metrics::Metrics;
use tollgate::queue::JobQueue;
use tollgate::schedule::Schedule;
use tollgate::scheduler::{DeadlineHandler, Scheduler};

use common::fake_gitlab::{CommitSpec, DEVELOPER, FakeGitLab, FileChange, MrSpec};
use common::{GITLAB_TOKEN, TestApp, gitlab_request};

const PROJECT: &str = "acme/fraud-model";
const BASE: &str = "base000000000000000000000000000000000000";
const BOT: &str = "tollgate-bot";
const STATUS: &str = "tollgate";
const POLICY: &str = r#"
version = 1
governed_branches = ["main"]
[roles]
approver = ["@acme/ml-leads"]
on_call = ["olga"]
[[classify]]
kind  = "model_artifact"
paths = ["models/**/*.onnx"]
[risk.high]
kinds = ["model_artifact"]
[tiers.high]
sign_offs = ["approver"]
[tiers.low]
sign_offs = []
[emergency]
approvers = ["on_call"]
ticket = "INC-[0-9]+"
expires_hours = 24
review_within_hours = 48
"#;

struct FakeClock(Arc<FakeGitLab>);

impl tollgate::clock::Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        self.0.now()
    }
}

struct Tester {
    fake: Arc<FakeGitLab>,
    app: TestApp,
    worker: Arc<GitlabWorker>,
    scheduler: Scheduler,
    audit: Arc<tollgate::ledger::Audit>,
    project: u64,
    delivery: std::sync::atomic::AtomicUsize,
    _db: tempfile::TempDir,
}

impl Tester {
    async fn new() -> Tester {
        let fake = FakeGitLab::start().await;
        let token = fake.set_bot(BOT);
        let project = fake.create_project(PROJECT);
        fake.add_project_member(PROJECT, BOT, DEVELOPER);
        fake.set_file(PROJECT, BASE, ".governance.toml", POLICY);
        fake.set_file(PROJECT, BASE, "models/fraud/model.onnx", "weights v1");
        fake.add_group("acme/ml-leads");
        fake.add_group_member("acme/ml-leads", "lena", DEVELOPER);
        for user in ["lena", "alice", "olga", "dana"] {
            fake.add_project_member(PROJECT, user, DEVELOPER);
        }
        fake.open_mr(
            PROJECT,
            MrSpec {
                iid: 7,
                author: "alice".to_owned(),
                title: "Fraud model v2".to_owned(),
                base_sha: BASE.to_owned(),
                source_branch: "fraud-v2".to_owned(),
                target_branch: "main".to_owned(),
                commits: vec![CommitSpec::new(
                    "head1",
                    "alice",
                    vec![FileChange::modified(
                        "models/fraud/model.onnx",
                        "weights v2",
                    )],
                )],
                ..MrSpec::default()
            },
        );
        let fake = Arc::new(fake);
        let db = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", db.path().join("ledger.db").display());
        let audit = Arc::new(tollgate::ledger::Audit {
            ledger: tollgate::ledger::store::Ledger::open(&url).await.unwrap(),
            key: ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]),
        });
        let api = GitlabApi::new(&fake.url().parse().unwrap(), &SecretString::from(token)).unwrap();
        let metrics = Metrics::new();
        let clock: Arc<dyn tollgate::clock::Clock> = Arc::new(FakeClock(fake.clone()));
        let worker = GitlabWorker::start(
            api,
            WorkerOptions {
                check_name: STATUS.to_owned(),
                default_policy: None,
                audit: Some(Arc::clone(&audit)),
                queue: JobQueue::new(audit.ledger.pool().clone()),
                jobs: JobSettings::default(),
                metrics: metrics.clone(),
                clock: clock.clone(),
                public_url: Some("https://tollgate.example.com".parse().unwrap()),
            },
        );
        let scheduler = Scheduler::new(
            Schedule::new(audit.ledger.pool().clone()),
            clock,
            vec![(
                "gitlab:".to_owned(),
                worker.clone() as Arc<dyn DeadlineHandler>,
            )],
        );
        let secrets = IntakeSecrets {
            github: vec![],
            gitlab: vec![SecretString::from(GITLAB_TOKEN)],
        };
        let state = IntakeState::new(
            secrets,
            metrics.clone(),
            Arc::new(GitlabSink(Arc::clone(&worker))),
        );
        Tester {
            fake,
            app: TestApp {
                router: tollgate::server::router(state, metrics.clone()),
                sink: Arc::default(),
                metrics,
            },
            worker,
            scheduler,
            audit,
            project,
            delivery: 0.into(),
            _db: db,
        }
    }

    fn project_json(&self) -> Value {
        json!({"id": self.project, "path_with_namespace": PROJECT})
    }

    fn mr_hook(&self, iid: u64, action: &str) -> Value {
        let mr = self
            .fake
            .merge_requests(PROJECT)
            .into_iter()
            .find(|m| m.iid == iid)
            .unwrap();
        json!({
            "object_kind": "merge_request",
            "event_type": "merge_request",
            "user": {"id": 1, "username": "alice", "name": "Alice"},
            "project": self.project_json(),
            "object_attributes": {
                "iid": iid, "action": action, "source_branch": mr.source_branch,
                "target_branch": mr.target_branch, "author_id": 1, "title": mr.title,
                "description": mr.description, "last_commit": {"id": mr.sha},
                "diff_refs": {"base_sha": BASE},
            },
            "labels": [],
        })
    }

    /// `who` writes `body` on merge request `iid`; returns the Note Hook payload.
    fn note(&self, iid: u64, who: &str, body: &str) -> Value {
        self.fake.advance(TimeDelta::minutes(1));
        let id = self.fake.add_note(PROJECT, iid, who, body);
        json!({
            "object_kind": "note",
            "event_type": "note",
            "user": {"id": 2, "username": who, "name": who},
            "project": self.project_json(),
            "object_attributes": {"id": id, "note": body, "noteable_type": "MergeRequest"},
            "merge_request": {"iid": iid},
        })
    }

    fn issue_closed(&self, iid: u64, by: &str) -> Value {
        self.fake.close_issue(PROJECT, iid, by);
        json!({
            "object_kind": "issue",
            "event_type": "issue",
            "user": {"id": 3, "username": by, "name": by},
            "project": self.project_json(),
            "object_attributes": {"iid": iid, "action": "close", "state": "closed"},
        })
    }

    async fn send(&self, event: &str, payload: &Value) {
        let n = self
            .delivery
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let body = serde_json::to_vec(payload).unwrap();
        let (status, text) = self
            .app
            .send(gitlab_request(event, &format!("u-{n}"), body, GITLAB_TOKEN))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    }

    async fn settle(&self) {
        tokio::time::timeout(Duration::from_secs(20), self.worker.settle())
            .await
            .expect("the worker settles");
    }

    async fn deliver(&self, event: &str, payload: &Value) {
        self.send(event, payload).await;
        self.settle().await;
    }

    async fn tick(&self) -> usize {
        let done = self.scheduler.tick().await.unwrap();
        self.settle().await;
        done
    }

    fn status(&self, sha: &str) -> Option<String> {
        self.fake
            .status_history(PROJECT, sha, STATUS)
            .last()
            .cloned()
    }

    fn replies(&self, iid: u64) -> Vec<String> {
        self.fake
            .notes(PROJECT, iid)
            .into_iter()
            .filter(|n| n.author == BOT && !n.body.contains(tollgate::render::COMMENT_MARKER))
            .map(|n| n.body)
            .collect()
    }

    async fn kinds(&self, iid: u64) -> Vec<(RecordKind, Option<String>, String)> {
        common::record_summaries(&self.audit.ledger, PROJECT, iid).await
    }

    fn incidents(&self) -> Incidents {
        Incidents::new(self.audit.ledger.pool().clone())
    }

    fn requests(&self, method: &str, path_part: &str) -> usize {
        self.fake
            .requests()
            .iter()
            .filter(|r| r.method == method && r.path.contains(path_part))
            .count()
    }
}

fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

#[tokio::test]
async fn worked_example_3_on_gitlab_review_rollback_reminder_and_closing() {
    let t = Tester::new().await;
    t.deliver("Merge Request Hook", &t.mr_hook(7, "open")).await;
    let head = t.fake.merge_requests(PROJECT)[0].sha.clone();
    assert_eq!(t.status(&head).as_deref(), Some("failed"));

    // On-call bypasses for the incident and the merge request is merged under it.
    t.deliver(
        "Note Hook",
        &t.note(7, "olga", "/tollgate bypass INC-42 scoring outage"),
    )
    .await;
    assert_eq!(t.status(&head).as_deref(), Some("success"));
    // The status links to the merge request's decision page (subgroups and all).
    let linked = t.fake.statuses(PROJECT, &head);
    assert_eq!(
        linked.last().and_then(|s| s.target_url.as_deref()),
        Some("https://tollgate.example.com/pr/gitlab/acme/fraud-model/7")
    );
    t.fake.advance(TimeDelta::minutes(5));
    let merged_at = t.fake.now();
    t.fake.merge_mr(PROJECT, 7, "olga");
    t.deliver("Merge Request Hook", &t.mr_hook(7, "merge"))
        .await;

    let issues = t.fake.issues(PROJECT);
    assert_eq!(issues.len(), 1, "{issues:#?}");
    let review = &issues[0];
    assert_eq!(review.title, "Post-incident review: !7 — INC-42");
    assert!(review.labels.iter().any(|l| l == "post-incident-review"));
    assert!(review.labels.iter().any(|l| l == "INC-42"));
    let stored = t.incidents().reviews(false).await.unwrap();
    assert_eq!(stored.len(), 1);
    let due = DateTime::from_timestamp_millis(stored[0].due_ms).unwrap();
    assert!(
        (due - (merged_at + TimeDelta::hours(48)))
            .num_seconds()
            .abs()
            <= 2,
        "due 48 h after the merge: {due} vs {merged_at}"
    );
    assert!(
        review
            .description
            .contains(&format!("| **Due** | **{}** |", when(due))),
        "{}",
        review.description
    );
    assert!(
        review
            .description
            .lines()
            .all(|l| !l.trim_start().starts_with('/')),
        "no quick action in the review"
    );
    let kinds = t.kinds(7).await;
    for kind in [RecordKind::MergedUnderBypass, RecordKind::ReviewOpened] {
        assert!(
            kinds.iter().any(|(k, _, _)| *k == kind),
            "{kind:?}: {kinds:#?}"
        );
    }

    // The model misbehaves: on-call rolls it back.
    t.fake.advance(TimeDelta::hours(1));
    let command = t.note(
        7,
        "olga",
        "/tollgate rollback INC-42 conversion dropped 10%",
    );
    let started = Instant::now();
    t.send("Note Hook", &command).await;
    let revert = loop {
        if let Some(mr) = t
            .fake
            .merge_requests(PROJECT)
            .into_iter()
            .find(|m| m.iid != 7)
        {
            break mr;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no revert MR");
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    eprintln!(
        "GitLab: rollback command delivered → revert MR created: {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    t.settle().await;
    let revert = t
        .fake
        .merge_requests(PROJECT)
        .into_iter()
        .find(|m| m.iid == revert.iid)
        .unwrap();
    assert_eq!(revert.target_branch, "main");
    assert_eq!(revert.author, BOT);
    assert!(revert.title.contains("Revert !7"), "{}", revert.title);
    for label in ["emergency", "INC-42"] {
        assert!(
            revert.labels.iter().any(|l| l == label),
            "{:?}",
            revert.labels
        );
    }
    assert_eq!(
        t.requests("POST", "/revert"),
        1,
        "GitLab's commit revert API"
    );
    assert_eq!(
        t.fake.tree_at(PROJECT, &revert.sha)["models/fraud/model.onnx"],
        "weights v1",
        "the revert restores the model before the merge"
    );
    assert_eq!(
        t.status(&revert.sha).as_deref(),
        Some("success"),
        "the revert passes on its own bypass"
    );
    assert!(
        t.replies(7)
            .iter()
            .any(|r| r.contains(&format!("!{}", revert.iid)) && r.contains("INC-42")),
        "{:#?}",
        t.replies(7)
    );
    let kinds = t.kinds(7).await;
    assert!(
        kinds.iter().any(
            |(k, who, _)| *k == RecordKind::RollbackRequested && who.as_deref() == Some("olga")
        )
    );
    assert!(
        kinds
            .iter()
            .any(|(k, _, _)| *k == RecordKind::RollbackOpened)
    );
    // Anyone else is refused, with a reply, and nothing is reverted.
    t.deliver(
        "Note Hook",
        &t.note(7, "dana", "/tollgate rollback INC-43 me too"),
    )
    .await;
    assert!(
        t.replies(7)
            .iter()
            .any(|r| r.contains("dana") && r.contains("only holders of 'on_call'")),
        "{:#?}",
        t.replies(7)
    );
    assert_eq!(t.fake.merge_requests(PROJECT).len(), 2);

    // The review falls due: one reminder, the overdue label, however often it ticks.
    let issue = review.iid;
    t.fake.advance(due - t.fake.now() + TimeDelta::minutes(1));
    t.tick().await;
    for _ in 0..3 {
        t.fake.advance(TimeDelta::hours(1));
        t.tick().await;
    }
    let reminders = t
        .fake
        .issue_notes(PROJECT, issue)
        .iter()
        .filter(|n| n.author == BOT && n.body.contains(REMINDER_MARKER))
        .count();
    assert_eq!(reminders, 1);
    let labelled = t
        .fake
        .issues(PROJECT)
        .into_iter()
        .find(|i| i.iid == issue)
        .unwrap();
    assert!(
        labelled.labels.iter().any(|l| l == "overdue"),
        "{:?}",
        labelled.labels
    );

    // Closing it records the review.
    t.deliver("Issue Hook", &t.issue_closed(issue, "lena"))
        .await;
    let kinds = t.kinds(7).await;
    assert!(
        kinds
            .iter()
            .any(|(k, _, _)| *k == RecordKind::ReviewOverdue)
    );
    assert!(
        kinds
            .iter()
            .any(|(k, who, _)| *k == RecordKind::ReviewClosed && who.as_deref() == Some("lena")),
        "{kinds:#?}"
    );
    let all = t.incidents().reviews(true).await.unwrap();
    assert_eq!(all[0].state, ReviewState::Closed);
    let report = t
        .audit
        .ledger
        .verify(&t.audit.key.verifying_key())
        .await
        .unwrap();
    assert!(report.broken.is_empty(), "{report:?}");
}

/// A rollback asked for on a merge request that is not merged is refused with a reply.
#[tokio::test]
async fn a_rollback_on_an_open_merge_request_is_refused() {
    let t = Tester::new().await;
    t.deliver("Merge Request Hook", &t.mr_hook(7, "open")).await;
    t.deliver(
        "Note Hook",
        &t.note(7, "olga", "/tollgate rollback INC-1 not yet"),
    )
    .await;
    assert!(
        t.replies(7)
            .iter()
            .any(|r| r.contains("only a merged change can be rolled back")),
        "{:#?}",
        t.replies(7)
    );
    assert_eq!(t.fake.merge_requests(PROJECT).len(), 1);
    assert_eq!(t.requests("POST", "/revert"), 0);
}
