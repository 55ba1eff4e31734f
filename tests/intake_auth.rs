//! Authentication and refusal rules of both webhook routes.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use secrecy::SecretString;
use tollgate::intake::verify::github_signature;
use tollgate::intake::{IntakeSecrets, IntakeState};
use tollgate::metrics::Metrics;
use tollgate::sink::MemorySink;

use common::{
    GITHUB_SECRET, GITHUB_SECRET_ROTATED, GITLAB_TOKEN, GITLAB_TOKEN_ROTATED, TestApp,
    github_request, gitlab_request,
};

const PR_BODY: &str = r#"{"action":"opened","number":7,"pull_request":{"number":7,"user":{"login":"alice","id":1},"head":{"ref":"feature","sha":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},"base":{"ref":"main","sha":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"},"labels":[],"title":"Retrain","body":null},"repository":{"id":42,"full_name":"acme/models"}}"#;

fn github_with_signature(signature: Option<&str>, body: &[u8]) -> Request<Body> {
    let mut builder = Request::post("/webhooks/github")
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", "d-1");
    if let Some(signature) = signature {
        builder = builder.header("x-hub-signature-256", signature);
    }
    builder.body(Body::from(body.to_vec())).unwrap()
}

async fn assert_refused(app: &TestApp, request: Request<Body>, expected: StatusCode) {
    let (status, body) = app.send(request).await;
    assert_eq!(status, expected, "{body}");
    assert!(
        app.sink.take().is_empty(),
        "a refused delivery must not be queued"
    );
    if expected == StatusCode::UNAUTHORIZED {
        assert_eq!(
            body, "unauthorized",
            "no detail on why authentication failed"
        );
    }
}

#[tokio::test]
async fn github_accepts_a_valid_signature() {
    let app = TestApp::new();
    let (status, _) = app
        .send(github_request(
            "pull_request",
            "d-1",
            PR_BODY.into(),
            GITHUB_SECRET,
        ))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(app.sink.take().len(), 1);
}

#[tokio::test]
async fn github_accepts_the_rotated_second_secret() {
    let app = TestApp::new();
    let (status, _) = app
        .send(github_request(
            "pull_request",
            "d-1",
            PR_BODY.into(),
            GITHUB_SECRET_ROTATED,
        ))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(app.sink.take().len(), 1);
}

