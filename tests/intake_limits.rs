//! Bodies over GitHub's 25 MiB cap are refused without being buffered whole.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use tollgate::intake::MAX_BODY_BYTES;

use common::TestApp;

const CHUNK: usize = 1024 * 1024;

/// A streamed body of `total` bytes that counts how much of it the server pulled.
fn counting_body(total: usize, pulled: Arc<AtomicUsize>) -> Body {
    let chunks = (0..total.div_ceil(CHUNK)).map(move |_| {
        pulled.fetch_add(CHUNK, Ordering::SeqCst);
        Ok::<_, std::io::Error>(Bytes::from(vec![b' '; CHUNK]))
    });
    Body::from_stream(futures_util::stream::iter(chunks))
}

#[tokio::test]
async fn a_streamed_body_over_the_cap_is_cut_off_at_the_cap() {
    let app = TestApp::new();
    let pulled = Arc::new(AtomicUsize::new(0));
    let total = 40 * CHUNK;
    let request = Request::post("/webhooks/github")
        .header("x-github-event", "pull_request")
        .header("x-hub-signature-256", format!("sha256={}", "0".repeat(64)))
        .body(counting_body(total, pulled.clone()))
        .unwrap();
    let (status, _) = app.send(request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let read = pulled.load(Ordering::SeqCst);
    assert!(
        read <= MAX_BODY_BYTES + CHUNK,
        "read {read} bytes of a {total}-byte body; reading must stop at the cap"
    );
    assert!(app.sink.take().is_empty());
}

#[tokio::test]
async fn a_declared_length_over_the_cap_is_refused_before_reading() {
    let app = TestApp::new();
    let pulled = Arc::new(AtomicUsize::new(0));
    let request = Request::post("/webhooks/gitlab")
        .header("x-gitlab-event", "Merge Request Hook")
        .header("x-gitlab-token", common::GITLAB_TOKEN)
        .header("content-length", (MAX_BODY_BYTES + 1).to_string())
        .body(counting_body(MAX_BODY_BYTES + 1, pulled.clone()))
        .unwrap();
    let (status, _) = app.send(request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(pulled.load(Ordering::SeqCst), 0, "nothing may be read");
}

#[tokio::test]
async fn a_body_just_under_the_cap_is_read_and_authenticated() {
    // A valid signature over a body of exactly the cap: accepted as far as size goes (it is
    // not JSON, so it ends as 400, not 413).
    let app = TestApp::new();
    let body = vec![b' '; MAX_BODY_BYTES];
    let request = common::github_request("pull_request", "big", body, common::GITHUB_SECRET);
    let (status, body) = app.send(request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}
