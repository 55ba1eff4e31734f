//! GitLab end to end, in process: signed (token) Merge Request Hook and Note Hook deliveries
//! go through intake into the durable queue; the GitLab worker gathers the merge request's
//! facts from the fake GitLab, decides with the same policy engine, records the decision in the
//! ledger (`forge = gitlab`) and publishes a commit status and one sticky note.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use tollgate::config::JobSettings;
use tollgate::forge::gitlab::api::GitlabApi;
use tollgate::forge::gitlab::worker::{GitlabSink, GitlabWorker, WorkerOptions};
use tollgate::intake::{IntakeSecrets, IntakeState};
use tollgate::metrics::Metrics;
use tollgate::queue::JobQueue;
use tollgate::render::COMMENT_MARKER;

use common::fake_gitlab::{CommitSpec, DEVELOPER, FakeGitLab, FileChange, MrSpec};
use common::{GITLAB_TOKEN, TestApp, gitlab_request};

const PROJECT: &str = "acme/fraud-model";
const BASE: &str = "base000000000000000000000000000000000000";
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
"#;

struct Tester {
    fake: FakeGitLab,
    app: TestApp,
    worker: Arc<GitlabWorker>,
    audit: Arc<tollgate::ledger::Audit>,
    project: u64,
    _db: tempfile::TempDir,
}

impl Tester {
    async fn new() -> Tester {
        Tester::with_jobs(JobSettings::default()).await
    }

    /// The queue worked as `jobs` says (e.g. a short give-up bound).
    async fn with_jobs(jobs: JobSettings) -> Tester {
        let fake = FakeGitLab::start().await;
        let token = fake.set_bot("tollgate-bot");
        let project = fake.create_project(PROJECT);
        fake.add_project_member(PROJECT, "tollgate-bot", DEVELOPER);
        fake.set_file(PROJECT, BASE, ".governance.toml", POLICY);
        fake.add_group("acme/ml-leads");
        fake.add_group_member("acme/ml-leads", "lena", DEVELOPER);
        fake.add_project_member(PROJECT, "lena", DEVELOPER);
        fake.add_project_member(PROJECT, "alice", DEVELOPER);
        fake.add_project_member(PROJECT, "olga", DEVELOPER);
        fake.add_project_member(PROJECT, "dana", DEVELOPER);
        fake.open_mr(
            PROJECT,
            MrSpec {
                iid: 7,
                author: "alice".to_owned(),
                base_sha: BASE.to_owned(),
                commits: vec![CommitSpec::new(
                    "head1",
                    "alice",
                    vec![FileChange::added("models/fraud/v2/model.onnx", "w")],
                )],
                ..MrSpec::default()
            },
        );
        let db = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", db.path().join("ledger.db").display());
        let audit = Arc::new(tollgate::ledger::Audit {
            ledger: tollgate::ledger::store::Ledger::open(&url).await.unwrap(),
            key: ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]),
        });
        let api = GitlabApi::new(&fake.url().parse().unwrap(), &SecretString::from(token)).unwrap();
        let metrics = Metrics::new();
        let worker = GitlabWorker::start(
            api,
            WorkerOptions {
                check_name: "tollgate".to_owned(),
                default_policy: None,
                audit: Some(Arc::clone(&audit)),
                queue: JobQueue::new(audit.ledger.pool().clone()),
                jobs,
                metrics: metrics.clone(),
                clock: tollgate::clock::system(),
                public_url: None,
            },
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
        let app = TestApp {
            router: tollgate::server::router(state, metrics.clone()),
            sink: Arc::default(),
            metrics,
        };
        Tester {
            fake,
            app,
            worker,
            audit,
            project,
            _db: db,
        }
    }

    fn mr_hook(&self, action: &str) -> Value {
        json!({
            "object_kind": "merge_request",
            "event_type": "merge_request",
            "user": {"id": 1, "username": "alice", "name": "Alice"},
            "project": {"id": self.project, "path_with_namespace": PROJECT},
            "object_attributes": {
                "iid": 7, "action": action, "source_branch": "feature", "target_branch": "main",
                "author_id": 1, "title": "Fraud v2", "description": "",
                "last_commit": {"id": "head1"}, "diff_refs": {"base_sha": BASE},
            },
            "labels": [],
        })
    }

    fn note_hook(&self, author: &str, body: &str) -> Value {
        json!({
            "object_kind": "note",
            "event_type": "note",
            "user": {"id": 2, "username": author, "name": author},
            "project": {"id": self.project, "path_with_namespace": PROJECT},
            "object_attributes": {"id": 99, "note": body, "noteable_type": "MergeRequest"},
            "merge_request": {"iid": 7},
        })
    }

    async fn deliver(&self, event: &str, uuid: &str, payload: &Value) {
        let body = serde_json::to_vec(payload).unwrap();
        let (status, text) = self
            .app
            .send(gitlab_request(event, uuid, body, GITLAB_TOKEN))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{text}");
        tokio::time::timeout(std::time::Duration::from_secs(20), self.worker.settle())
            .await
            .expect("the worker settles");
    }

    fn head(&self) -> String {
        let versions = self.fake.versions(PROJECT, 7);
        let newest = versions.iter().max_by_key(|v| v.id).expect("a version");
        newest.head_commit_sha.clone()
    }

    fn tollgate_notes(&self) -> Vec<String> {
        self.fake
            .notes(PROJECT, 7)
            .into_iter()
            .filter(|n| n.author == "tollgate-bot" && n.body.contains(COMMENT_MARKER))
            .map(|n| n.body)
            .collect()
    }
}

