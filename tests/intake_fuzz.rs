//! Random bodies and headers thrown at both webhook routes: only 2xx and 4xx answers, never
//! a panic or a 5xx. Correctly signed cases are included so the parsers are exercised, not
//! just the signature check.

mod common;

use axum::body::Body;
use axum::http::Request;
use proptest::prelude::*;
use serde_json::Value;
use tollgate::intake::verify::github_signature;

use common::{GITHUB_SECRET, GITLAB_TOKEN, TestApp};

/// How a case authenticates.
#[derive(Debug, Clone)]
enum Auth {
    Valid,
    Missing,
    Garbage(String),
}

fn auth() -> impl Strategy<Value = Auth> {
    prop_oneof![
        6 => Just(Auth::Valid),
        1 => Just(Auth::Missing),
        1 => "[ -~]{0,80}".prop_map(Auth::Garbage),
    ]
}

fn github_event() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "pull_request", "pull_request_review", "issue_comment", "check_run",
            "check_suite", "ping", "push", "installation",
        ])
        .prop_map(str::to_owned),
        1 => "[a-z_]{0,20}",
    ]
}

fn gitlab_event() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "Merge Request Hook", "Note Hook", "Push Hook", "System Hook", "Pipeline Hook",
        ])
        .prop_map(str::to_owned),
        1 => "[A-Za-z ]{0,20}",
    ]
}

/// Arbitrary JSON values, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "action",
                    "number",
                    "pull_request",
                    "head",
                    "base",
                    "sha",
                    "ref",
                    "user",
                    "login",
                    "id",
                    "repository",
                    "full_name",
                    "review",
                    "state",
                    "issue",
                    "comment",
                    "body",
                    "object_attributes",
                    "iid",
                    "project",
                    "path_with_namespace",
                    "last_commit",
                    "labels",
                    "name",
                    "title",
                    "noteable_type",
                    "merge_request",
                    "check_run",
                    "head_sha",
                    "changes",
                ])
                .prop_map(str::to_owned),
                inner,
                0..8,
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// A value to put in place of a field: mostly the simple type flips and edge values that
/// break a parser, sometimes arbitrary JSON.
fn replacement() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(Value::from("")),
        Just(Value::from("x")),
        Just(Value::from(0)),
        Just(Value::from(-1)),
        Just(Value::from(u64::MAX)),
        Just(Value::from(true)),
        Just(Value::Array(vec![])),
        Just(serde_json::json!({})),
        json_value(),
    ]
}

/// A body: raw bytes, arbitrary JSON, or a real-looking payload with one field replaced.
fn body(template: fn() -> Value) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..512),
        1 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        6 => prop::collection::vec(
            (any::<prop::sample::Index>(), prop::option::of(replacement())),
            1..4,
        )
        .prop_map(move |mutations| {
            let payload = mutations
                .into_iter()
                .fold(template(), |payload, (slot, value)| mutate(payload, slot, value));
            serde_json::to_vec(&payload).unwrap()
        }),
    ]
}

/// Every JSON pointer inside `value`, parents before children.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let path = format!("{at}/{key}");
                out.push(path.clone());
                pointers(child, path, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let path = format!("{at}/{i}");
                out.push(path.clone());
                pointers(child, path, out);
            }
        }
        _ => {}
    }
}

/// Replaces (or, with `None`, removes) one field anywhere in a real-looking payload, so that
/// every field the parsers read is at some point missing or of the wrong type.
fn mutate(mut payload: Value, slot: prop::sample::Index, replacement: Option<Value>) -> Value {
    let mut all = Vec::new();
    pointers(&payload, String::new(), &mut all);
    let path = slot.get(&all).clone();
    let (parent, key) = path.rsplit_once('/').unwrap();
    match (payload.pointer_mut(parent), replacement) {
        (Some(Value::Object(map)), Some(value)) => {
            map.insert(key.to_owned(), value);
        }
        (Some(Value::Object(map)), None) => {
            map.remove(key);
        }
        (Some(target), replacement) => {
            if let Some(child) = target.pointer_mut(&format!("/{key}")) {
                *child = replacement.unwrap_or(Value::Null);
            }
        }
        (None, _) => {}
    }
    payload
}

