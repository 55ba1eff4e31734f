//! Shared test harness: an in-process tollgate router with a recording sink, and helpers to
//! send signed deliveries to it.

#![allow(dead_code)] // each test crate uses a different subset

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use secrecy::SecretString;
use tollgate::intake::verify::github_signature;
use tollgate::intake::{IntakeSecrets, IntakeState};
use tollgate::metrics::Metrics;
use tollgate::server::router;
use tollgate::sink::MemorySink;
use tower::ServiceExt;

/// The GitHub webhook secret the test app accepts first.
pub const GITHUB_SECRET: &str = "test-github-secret";
/// A second, rotated GitHub secret the app also accepts.
pub const GITHUB_SECRET_ROTATED: &str = "test-github-secret-next";
/// The GitLab webhook token the app accepts first.
pub const GITLAB_TOKEN: &str = "test-gitlab-token";
/// A second, rotated GitLab token.
pub const GITLAB_TOKEN_ROTATED: &str = "test-gitlab-token-next";

/// A router wired to a recording sink.
pub struct TestApp {
    pub router: Router,
    pub sink: Arc<MemorySink>,
    pub metrics: Metrics,
}

impl TestApp {
    pub fn new() -> Self {
        let secrets = IntakeSecrets {
            github: vec![
                SecretString::from(GITHUB_SECRET),
                SecretString::from(GITHUB_SECRET_ROTATED),
            ],
            gitlab: vec![
                SecretString::from(GITLAB_TOKEN),
                SecretString::from(GITLAB_TOKEN_ROTATED),
            ],
        };
        let sink = Arc::new(MemorySink::default());
        let metrics = Metrics::new();
        let state = IntakeState::new(secrets, metrics.clone(), sink.clone());
        TestApp {
            router: router(state, metrics.clone()),
            sink,
            metrics,
        }
    }

    /// Sends one request and returns status and body text.
    pub async fn send(&self, request: Request<Body>) -> (StatusCode, String) {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("response body")
            .to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// A GitHub delivery signed with `secret`.
pub fn github_request(event: &str, delivery: &str, body: Vec<u8>, secret: &str) -> Request<Body> {
    let signature = github_signature(secret, &body);
    Request::post("/webhooks/github")
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", signature)
        .body(Body::from(body))
        .expect("valid request")
}

/// A GitLab delivery carrying `token`.
pub fn gitlab_request(event: &str, uuid: &str, body: Vec<u8>, token: &str) -> Request<Body> {
    Request::post("/webhooks/gitlab")
        .header("content-type", "application/json")
        .header("x-gitlab-event", event)
        .header("x-gitlab-event-uuid", uuid)
        .header("x-gitlab-token", token)
        .body(Body::from(body))
        .expect("valid request")
}

/// The external fixtures folder: `$TOLLGATE_EXTERNAL_FIXTURES`, else `../shared/fixtures/external`.
/// Returns `None` (after saying so) when it is missing outside CI; panics when it is missing
/// under `CI=true`, so CI can never pass without having run the fixtures.
pub fn external_fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("TOLLGATE_EXTERNAL_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/external")
        });
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "external fixtures folder {} is missing; CI must set TOLLGATE_EXTERNAL_FIXTURES",
            dir.display()
        );
    }
    eprintln!(
        "skipped: external fixtures folder {} not found",
        dir.display()
    );
    None
}

/// Every `*.json` file in each sub-folder of `dir`, as (folder name, path), sorted.
pub fn payload_files(dir: &std::path::Path) -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    for folder in std::fs::read_dir(dir).expect("readable fixtures folder") {
        let folder = folder.expect("dir entry").path();
        if !folder.is_dir() {
            continue;
        }
        let name = folder.file_name().unwrap().to_string_lossy().into_owned();
        for file in std::fs::read_dir(&folder).expect("readable event folder") {
            let file = file.expect("dir entry").path();
            if file.extension().is_some_and(|e| e == "json") {
                files.push((name.clone(), file));
            }
        }
    }
    files.sort();
    files
}
/// A change's signed records in chain order, as (kind, actor, detail).
pub async fn record_summaries(
    ledger: &tollgate::ledger::store::Ledger,
    repo: &str,
    number: u64,
) -> Vec<(tollgate::ledger::record::RecordKind, Option<String>, String)> {
    ledger
        .change_records(repo, number)
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

/// Makes the store behind `pool` (SQLite) refuse every new ledger record, as a full disk or a
/// read-only file would: a trigger aborts each insert with `injected: the disk is full`.
pub async fn ledger_refuses_writes(pool: &sqlx::AnyPool) {
    sqlx::query(
        "CREATE TRIGGER test_ledger_down BEFORE INSERT ON ledger_records \
         BEGIN SELECT RAISE(ABORT, 'injected: the disk is full'); END",
    )
    .execute(pool)
    .await
    .unwrap();
}

/// Undoes [`ledger_refuses_writes`].
pub async fn ledger_takes_writes(pool: &sqlx::AnyPool) {
    sqlx::query("DROP TRIGGER test_ledger_down")
        .execute(pool)
        .await
        .unwrap();
}

/// Asserts that the queue holds one job, parked as `failed` after at least one retry, whose
/// error names the refusing ledger of [`ledger_refuses_writes`] and does not blame `forge`.
pub async fn assert_parked_for_the_ledger(queue: &tollgate::queue::JobQueue, forge: &str) {
    let jobs = queue.list(true, 10).await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    assert_eq!(jobs[0].state, "failed", "{jobs:#?}");
    assert!(jobs[0].attempts >= 2, "retried before giving up: {jobs:#?}");
    let error = jobs[0].last_error.as_deref().unwrap_or("");
    assert!(
        error.contains("the audit ledger could not be used")
            && error.contains("injected: the disk is full"),
        "{error}"
    );
    assert!(!error.contains(forge), "not blamed on {forge}: {error}");
}

pub mod fake_github;
pub mod fake_gitlab;
pub mod fraud_repo;
pub mod github_world;
pub mod serve;