#[tokio::test]
async fn github_refuses_a_wrong_secret() {
    let app = TestApp::new();
    let request = github_request("pull_request", "d-1", PR_BODY.into(), "not-the-secret");
    assert_refused(&app, request, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn github_refuses_a_missing_signature() {
    let app = TestApp::new();
    assert_refused(
        &app,
        github_with_signature(None, PR_BODY.as_bytes()),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let metrics = app.metrics.render();
    assert!(
        metrics.contains(
            r#"tollgate_webhook_signature_rejections_total{forge="github",reason="missing"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn github_refuses_malformed_signature_headers() {
    let app = TestApp::new();
    let valid = github_signature(GITHUB_SECRET, PR_BODY.as_bytes());
    let sha1_style = valid.replace("sha256=", "sha1=");
    let truncated = &valid[..valid.len() - 2];
    let not_hex = format!("sha256={}", "z".repeat(64));
    for header in [
        sha1_style.as_str(),
        truncated,
        not_hex.as_str(),
        "",
        "sha256=",
    ] {
        let request = github_with_signature(Some(header), PR_BODY.as_bytes());
        assert_refused(&app, request, StatusCode::UNAUTHORIZED).await;
    }
}

#[tokio::test]
async fn github_refuses_a_body_altered_by_one_byte() {
    let app = TestApp::new();
    let signature = github_signature(GITHUB_SECRET, PR_BODY.as_bytes());
    let mut altered = PR_BODY.as_bytes().to_vec();
    altered[20] ^= 0x01;
    assert_refused(
        &app,
        github_with_signature(Some(&signature), &altered),
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn github_empty_body_is_refused_signed_or_not() {
    let app = TestApp::new();
    // Signed for another body: the signature does not match.
    let other = github_signature(GITHUB_SECRET, PR_BODY.as_bytes());
    assert_refused(
        &app,
        github_with_signature(Some(&other), b""),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // Correctly signed empty body: authentic, but not JSON.
    let empty = github_signature(GITHUB_SECRET, b"");
    assert_refused(
        &app,
        github_with_signature(Some(&empty), b""),
        StatusCode::BAD_REQUEST,
    )
    .await;
}

#[tokio::test]
async fn github_malformed_json_is_400_after_authentication() {
    let app = TestApp::new();
    let request = github_request(
        "pull_request",
        "d-1",
        b"{\"action\": ".to_vec(),
        GITHUB_SECRET,
    );
    let (status, body) = app.send(request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.starts_with("malformed JSON"), "{body}");
    assert!(app.sink.take().is_empty());
}

#[tokio::test]
async fn github_payload_of_the_wrong_shape_is_400_naming_the_field() {
    let app = TestApp::new();
    let request = github_request(
        "pull_request",
        "d-1",
        br#"{"action":"opened","repository":{"id":1,"full_name":"a/b"}}"#.to_vec(),
        GITHUB_SECRET,
    );
    let (status, body) = app.send(request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("pull_request"), "{body}");
}

#[tokio::test]
async fn github_ping_is_200_and_unused_events_are_202_and_counted() {
    let app = TestApp::new();
    let (status, body) = app
        .send(github_request(
            "ping",
            "d-1",
            br#"{"zen":"hi","hook_id":1}"#.to_vec(),
            GITHUB_SECRET,
        ))
        .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "pong"));
    let (status, body) = app
        .send(github_request(
            "push",
            "d-2",
            br#"{"ref":"refs/heads/main"}"#.to_vec(),
            GITHUB_SECRET,
        ))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(body.starts_with("ignored: "), "{body}");
    assert!(app.sink.take().is_empty());
    let metrics = app.metrics.render();
    for line in [
        r#"tollgate_webhook_deliveries_total{forge="github",event="ping",outcome="ping"} 1"#,
        r#"tollgate_webhook_deliveries_total{forge="github",event="push",outcome="ignored"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing `{line}` in\n{metrics}");
    }
}

#[tokio::test]
async fn github_missing_event_header_is_400() {
    let app = TestApp::new();
    let signature = github_signature(GITHUB_SECRET, PR_BODY.as_bytes());
    let request = Request::post("/webhooks/github")
        .header("x-hub-signature-256", signature)
        .body(Body::from(PR_BODY))
        .unwrap();
    assert_refused(&app, request, StatusCode::BAD_REQUEST).await;
}

const MR_BODY: &str = r#"{"object_kind":"merge_request","user":{"username":"alice","id":1},"project":{"id":5,"path_with_namespace":"acme/models"},"object_attributes":{"iid":3,"action":"open","source_branch":"f","target_branch":"main","author_id":1,"title":"t","description":"d","last_commit":{"id":"cccccccccccccccccccccccccccccccccccccccc"}},"labels":[]}"#;

fn gitlab_with_token(token: Option<&[u8]>) -> Request<Body> {
    let mut builder =
        Request::post("/webhooks/gitlab").header("x-gitlab-event", "Merge Request Hook");
    if let Some(token) = token {
        builder = builder.header("x-gitlab-token", token);
    }
    builder.body(Body::from(MR_BODY)).unwrap()
}

#[tokio::test]
async fn gitlab_accepts_the_token_and_the_rotated_token() {
    let app = TestApp::new();
    for token in [GITLAB_TOKEN, GITLAB_TOKEN_ROTATED] {
        let (status, body) = app
            .send(gitlab_request(
                "Merge Request Hook",
                "u-1",
                MR_BODY.into(),
                token,
            ))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let delivered = app.sink.take();
        assert_eq!(delivered.len(), 1);
        assert_eq!(delivered[0].id.as_ref().map(|d| d.as_str()), Some("u-1"));
    }
}

#[tokio::test]
async fn gitlab_refuses_wrong_missing_empty_and_near_miss_tokens() {
    let app = TestApp::new();
    let prefix = &GITLAB_TOKEN.as_bytes()[..GITLAB_TOKEN.len() - 1];
    let longer = format!("{GITLAB_TOKEN}x");
    let upper = GITLAB_TOKEN.to_ascii_uppercase();
    for token in [
        None,
        Some(b"".as_slice()),
        Some(b"wrong".as_slice()),
        Some(prefix),
        Some(longer.as_bytes()),
        Some(upper.as_bytes()),
    ] {
        assert_refused(&app, gitlab_with_token(token), StatusCode::UNAUTHORIZED).await;
    }
}

#[tokio::test]
async fn gitlab_malformed_json_is_400() {
    let app = TestApp::new();
    let request = gitlab_request(
        "Merge Request Hook",
        "u-1",
        b"not json".to_vec(),
        GITLAB_TOKEN,
    );
    assert_refused(&app, request, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn a_forge_without_secrets_is_not_enabled() {
    let sink = std::sync::Arc::new(MemorySink::default());
    let metrics = Metrics::new();
    let secrets = IntakeSecrets {
        github: vec![SecretString::from("only-github")],
        gitlab: vec![],
    };
    let router = tollgate::server::router(
        IntakeState::new(secrets, metrics.clone(), sink.clone()),
        metrics,
    );
    let app = TestApp {
        router,
        sink,
        metrics: Metrics::new(),
    };
    // Even a request with some token is refused: no token is configured to compare with.
    let request = gitlab_request("Merge Request Hook", "u-1", MR_BODY.into(), "");
    assert_refused(&app, request, StatusCode::NOT_FOUND).await;
}