#[tokio::test]
async fn a_merge_request_is_gated_until_its_sign_off_then_passes_with_one_note() {
    let t = Tester::new().await;
    t.deliver("Merge Request Hook", "u-1", &t.mr_hook("open"))
        .await;
    let head = t.head();
    assert_eq!(
        t.fake.status_history(PROJECT, &head, "tollgate"),
        ["failed"]
    );
    assert_eq!(t.tollgate_notes().len(), 1);

    // The author's own approval does not count: never a success.
    t.fake.approve(PROJECT, 7, "alice");
    t.deliver("Merge Request Hook", "u-2", &t.mr_hook("approved"))
        .await;
    let history = t.fake.status_history(PROJECT, &head, "tollgate");
    assert!(history.iter().all(|s| s == "failed"), "{history:?}");

    // A lead's does; a redelivery changes nothing; still one note.
    t.fake.approve(PROJECT, 7, "lena");
    t.deliver("Merge Request Hook", "u-3", &t.mr_hook("approved"))
        .await;
    t.deliver("Merge Request Hook", "u-3", &t.mr_hook("approved"))
        .await;
    let history = t.fake.status_history(PROJECT, &head, "tollgate");
    assert_eq!(
        history.last().map(String::as_str),
        Some("success"),
        "{history:?}"
    );
    assert_eq!(t.tollgate_notes().len(), 1);

    // A command in a note is a delivery too.
    t.deliver(
        "Note Hook",
        "u-4",
        &t.note_hook("lena", "/tollgate recheck"),
    )
    .await;
    assert_eq!(t.tollgate_notes().len(), 1);

    // The decisions are in the ledger, as GitLab's.
    let records = t.audit.ledger.records(Some(PROJECT)).await.unwrap();
    assert!(!records.is_empty());
    let body: Value = serde_json::from_str(&records[0].body).unwrap();
    assert_eq!(body["forge"], "gitlab", "{body}");
}

