//! The intake's half of durability: a delivery is answered `202` only once its job is
//! committed to the store, a redelivery adds nothing, and a store that cannot be written makes
//! the intake answer `503` (GitHub shows the failed delivery for a redelivery) instead of
//! acknowledging an event it would lose.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use secrecy::SecretString;
use serde_json::json;
use tollgate::config::JobSettings;
use tollgate::forge::github::api::{Auth, GithubApi};
use tollgate::forge::github::worker::{GithubSink, GithubWorker, WorkerOptions};
use tollgate::intake::{IntakeSecrets, IntakeState};
use tollgate::metrics::Metrics;
use tollgate::queue::JobQueue;

use common::{GITHUB_SECRET, TestApp, github_request};

struct Intake {
    app: TestApp,
    queue: JobQueue,
    _db: tempfile::TempDir,
}

/// An intake-only process (no claim loops): what is in the store is exactly what intake wrote.
async fn intake_only() -> Intake {
    let db = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", db.path().join("tollgate.db").display());
    let ledger = tollgate::ledger::store::Ledger::open(&url).await.unwrap();
    let queue = JobQueue::new(ledger.pool().clone());
    let api = GithubApi::new(
        &"http://127.0.0.1:9".parse().unwrap(),
        Auth::Token(SecretString::from("unused")),
    )
    .unwrap();
    let metrics = Metrics::new();
    let worker = GithubWorker::start(
        api,
        WorkerOptions {
            jobs: JobSettings {
                workers: 0,
                ..JobSettings::default()
            },
            metrics: metrics.clone(),
            ..WorkerOptions::new("tollgate", queue.clone())
        },
    );
    let secrets = IntakeSecrets {
        github: vec![SecretString::from(GITHUB_SECRET)],
        gitlab: vec![],
    };
    let state = IntakeState::new(secrets, metrics.clone(), Arc::new(GithubSink(worker)));
    let app = TestApp {
        router: tollgate::server::router(state, metrics.clone()),
        sink: Arc::default(),
        metrics,
    };
    Intake {
        app,
        queue,
        _db: db,
    }
}

fn opened(number: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": "opened", "number": number,
        "pull_request": {"number": number, "user": {"login": "alice"},
            "head": {"ref": "f", "sha": "a".repeat(40)}, "base": {"ref": "main", "sha": "b".repeat(40)},
            "labels": [], "title": "t", "body": ""},
        "repository": {"id": 1, "full_name": "acme/model"},
    }))
    .unwrap()
}

#[tokio::test]
async fn a_202_means_the_job_is_in_the_store() {
    let intake = intake_only().await;
    for n in 1..=3u64 {
        let (status, _) = intake
            .app
            .send(github_request(
                "pull_request",
                &format!("d-{n}"),
                opened(n),
                GITHUB_SECRET,
            ))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        // Read right after the answer: the row was committed before it.
        let jobs = intake.queue.list(true, 10).await.unwrap();
        assert_eq!(jobs.len() as u64, n);
        assert_eq!(jobs[0].delivery_id, format!("d-{n}"));
        assert_eq!(jobs[0].change_key, format!("github:acme/model#{n}"));
        assert_eq!(jobs[0].state, "queued");
    }
    // A redelivery is acknowledged and adds nothing.
    let (status, _) = intake
        .app
        .send(github_request(
            "pull_request",
            "d-2",
            opened(2),
            GITHUB_SECRET,
        ))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(intake.queue.depth().await.unwrap(), 3);

    // The queue is on /metrics.
    intake.app.metrics.refresh().await;
    let metrics = intake.app.metrics.render();
    assert!(
        metrics.contains("tollgate_queue_jobs{state=\"queued\"} 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn concurrent_deliveries_share_commits_and_each_is_written_once() {
    let intake = intake_only().await;
    let sends = (0..200u64).map(|n| {
        let router = intake.app.router.clone();
        async move {
            use tower::ServiceExt as _;
            let request = github_request(
                "pull_request",
                &format!("burst-{n}"),
                opened(n % 20),
                GITHUB_SECRET,
            );
            router.oneshot(request).await.unwrap().status()
        }
    });
    let statuses = futures_util::future::join_all(sends).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::ACCEPTED));
    assert_eq!(intake.queue.depth().await.unwrap(), 200);
    let metrics = intake.app.metrics.render();
    let commits: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tollgate_queue_commit_batch_deliveries_count "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the batch histogram is exported");
    assert!(
        commits < 200.0,
        "200 concurrent deliveries took {commits} commits: no group commit"
    );
}

#[tokio::test]
async fn a_store_that_cannot_be_written_is_never_acknowledged() {
    let intake = intake_only().await;
    // The job table is gone: every write fails.
    sqlx::query("DROP TABLE jobs")
        .execute(intake.queue.pool())
        .await
        .unwrap();
    let (status, body) = intake
        .app
        .send(github_request(
            "pull_request",
            "lost",
            opened(1),
            GITHUB_SECRET,
        ))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("deliver it again"), "{body}");
}
