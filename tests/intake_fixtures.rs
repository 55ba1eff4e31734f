//! Every real webhook payload in the external fixtures goes through the real HTTP handler with
//! a valid signature or token, and yields its expected event or a deliberate `Ignored`.
//!
//! The expectation for each payload is derived here from the raw JSON (an oracle independent
//! of intake's own structs), by event folder and action.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use axum::http::StatusCode;
use serde_json::Value;
use tollgate::event::{ChangeAction, Delivery, Event, Forge, ReviewState};

use common::{
    GITHUB_SECRET, GITLAB_TOKEN, TestApp, external_fixtures, gitlab_request, payload_files,
};

/// What a fixture must produce.
enum Expect {
    Pong,
    Ignored,
    Event(Box<dyn Fn(&Event)>),
}

fn str_at<'a>(json: &'a Value, pointer: &str) -> &'a str {
    json.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("fixture has no string at {pointer}"))
}

fn u64_at(json: &Value, pointer: &str) -> u64 {
    json.pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("fixture has no number at {pointer}"))
}

fn github_expectation(folder: &str, json: &Value) -> Expect {
    let action = json.get("action").and_then(Value::as_str).unwrap_or("");
    let json = json.clone();
    match (folder, action) {
        ("ping", _) => Expect::Pong,
        (
            "pull_request",
            "opened" | "reopened" | "synchronize" | "edited" | "labeled" | "unlabeled"
            | "ready_for_review",
        ) => {
            let action = action.to_owned();
            Expect::Event(Box::new(move |event| {
                let Event::ChangeUpdated(update) = event else {
                    panic!("expected ChangeUpdated, got {event:?}");
                };
                assert_eq!(update.change.number.0, u64_at(&json, "/number"));
                assert_eq!(
                    update.change.repo.name.as_str(),
                    str_at(&json, "/repository/full_name")
                );
                assert_eq!(update.change.repo.forge, Forge::GitHub);
                assert_eq!(
                    update.change.repo.installation.map(|i| i.0),
                    json.pointer("/installation/id").and_then(Value::as_u64)
                );
                assert_eq!(
                    update.head_sha.as_str(),
                    str_at(&json, "/pull_request/head/sha")
                );
                assert_eq!(update.base_ref, str_at(&json, "/pull_request/base/ref"));
                assert_eq!(
                    update.base_sha.as_ref().map(|s| s.as_str()),
                    Some(str_at(&json, "/pull_request/base/sha"))
                );
                let labels: Vec<&str> = json["pull_request"]["labels"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l["name"].as_str().unwrap())
                    .collect();
                assert_eq!(update.labels, labels);
                assert_eq!(
                    update.body,
                    json["pull_request"]["body"].as_str().unwrap_or("")
                );
                let expected_action = match action.as_str() {
                    "opened" => ChangeAction::Opened,
                    "reopened" => ChangeAction::Reopened,
                    "synchronize" => ChangeAction::Synchronized,
                    "edited" => match json
                        .pointer("/changes/base/ref/from")
                        .and_then(Value::as_str)
                    {
                        Some(from) => ChangeAction::Retargeted {
                            from: from.to_owned(),
                        },
                        None => ChangeAction::Edited,
                    },
                    "labeled" => ChangeAction::Labeled,
                    "unlabeled" => ChangeAction::Unlabeled,
                    _ => ChangeAction::ReadyForReview,
                };
                assert_eq!(update.action, expected_action);
            }))
        }
        ("pull_request", "closed") => Expect::Event(Box::new(move |event| {
            let Event::ChangeClosed(closed) = event else {
                panic!("expected ChangeClosed, got {event:?}");
            };
            assert_eq!(closed.change.number.0, u64_at(&json, "/number"));
            assert_eq!(
                closed.merged,
                json["pull_request"]["merged"].as_bool().unwrap_or(false)
            );
        })),
        ("pull_request_review", "submitted" | "edited" | "dismissed") => {
            Expect::Event(Box::new(move |event| {
                let Event::Review(review) = event else {
                    panic!("expected Review, got {event:?}");
                };
                assert_eq!(
                    review.change.number.0,
                    u64_at(&json, "/pull_request/number")
                );
                assert_eq!(
                    review.reviewer.login.as_str(),
                    str_at(&json, "/review/user/login")
                );
                assert_eq!(
                    review.commit.as_ref().map(|c| c.as_str()),
                    Some(str_at(&json, "/review/commit_id"))
                );
                let state = match str_at(&json, "/review/state").to_ascii_lowercase().as_str() {
                    "approved" => ReviewState::Approved,
                    "changes_requested" => ReviewState::ChangesRequested,
                    "commented" => ReviewState::Commented,
                    _ => ReviewState::Dismissed,
                };
                assert_eq!(review.state, state);
            }))
        }
        ("issue_comment", "created") if json.pointer("/issue/pull_request").is_some() => {
            Expect::Event(Box::new(move |event| {
                let Event::CommentCreated(comment) = event else {
                    panic!("expected CommentCreated, got {event:?}");
                };
                assert_eq!(comment.change.number.0, u64_at(&json, "/issue/number"));
                assert_eq!(
                    comment.author.login.as_str(),
                    str_at(&json, "/comment/user/login")
                );
                assert_eq!(comment.body, str_at(&json, "/comment/body"));
                assert_eq!(comment.comment_id, u64_at(&json, "/comment/id"));
            }))
        }
        ("check_run" | "check_suite", "rerequested") => {
            let folder = folder.to_owned();
            Expect::Event(Box::new(move |event| {
                let Event::CheckRerequested(request) = event else {
                    panic!("expected CheckRerequested, got {event:?}");
                };
                let sha = str_at(&json, &format!("/{folder}/head_sha"));
                assert_eq!(request.head_sha.as_str(), sha);
                assert_eq!(
                    request.repo.name.as_str(),
                    str_at(&json, "/repository/full_name")
                );
            }))
        }
        _ => Expect::Ignored,
    }
}

