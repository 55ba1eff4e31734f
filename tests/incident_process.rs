//! The post-incident review's deadline inside real `tollgate serve` processes (issue 8), which
//! the in-process tests in `incidents.rs` cannot show: that `serve` runs a scheduler at all,
//! on the configured poll interval, on the system clock, against the shared store. A pull
//! request is driven over HTTP through the real intake (opened, bypassed by on-call, merged)
//! until its review issue is opened; the processes' clock is the system's, so the review's
//! 48-hour deadline is moved into the past in the store to stand in for time passing. Then the
//! one reminder must come, from one of two replicas on PostgreSQL, and from a process started
//! after the one that scheduled it was killed; and closing the issue must record the review.

mod common;

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use serde_json::{Value, json};
use sqlx::Row as _;
use tollgate::incident::store::{Incidents, Review, ReviewState};
use tollgate::incident::{OVERDUE_LABEL, REMINDER_MARKER, REVIEW_DUE};
use tollgate::ledger::record::RecordKind;
use tollgate::ledger::store::Ledger;
use tollgate::queue::JobQueue;

use common::fake_github::{CommitSpec, FakeGitHub, FileChange, PrSpec};
use common::serve::{PgDatabase, Serve, deliver};

use common::fraud_repo::{BASE, REPO};

const HEAD: &str = "0001hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh";
const CHECK: &str = "tollgate";
const APP_SLUG: &str = "tollgate-incident";
/// How the fake shows the App's comments' author.
const BOT: &str = "tollgate-incident[bot]";
const APP_ID: u64 = 4242;
/// The pull request merged under the bypass.
const PR: u64 = 1;
const TICKET: &str = "INC-7001";
const BODY: &str =
    "Fraud model v2.\n\n## Rollback plan\nRevert this PR; v1 stays in the registry.\n";
/// The served processes' scheduler poll interval, in seconds.
const POLL_SECS: &str = "1";
/// A few poll intervals: long enough for every scheduler to have ticked several times.
const QUIET: Duration = Duration::from_secs(3);
/// Longest wait for one step of the story (a delivery acted on, a reminder posted).
const STEP_WITHIN: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// The repository, its pull request, and the deliveries GitHub sends about them
// ---------------------------------------------------------------------------------------------