/// A GitHub payload with every field any GitHub parser reads.
fn github_template() -> Value {
    serde_json::json!({
        "action": "opened", "number": 1,
        "pull_request": {"number": 1, "user": {"login": "a", "id": 1},
            "head": {"ref": "h", "sha": "1111111111111111111111111111111111111111"},
            "base": {"ref": "main", "sha": "2222222222222222222222222222222222222222"},
            "labels": [{"name": "x"}], "title": "t", "body": null, "merged": false},
        "repository": {"id": 1, "full_name": "o/r"},
        "installation": {"id": 5},
        "review": {"user": {"login": "r", "id": 2}, "state": "approved",
            "commit_id": "1111111111111111111111111111111111111111", "submitted_at": null},
        "issue": {"number": 1, "pull_request": {}},
        "comment": {"id": 9, "user": {"login": "c"}, "body": "/tollgate recheck"},
        "check_run": {"head_sha": "1111111111111111111111111111111111111111", "name": "tollgate",
            "pull_requests": [{"number": 1}]},
        "changes": {"base": {"ref": {"from": "dev"}}}
    })
}

/// A GitLab payload with every field any GitLab parser reads.
fn gitlab_template() -> Value {
    serde_json::json!({
        "object_attributes": {"iid": 1, "action": "open", "source_branch": "h",
            "target_branch": "main", "author_id": 1, "title": "t",
            "last_commit": {"id": "1111111111111111111111111111111111111111"},
            "oldrev": null, "description": "", "system": false,
            "noteable_type": "MergeRequest", "note": "/tollgate recheck", "id": 3},
        "project": {"id": 1, "path_with_namespace": "g/p"},
        "user": {"username": "a", "id": 1},
        "merge_request": {"iid": 1},
        "changes": {"target_branch": {"previous": "dev"}},
        "labels": [{"title": "x"}]
    })
}

fn github_request(event: &str, body: Vec<u8>, auth: &Auth) -> Request<Body> {
    let mut builder = Request::post("/webhooks/github").header("x-github-delivery", "fuzz");
    if !event.is_empty() {
        builder = builder.header("x-github-event", event);
    }
    builder = match auth {
        Auth::Valid => builder.header(
            "x-hub-signature-256",
            github_signature(GITHUB_SECRET, &body),
        ),
        Auth::Missing => builder,
        Auth::Garbage(value) => builder.header("x-hub-signature-256", value.as_str()),
    };
    builder.body(Body::from(body)).unwrap()
}

fn gitlab_request(event: &str, body: Vec<u8>, auth: &Auth) -> Request<Body> {
    let mut builder = Request::post("/webhooks/gitlab");
    if !event.is_empty() {
        builder = builder.header("x-gitlab-event", event);
    }
    builder = match auth {
        Auth::Valid => builder.header("x-gitlab-token", GITLAB_TOKEN),
        Auth::Missing => builder,
        Auth::Garbage(value) => builder.header("x-gitlab-token", value.as_str()),
    };
    builder.body(Body::from(body)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2048,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct("tests/intake_fuzz.proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_deliveries_get_only_2xx_or_4xx(
        github in any::<bool>(),
        github_event in github_event(),
        gitlab_event in gitlab_event(),
        github_body in body(github_template),
        gitlab_body in body(gitlab_template),
        auth in auth(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let app = TestApp::new();
        let request = if github {
            github_request(&github_event, github_body, &auth)
        } else {
            gitlab_request(&gitlab_event, gitlab_body, &auth)
        };
        let (status, text) = runtime.block_on(app.send(request));
        prop_assert!(
            status.is_success() || status.is_client_error(),
            "got {} ({})", status, text
        );
        if !matches!(auth, Auth::Valid) {
            prop_assert!(app.sink.take().is_empty(), "an unauthenticated delivery was queued");
        }
    }
}