/// The audit ledger refuses every write (a trigger aborts each insert, as a full disk would):
/// a merge request with its sign-off gets no success status and no note without its signed
/// record; the job is retried, then parked with an error naming the ledger, and `tollgate jobs
/// retry` passes it once the store takes writes again.
#[tokio::test]
async fn when_the_audit_ledger_fails_nothing_passes_until_the_decision_is_recorded() {
    let t = Tester::with_jobs(JobSettings {
        give_up_after: std::time::Duration::from_secs(1),
        ..JobSettings::default()
    })
    .await;
    t.fake.approve(PROJECT, 7, "lena");
    let pool = t.audit.ledger.pool();
    common::ledger_refuses_writes(pool).await;
    // Settles once the job is parked (failed jobs are not waited for).
    t.deliver("Merge Request Hook", "u-1", &t.mr_hook("open"))
        .await;

    let queue = JobQueue::new(pool.clone());
    common::assert_parked_for_the_ledger(&queue, "GitLab").await;
    let head = t.head();
    let history = t.fake.status_history(PROJECT, &head, "tollgate");
    assert!(!history.is_empty(), "a failure is shown on the head");
    assert!(history.iter().all(|s| s == "failed"), "{history:?}");
    assert!(t.tollgate_notes().is_empty(), "no note without its record");
    assert!(
        common::record_summaries(&t.audit.ledger, PROJECT, 7)
            .await
            .is_empty()
    );

    // The store takes writes again; the operator retries the parked job.
    common::ledger_takes_writes(pool).await;
    let now = chrono::Utc::now().timestamp_millis();
    assert_eq!(queue.retry_now(None, now).await.unwrap(), 1);
    tokio::time::timeout(std::time::Duration::from_secs(20), t.worker.settle())
        .await
        .expect("the worker settles");
    assert_eq!(queue.list(true, 10).await.unwrap()[0].state, "done");
    let history = t.fake.status_history(PROJECT, &head, "tollgate");
    assert_eq!(
        history.last().map(String::as_str),
        Some("success"),
        "{history:?}"
    );
    assert!(
        !history[..history.len() - 1].contains(&"success".to_owned()),
        "{history:?}"
    );
    assert_eq!(t.tollgate_notes().len(), 1);
    assert!(
        !common::record_summaries(&t.audit.ledger, PROJECT, 7)
            .await
            .is_empty(),
        "the pass has its signed records"
    );
}

#[tokio::test]
async fn a_bypass_is_honoured_for_on_call_with_a_ticket_and_refused_otherwise() {
    let t = Tester::new().await;
    t.deliver("Merge Request Hook", "u-1", &t.mr_hook("open"))
        .await;
    let head = t.head();
    // Not on call: refused, and the note says why.
    t.fake.add_note(
        PROJECT,
        7,
        "dana",
        "/tollgate bypass INC-42 conversion dropped",
    );
    t.deliver(
        "Note Hook",
        "u-2",
        &t.note_hook("dana", "/tollgate bypass INC-42 conversion dropped"),
    )
    .await;
    let history = t.fake.status_history(PROJECT, &head, "tollgate");
    assert!(history.iter().all(|s| s == "failed"), "{history:?}");
    assert!(
        t.tollgate_notes()[0].contains("bypass refused"),
        "{}",
        t.tollgate_notes()[0]
    );
    // On call but a ticket that does not match: refused.
    t.fake.add_note(
        PROJECT,
        7,
        "olga",
        "/tollgate bypass JIRA-1 conversion dropped",
    );
    t.deliver(
        "Note Hook",
        "u-3",
        &t.note_hook("olga", "/tollgate bypass JIRA-1 conversion dropped"),
    )
    .await;
    let history = t.fake.status_history(PROJECT, &head, "tollgate");
    assert!(history.iter().all(|s| s == "failed"), "{history:?}");
    // On call, with a ticket and a reason: the merge request may merge, and it is on record.
    t.fake.add_note(
        PROJECT,
        7,
        "olga",
        "/tollgate bypass INC-42 conversion dropped 10%",
    );
    t.deliver(
        "Note Hook",
        "u-4",
        &t.note_hook("olga", "/tollgate bypass INC-42 conversion dropped 10%"),
    )
    .await;
    let history = t.fake.status_history(PROJECT, &head, "tollgate");
    assert_eq!(
        history.last().map(String::as_str),
        Some("success"),
        "{history:?}"
    );
    assert_eq!(t.tollgate_notes().len(), 1);
    // Each refused command got one reply saying why, however often the change was evaluated.
    let replies: Vec<String> = t
        .fake
        .notes(PROJECT, 7)
        .into_iter()
        .filter(|n| n.author == "tollgate-bot" && n.body.contains("was refused"))
        .map(|n| n.body)
        .collect();
    assert_eq!(replies.len(), 2, "{replies:#?}");
    assert!(
        replies[0].contains("@dana") && replies[0].contains("on_call"),
        "{replies:#?}"
    );
    assert!(
        replies[1].contains("@olga") && replies[1].contains("INC-"),
        "{replies:#?}"
    );
    assert!(
        replies
            .iter()
            .all(|r| r.lines().all(|l| !l.starts_with('/'))),
        "{replies:#?}"
    );
    let records = t.audit.ledger.records(Some(PROJECT)).await.unwrap();
    assert!(
        records
            .iter()
            .any(|r| r.body.contains("INC-42") && r.body.contains("olga")),
        "the bypass is a signed record"
    );
}