/// A fake GitHub App with worked example 1's repository (its policy, whose `[emergency]` lets
/// `@acme/ml-oncall` bypass) and PR #1, a high-risk model change by alice, open.
async fn fake_repo() -> FakeGitHub {
    let fake = FakeGitHub::start().await;
    fake.set_app(APP_SLUG, APP_ID);
    common::fraud_repo::seed_example(&fake, &["lena"]);
    fake.set_file(REPO, BASE, "models/fraud/v1/model.onnx", "weights v1");
    fake.open_pr(
        REPO,
        PrSpec {
            number: PR,
            author: "alice".to_owned(),
            title: "Fraud model v2".to_owned(),
            body: BODY.to_owned(),
            base_sha: BASE.to_owned(),
            head_ref: "feature-1".to_owned(),
            commits: vec![CommitSpec::new(
                HEAD,
                "alice",
                vec![
                    FileChange::modified("models/fraud/v1/model.onnx", "weights v2"),
                    FileChange::modified("eval/metrics.json", r#"{"auc": 0.93}"#),
                ],
            )],
            ..PrSpec::default()
        },
    );
    fake
}

fn repository() -> Value {
    json!({"id": 99, "full_name": REPO})
}

fn installation(fake: &FakeGitHub) -> Value {
    json!({ "id": fake.installation_id() })
}

/// A `pull_request` delivery for PR #1 as the fake has it now.
fn pr_payload(fake: &FakeGitHub, action: &str) -> Value {
    let pull = fake
        .pulls(REPO)
        .into_iter()
        .find(|p| p.number == PR)
        .unwrap();
    json!({
        "action": action,
        "number": PR,
        "pull_request": {
            "number": PR, "user": {"login": pull.author, "id": 1},
            "head": {"ref": pull.head_ref, "sha": pull.head_sha},
            "base": {"ref": pull.base_ref, "sha": pull.base_sha},
            "labels": [], "title": pull.title, "body": pull.body,
            "merged": pull.merged,
        },
        "repository": repository(),
        "installation": installation(fake),
    })
}

/// `who` writes `text` on PR #1; returns the `issue_comment` delivery.
fn comment_payload(fake: &FakeGitHub, who: &str, text: &str) -> Value {
    let id = fake.add_comment(REPO, PR, who, text);
    json!({
        "action": "created",
        "issue": {"number": PR, "pull_request": {"url": format!("{}/repos/{REPO}/pulls/{PR}", fake.url())}},
        "comment": {"id": id, "user": {"login": who, "id": 7}, "body": text},
        "repository": repository(),
        "installation": installation(fake),
    })
}

/// `by` closes issue `number`; returns the `issues` delivery.
fn issue_closed_payload(fake: &FakeGitHub, number: u64, by: &str) -> Value {
    fake.close_issue(REPO, number, by);
    json!({
        "action": "closed",
        "issue": {"number": number, "state": "closed"},
        "sender": {"login": by, "id": 11},
        "repository": repository(),
        "installation": installation(fake),
    })
}

/// Sends a signed delivery to `serve` and asserts it was accepted.
async fn send(serve: &Serve, event: &str, delivery: &str, payload: &Value) {
    let client = reqwest::Client::new();
    let status = deliver(&client, &serve.webhook_url(), event, delivery, payload).await;
    assert_eq!(status, 202, "{event} {delivery} was not accepted");
}

fn conclusion(fake: &FakeGitHub) -> Option<String> {
    fake.check_runs(REPO)
        .into_iter()
        .rfind(|r| r.head_sha == HEAD && r.name == CHECK)
        .and_then(|r| r.conclusion)
}

/// The review issue opened for PR #1, if any (and that there is at most one).
fn review_issue(fake: &FakeGitHub) -> Option<u64> {
    let issues: Vec<_> = fake
        .issues(REPO)
        .into_iter()
        .filter(|i| i.title.contains(&format!("#{PR} ")))
        .collect();
    assert!(issues.len() <= 1, "one review per change: {issues:#?}");
    issues.first().map(|i| i.number)
}

/// tollgate's overdue reminders on `issue`.
fn reminders(fake: &FakeGitHub, issue: u64) -> usize {
    fake.comments(REPO, issue)
        .iter()
        .filter(|c| c.author == BOT && c.body.contains(REMINDER_MARKER))
        .count()
}

fn labelled_overdue(fake: &FakeGitHub, issue: u64) -> bool {
    fake.issues(REPO)
        .iter()
        .any(|i| i.number == issue && i.labels.iter().any(|l| l == OVERDUE_LABEL))
}

// ---------------------------------------------------------------------------------------------
// The shared store, as the test reads and adjusts it
// ---------------------------------------------------------------------------------------------

/// The deadline kind of a GitHub review falling due.
fn review_due_kind() -> String {
    format!("github:{REVIEW_DUE}")
}

/// The store the processes share, opened by the test (after a process has set it up).
struct Store {
    ledger: Ledger,
}

impl Store {
    async fn open(url: &str) -> Store {
        Store {
            ledger: Ledger::open(url).await.unwrap(),
        }
    }

    /// The state (`pending`, `done`) of each review deadline.
    async fn review_deadlines(&self) -> Vec<String> {
        sqlx::query("SELECT state FROM deadlines WHERE kind = $1")
            .bind(review_due_kind())
            .fetch_all(self.ledger.pool())
            .await
            .unwrap()
            .iter()
            .map(|row| row.try_get("state").unwrap())
            .collect()
    }

    async fn queue_depth(&self) -> i64 {
        JobQueue::new(self.ledger.pool().clone())
            .depth()
            .await
            .unwrap()
    }

    async fn review(&self) -> Review {
        let all = Incidents::new(self.ledger.pool().clone())
            .reviews(true)
            .await
            .unwrap();
        assert_eq!(all.len(), 1, "{all:#?}");
        all.into_iter().next().unwrap()
    }

    /// Stands in for the 48 hours passing: the processes read the system clock, so instead of
    /// moving it, the review's deadline (and the review's own due time, so it counts as
    /// overdue) is moved to a minute ago.
    async fn make_review_due(&self) {
        let past_ms = chrono::Utc::now().timestamp_millis() - 60_000;
        let moved = sqlx::query("UPDATE deadlines SET due_ms = $1 WHERE kind = $2")
            .bind(past_ms)
            .bind(review_due_kind())
            .execute(self.ledger.pool())
            .await
            .unwrap();
        assert_eq!(moved.rows_affected(), 1, "one review deadline");
        let moved = sqlx::query(
            "UPDATE incident_reviews SET due_ms = $1 WHERE repo = $2 AND change_number = $3",
        )
        .bind(past_ms)
        .bind(REPO)
        .bind(PR as i64)
        .execute(self.ledger.pool())
        .await
        .unwrap();
        assert_eq!(moved.rows_affected(), 1, "one review");
    }

    /// PR #1's signed records of `kind`, as (actor, detail).
    async fn records(&self, kind: RecordKind) -> Vec<(Option<String>, String)> {
        self.ledger
            .change_records(REPO, PR)
            .await
            .unwrap()
            .iter()
            .filter_map(|r| r.signed())
            .filter(|s| s.record.kind == kind)
            .map(|s| (s.record.actor.clone(), s.record.detail.clone()))
            .collect()
    }

    async fn close(self) {
        self.ledger.pool().close().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Waiting for the processes
// ---------------------------------------------------------------------------------------------

/// Log lines at ERROR (or WARN, with `warnings`) of every process.
fn logged_problems(servers: &[&Serve], warnings: bool) -> Vec<String> {
    servers
        .iter()
        .flat_map(|s| s.log.lock().unwrap().clone())
        .filter(|line| {
            line.contains("\"level\":\"ERROR\"")
                || (warnings && line.contains("\"level\":\"WARN\""))
        })
        .collect()
}

/// Polls `done` until it holds; fails after `within`, showing the processes' warnings.
async fn eventually<F, Fut>(what: &str, within: Duration, servers: &[&Serve], mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !done().await {
        assert!(
            started.elapsed() < within,
            "{what}: not within {within:?}\n{}",
            logged_problems(servers, true).join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Drives PR #1 through the real flow: `opened` to `to[0]`, olga's bypass to `to[1]`, the
/// merge to `to[2]`; waits until its review issue is opened, its deadline is in the store and
/// every delivery is acted on. Returns the issue's number.
async fn bypass_and_merge(fake: &FakeGitHub, store: &Store, to: [&Serve; 3]) -> u64 {
    send(
        to[0],
        "pull_request",
        "pr-opened",
        &pr_payload(fake, "opened"),
    )
    .await;
    eventually("the change is evaluated", STEP_WITHIN, &to, || async {
        conclusion(fake).is_some()
    })
    .await;
    assert_ne!(
        conclusion(fake).as_deref(),
        Some("success"),
        "not signed off"
    );
    let bypass = comment_payload(
        fake,
        "olga",
        &format!("/tollgate bypass {TICKET} hotfix for the scoring outage"),
    );
    send(to[1], "issue_comment", "bypass", &bypass).await;
    eventually("the bypass is honoured", STEP_WITHIN, &to, || async {
        conclusion(fake).as_deref() == Some("success")
    })
    .await;

    fake.merge_pr(REPO, PR, "olga");
    send(
        to[2],
        "pull_request",
        "pr-merged",
        &pr_payload(fake, "closed"),
    )
    .await;
    eventually("the review is opened", STEP_WITHIN, &to, || async {
        review_issue(fake).is_some()
            && store.review_deadlines().await == ["pending"]
            && store.queue_depth().await == 0
    })
    .await;
    review_issue(fake).unwrap()
}

/// Waits until the reminder is posted and the deadline done, then lets every process poll a
/// few more times and checks that nothing more was posted.
async fn expect_one_reminder(fake: &FakeGitHub, store: &Store, issue: u64, servers: &[&Serve]) {
    eventually("the overdue reminder", STEP_WITHIN, servers, || async {
        reminders(fake, issue) >= 1
            && labelled_overdue(fake, issue)
            && store.review_deadlines().await == ["done"]
    })
    .await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        reminders(fake, issue),
        1,
        "one reminder, however often polled"
    );
    assert!(labelled_overdue(fake, issue));
    assert_eq!(store.review_deadlines().await, ["done"]);
    let review = store.review().await;
    assert_eq!(review.state, ReviewState::Open);
    assert!(review.reminded_ms.is_some(), "{review:#?}");
    assert_eq!(
        store.records(RecordKind::ReviewOverdue).await.len(),
        1,
        "the overdue review is on record once"
    );
    assert!(
        logged_problems(servers, false).is_empty(),
        "{:#?}",
        logged_problems(servers, false)
    );
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("tollgate.db").display())
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// Two `serve` processes on one PostgreSQL database, both running their scheduler every
/// second: the overdue review gets exactly one reminder and the `overdue` label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_processes_on_postgresql_post_one_reminder_for_an_overdue_review() {
    let Some(db) = PgDatabase::create("two_serve_processes_on_postgresql_post_one_reminder").await
    else {
        return;
    };
    let outcome = std::panic::AssertUnwindSafe(two_replicas(&db.url))
        .catch_unwind()
        .await;
    db.drop_now().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn two_replicas(url: &str) {
    let started = Instant::now();
    let keys = tempfile::tempdir().unwrap();
    let key = tollgate::ledger::keys::generate();
    let (private, _) = tollgate::ledger::keys::write_pair(keys.path(), &key).unwrap();
    let fake = fake_repo().await;
    let env = [
        ("TOLLGATE_DATABASE_URL", url),
        ("TOLLGATE_SIGNING_KEY_FILE", private.to_str().unwrap()),
        ("TOLLGATE_SCHEDULER_POLL_SECS", POLL_SECS),
    ];
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let a = Serve::start(dirs[0].path(), &fake.url(), &env);
    let b = Serve::start(dirs[1].path(), &fake.url(), &env);
    let store = Store::open(url).await;

    let issue = bypass_and_merge(&fake, &store, [&a, &b, &a]).await;
    // Not due yet: both schedulers poll and leave it.
    tokio::time::sleep(QUIET).await;
    assert_eq!(reminders(&fake, issue), 0, "not before it is due");
    assert_eq!(store.review_deadlines().await, ["pending"]);

    store.make_review_due().await;
    expect_one_reminder(&fake, &store, issue, &[&a, &b]).await;

    drop((a, b));
    store.close().await;
    fake.assert_requests_match_openapi();
    eprintln!("took {:?}", started.elapsed());
}

/// A review deadline scheduled by a process that was then killed is acted on by the next
/// process started on the same store, once.
#[tokio::test]
async fn a_review_deadline_outlives_a_killed_process_and_is_reminded_once_after_restart() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let fake = fake_repo().await;
    let env = [
        ("TOLLGATE_DATABASE_URL", url.as_str()),
        ("TOLLGATE_SCHEDULER_POLL_SECS", POLL_SECS),
    ];
    let mut first = Serve::start(dir.path(), &fake.url(), &env);
    let store = Store::open(&url).await;
    let issue = bypass_and_merge(&fake, &store, [&first, &first, &first]).await;
    first.kill9();
    assert_eq!(reminders(&fake, issue), 0);

    store.make_review_due().await;
    let second = Serve::start(dir.path(), &fake.url(), &env);
    expect_one_reminder(&fake, &store, issue, &[&second]).await;

    drop(second);
    store.close().await;
    fake.assert_requests_match_openapi();
    eprintln!("took {:?}", started.elapsed());
}

/// Closing the review issue (an `issues.closed` delivery) closes the review in the store, who
/// closed it included, cancels its deadline and puts a `review_closed` record on the ledger.
#[tokio::test]
async fn closing_the_review_issue_records_the_review_closed() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let fake = fake_repo().await;
    let env = [
        ("TOLLGATE_DATABASE_URL", url.as_str()),
        ("TOLLGATE_SCHEDULER_POLL_SECS", POLL_SECS),
    ];
    let serve = Serve::start(dir.path(), &fake.url(), &env);
    let store = Store::open(&url).await;
    let issue = bypass_and_merge(&fake, &store, [&serve, &serve, &serve]).await;
    assert_eq!(store.review().await.state, ReviewState::Open);

    let closed = issue_closed_payload(&fake, issue, "lena");
    send(&serve, "issues", "review-closed", &closed).await;
    eventually("the review is closed", STEP_WITHIN, &[&serve], || async {
        store.review().await.state == ReviewState::Closed
    })
    .await;

    let review = store.review().await;
    assert_eq!(review.issue, Some(issue));
    assert_eq!(review.closed_by.as_deref(), Some("lena"));
    assert!(review.closed_ms.is_some(), "{review:#?}");
    assert_eq!(
        store.review_deadlines().await,
        ["done"],
        "the reminder is cancelled"
    );
    let closed = store.records(RecordKind::ReviewClosed).await;
    assert_eq!(closed.len(), 1, "{closed:#?}");
    let (actor, detail) = &closed[0];
    assert_eq!(actor.as_deref(), Some("lena"));
    assert!(detail.contains(&format!("#{issue}")), "{detail}");
    assert!(detail.contains(TICKET), "{detail}");
    assert_eq!(reminders(&fake, issue), 0);
    assert!(logged_problems(&[&serve], false).is_empty());

    drop(serve);
    store.close().await;
    fake.assert_requests_match_openapi();
    eprintln!("took {:?}", started.elapsed());
}
