//! CPU cost of intake per delivery, on GitHub's own 28 KB `pull_request/opened` example:
//! signature check, parse, and the whole router (request id, span, metrics, sink) with a
//! sink that keeps nothing, side by side with a router that only reads the body.
//!
//! `cargo bench --bench intake` (needs `$TOLLGATE_EXTERNAL_FIXTURES`, default
//! `../shared/fixtures/external`). The HTTP-level figures come from
//! `scripts/loadtest-intake.sh`.

use std::hint::black_box;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::Request;
use criterion::{Criterion, criterion_group, criterion_main};
use secrecy::SecretString;
use tollgate::event::Delivery;
use tollgate::intake::verify::{github_signature, verify_github_signature};
use tollgate::intake::{IntakeSecrets, IntakeState};
use tollgate::metrics::Metrics;
use tollgate::sink::{AcceptFuture, EventSink};
use tower::ServiceExt as _;

const SECRET: &str = "bench-secret";

struct Discard;

impl EventSink for Discard {
    fn accept(&self, delivery: Delivery) -> AcceptFuture<'_> {
        black_box(delivery);
        Box::pin(std::future::ready(Ok(())))
    }
}

fn payload() -> Bytes {
    let dir = std::env::var_os("TOLLGATE_EXTERNAL_FIXTURES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/external")
        });
    let path = dir.join("github/pull_request/opened.payload.json");
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn request(body: &Bytes, signature: &str) -> Request<Body> {
    Request::post("/webhooks/github")
        .header("content-type", "application/json")
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", "bench-1")
        .header("x-hub-signature-256", signature)
        .body(Body::from(body.clone()))
        .unwrap()
}

fn intake(c: &mut Criterion) {
    let body = payload();
    let signature = github_signature(SECRET, &body);
    let secrets = vec![SecretString::from(SECRET)];
    c.bench_function("verify signature (28 KB)", |b| {
        b.iter(|| {
            verify_github_signature(Some(black_box(signature.as_bytes())), &body, &secrets).unwrap()
        })
    });
    c.bench_function("parse pull_request.opened (28 KB)", |b| {
        b.iter(|| tollgate::intake::github::parse("pull_request", black_box(&body)).unwrap())
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let metrics = Metrics::new();
    let state = IntakeState::new(
        IntakeSecrets {
            github: secrets.clone(),
            gitlab: vec![],
        },
        metrics.clone(),
        Arc::new(Discard),
    );
    let app = tollgate::server::router(state, metrics);
    c.bench_function("router: signed delivery to a discarding sink", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = app
                .clone()
                .oneshot(request(&body, &signature))
                .await
                .unwrap();
            assert_eq!(response.status(), 202);
        })
    });
    let bare = axum::Router::new().route(
        "/webhooks/github",
        axum::routing::post(|body: Bytes| async move {
            black_box(body.len());
            axum::http::StatusCode::ACCEPTED
        }),
    );
    c.bench_function("bare router reading the body", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = bare
                .clone()
                .oneshot(request(&body, &signature))
                .await
                .unwrap();
            assert_eq!(response.status(), 202);
        })
    });
}

criterion_group!(benches, intake);
criterion_main!(benches);