#[tokio::test]
async fn the_policy_is_read_at_the_base_even_when_the_merge_request_edits_it() {
    let t = Tester::new().await;
    // The merge request tries to drop its own gate.
    t.fake.push(
        PROJECT,
        7,
        CommitSpec::new(
            "head2",
            "alice",
            vec![FileChange::modified(
                ".governance.toml",
                "version = 1\n[tiers.low]\nsign_offs = []\n",
            )],
        ),
    );
    t.deliver("Merge Request Hook", "u-1", &t.mr_hook("update"))
        .await;
    let head = t.head();
    let history = t.fake.status_history(PROJECT, &head, "tollgate");
    assert_eq!(head, "head2");
    assert!(!history.is_empty());
    assert!(history.iter().all(|s| s == "failed"), "{history:?}");
}

#[tokio::test]
async fn a_burst_of_deliveries_yields_one_note_and_a_status_linking_to_the_merge_request() {
    use tower::ServiceExt as _;
    let t = Tester::new().await;
    let sends = (0..8).map(|n| {
        let router = t.app.router.clone();
        let body = serde_json::to_vec(&t.mr_hook(if n == 0 { "open" } else { "update" })).unwrap();
        async move {
            let request = gitlab_request(
                "Merge Request Hook",
                &format!("burst-{n}"),
                body,
                GITLAB_TOKEN,
            );
            router.oneshot(request).await.unwrap().status()
        }
    });
    let statuses = futures_util::future::join_all(sends).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::ACCEPTED));
    tokio::time::timeout(std::time::Duration::from_secs(20), t.worker.settle())
        .await
        .unwrap();
    assert_eq!(t.tollgate_notes().len(), 1);
    let head = t.head();
    let status = t
        .fake
        .statuses(PROJECT, &head)
        .into_iter()
        .find(|s| s.name == "tollgate")
        .expect("a tollgate status");
    assert_eq!(status.state, "failed");
    assert!(
        status
            .description
            .as_deref()
            .unwrap_or("")
            .starts_with("High risk"),
        "{status:?}"
    );
    assert!(
        status
            .target_url
            .as_deref()
            .unwrap_or("")
            .ends_with("/merge_requests/7"),
        "{status:?}"
    );
}

#[tokio::test]
async fn a_project_can_override_the_note_template_on_its_base() {
    let t = Tester::new().await;
    t.fake.set_file(
        PROJECT,
        BASE,
        ".gitlab/tollgate/comment.md.j2",
        "Custom: {{ headline }}",
    );
    t.deliver("Merge Request Hook", "u-1", &t.mr_hook("open"))
        .await;
    let notes = t.tollgate_notes();
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0].starts_with(&format!("{COMMENT_MARKER}\nCustom: High risk")),
        "{}",
        notes[0]
    );
}