/// `X-Gitlab-Event` for each folder (`object_kind`), as GitLab sends it.
fn gitlab_event_header(folder: &str) -> &'static str {
    match folder {
        "merge_request" => "Merge Request Hook",
        "note" => "Note Hook",
        "push" => "Push Hook",
        "tag_push" => "Tag Push Hook",
        "issue" => "Issue Hook",
        "pipeline" => "Pipeline Hook",
        "job" => "Job Hook",
        "wiki_page" => "Wiki Page Hook",
        other => panic!("unknown GitLab fixture folder `{other}`: add its X-Gitlab-Event here"),
    }
}

fn gitlab_expectation(folder: &str, json: &Value) -> Expect {
    let action = json
        .pointer("/object_attributes/action")
        .and_then(Value::as_str);
    let json = json.clone();
    match (folder, action) {
        ("merge_request", Some(action @ ("open" | "reopen" | "update"))) => {
            let action = action.to_owned();
            Expect::Event(Box::new(move |event| {
                let Event::ChangeUpdated(update) = event else {
                    panic!("expected ChangeUpdated, got {event:?}");
                };
                assert_eq!(update.change.repo.forge, Forge::GitLab);
                assert_eq!(
                    update.change.number.0,
                    u64_at(&json, "/object_attributes/iid")
                );
                assert_eq!(
                    update.change.repo.name.as_str(),
                    str_at(&json, "/project/path_with_namespace")
                );
                assert_eq!(
                    update.head_sha.as_str(),
                    str_at(&json, "/object_attributes/last_commit/id")
                );
                assert_eq!(
                    update.base_ref,
                    str_at(&json, "/object_attributes/target_branch")
                );
                assert_eq!(
                    update.head_ref,
                    str_at(&json, "/object_attributes/source_branch")
                );
                let expected = match action.as_str() {
                    "open" => ChangeAction::Opened,
                    "reopen" => ChangeAction::Reopened,
                    _ if json
                        .pointer("/object_attributes/oldrev")
                        .is_some_and(|v| !v.is_null()) =>
                    {
                        ChangeAction::Synchronized
                    }
                    _ => ChangeAction::Edited,
                };
                assert_eq!(update.action, expected);
            }))
        }
        (
            "merge_request",
            Some(action @ ("approved" | "approval" | "unapproved" | "unapproval")),
        ) => {
            let approved = matches!(action, "approved" | "approval");
            Expect::Event(Box::new(move |event| {
                let Event::Review(review) = event else {
                    panic!("expected Review, got {event:?}");
                };
                assert_eq!(
                    review.change.number.0,
                    u64_at(&json, "/object_attributes/iid")
                );
                assert_eq!(
                    review.reviewer.login.as_str(),
                    str_at(&json, "/user/username")
                );
                assert_eq!(
                    review.state,
                    if approved {
                        ReviewState::Approved
                    } else {
                        ReviewState::Dismissed
                    }
                );
                assert_eq!(
                    review.commit.as_ref().map(|c| c.as_str()),
                    Some(str_at(&json, "/object_attributes/last_commit/id"))
                );
            }))
        }
        ("merge_request", Some("merge" | "close"))
            if json.pointer("/object_attributes/iid").is_some() =>
        {
            Expect::Event(Box::new(move |event| {
                let Event::ChangeClosed(closed) = event else {
                    panic!("expected ChangeClosed, got {event:?}");
                };
                assert_eq!(
                    closed.change.number.0,
                    u64_at(&json, "/object_attributes/iid")
                );
            }))
        }
        ("note", action)
            if json
                .pointer("/object_attributes/noteable_type")
                .and_then(Value::as_str)
                == Some("MergeRequest")
                && action.is_none_or(|a| a == "create")
                && !json
                    .pointer("/object_attributes/system")
                    .and_then(Value::as_bool)
                    .unwrap_or(false) =>
        {
            Expect::Event(Box::new(move |event| {
                let Event::CommentCreated(comment) = event else {
                    panic!("expected CommentCreated, got {event:?}");
                };
                assert_eq!(comment.change.number.0, u64_at(&json, "/merge_request/iid"));
                assert_eq!(
                    comment.author.login.as_str(),
                    str_at(&json, "/user/username")
                );
                assert_eq!(comment.body, str_at(&json, "/object_attributes/note"));
            }))
        }
        _ => Expect::Ignored,
    }
}

/// Checks one delivery's answer against its expectation; returns the event kind seen.
fn check(
    file: &Path,
    expect: Expect,
    status: StatusCode,
    body: &str,
    mut delivered: Vec<Delivery>,
    delivery_id: &str,
) -> &'static str {
    let name = file.display();
    assert!(
        status.is_success(),
        "{name}: expected 2xx, got {status} ({body})"
    );
    match expect {
        Expect::Pong => {
            assert_eq!(status, StatusCode::OK, "{name}");
            assert!(delivered.is_empty(), "{name}: a ping is not queued");
            "ping"
        }
        Expect::Ignored => {
            assert_eq!(status, StatusCode::ACCEPTED, "{name}");
            assert!(
                body.starts_with("ignored: "),
                "{name}: expected a deliberate ignore, got {body}"
            );
            assert!(
                delivered.is_empty(),
                "{name}: an ignored event is not queued: {delivered:?}"
            );
            "ignored"
        }
        Expect::Event(check_event) => {
            assert_eq!(status, StatusCode::ACCEPTED, "{name}: {body}");
            assert_eq!(delivered.len(), 1, "{name}: exactly one delivery queued");
            let delivery = delivered.remove(0);
            assert_eq!(
                delivery.id.as_ref().map(|d| d.as_str()),
                Some(delivery_id),
                "{name}"
            );
            check_event(&delivery.event);
            delivery.event.kind()
        }
    }
}

/// Sends every payload of one forge's fixture folder through the real handler, checks each
/// against its expectation, and asserts that each of `required` kinds was seen at least once
/// (so the test cannot pass vacuously).
async fn run_fixture_set(
    forge_folder: &str,
    minimum_files: usize,
    expectation: fn(&str, &Value) -> Expect,
    request: fn(&str, &str, Vec<u8>) -> axum::http::Request<axum::body::Body>,
    required: &[&str],
) {
    let Some(root) = external_fixtures() else {
        return;
    };
    let files = payload_files(&root.join(forge_folder));
    assert!(
        files.len() >= minimum_files,
        "expected the full {forge_folder} fixture set, found {}",
        files.len()
    );
    let app = TestApp::new();
    let mut seen: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (index, (folder, file)) in files.iter().enumerate() {
        let bytes = std::fs::read(file).unwrap();
        let json: Value = serde_json::from_slice(&bytes).unwrap();
        let expect = expectation(folder, &json);
        let delivery_id = format!("{forge_folder}-{index}");
        let (status, body) = app.send(request(folder, &delivery_id, bytes)).await;
        let kind = check(file, expect, status, &body, app.sink.take(), &delivery_id);
        *seen.entry(kind).or_default() += 1;
    }
    for kind in required {
        assert!(
            seen.get(kind).copied().unwrap_or(0) > 0,
            "no `{kind}` among the {forge_folder} fixtures: {seen:?}"
        );
    }
}

#[tokio::test]
async fn every_github_fixture_yields_its_expected_event_or_a_deliberate_ignore() {
    // GitHub's examples only comment on issues; the test below covers pull request comments.
    run_fixture_set(
        "github",
        50,
        github_expectation,
        |folder, id, body| common::github_request(folder, id, body, GITHUB_SECRET),
        &[
            "ping",
            "ignored",
            "change_updated",
            "change_closed",
            "review",
            "check_rerequested",
        ],
    )
    .await;
}

#[tokio::test]
async fn every_gitlab_fixture_yields_its_expected_event_or_a_deliberate_ignore() {
    run_fixture_set(
        "gitlab",
        20,
        gitlab_expectation,
        |folder, id, body| gitlab_request(gitlab_event_header(folder), id, body, GITLAB_TOKEN),
        &["ignored", "change_updated", "review", "comment_created"],
    )
    .await;
}

#[tokio::test]
async fn a_github_comment_on_a_pull_request_is_a_comment_event() {
    let Some(root) = external_fixtures() else {
        return;
    };
    // The upstream examples comment on plain issues; GitHub marks a pull request's
    // conversation by an `issue.pull_request` object, which is all that differs.
    let file = root.join("github/issue_comment/created.payload.json");
    let mut json: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    json["issue"]["pull_request"] = serde_json::json!({
        "url": "https://api.github.com/repos/Codertocat/Hello-World/pulls/1"
    });
    let app = TestApp::new();
    let bytes = serde_json::to_vec(&json).unwrap();
    let request = common::github_request("issue_comment", "gh-pr-comment", bytes, GITHUB_SECRET);
    let (status, body) = app.send(request).await;
    let expect = github_expectation("issue_comment", &json);
    let kind = check(
        &file,
        expect,
        status,
        &body,
        app.sink.take(),
        "gh-pr-comment",
    );
    assert_eq!(kind, "comment_created");
}
