//! Tests of the fake GitLab itself (`tests/common/fake_gitlab.rs`): plain HTTP calls with
//! reqwest, as a client written against GitLab's REST API v4 makes them.

mod common;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use common::fake_gitlab::{
    ApprovalSettings, CommitSpec, DEVELOPER, FakeGitLab, FileChange, GUEST, MAINTAINER, MrSpec,
    OWNER, REPORTER, Visibility,
};
use reqwest::Method;
use serde_json::{Value, json};

const PROJECT: &str = "ml/vision/detector";
const ENCODED: &str = "ml%2Fvision%2Fdetector";
const BASE: &str = "base0000";
const BOT: &str = "tollgate-bot";

/// A reply: status, headers, the raw text and the JSON body (`Null` when not JSON).
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// How a client presents its token.
#[derive(Clone, Copy)]
enum Auth {
    PrivateToken,
    Bearer,
}

/// Plain reqwest calls against the fake's API, as one token (or none).
struct Api {
    http: reqwest::Client,
    root: String,
    token: Option<String>,
    auth: Auth,
}

impl Api {
    fn new(fake: &FakeGitLab, token: Option<&str>) -> Api {
        Api {
            http: reqwest::Client::new(),
            root: fake.url(),
            token: token.map(str::to_owned),
            auth: Auth::PrivateToken,
        }
    }

    fn as_user(fake: &FakeGitLab, user: &str) -> Api {
        Api::new(fake, Some(&fake.token_for(user)))
    }

    /// A request to an API path (`/projects/…`, under `/api/v4`) or to a full URL.
    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let url = match path.starts_with("http") {
            true => path.to_owned(),
            false => format!("{}/api/v4{path}", self.root),
        };
        let builder = self.http.request(method, url);
        match (&self.token, self.auth) {
            (Some(token), Auth::PrivateToken) => builder.header("PRIVATE-TOKEN", token),
            (Some(token), Auth::Bearer) => builder.bearer_auth(token),
            (None, _) => builder,
        }
    }

    async fn send(&self, builder: reqwest::RequestBuilder) -> Answer {
        let response = builder.send().await.expect("the fake answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            text,
            body,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(self.request(Method::GET, path)).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(self.request(Method::POST, path).json(&body))
            .await
    }

    async fn put(&self, path: &str, body: Value) -> Answer {
        self.send(self.request(Method::PUT, path).json(&body)).await
    }
}

/// A fake with the bot (a developer of the project's group) and an API client as the bot.
async fn bot_fake() -> (FakeGitLab, Api) {
    let fake = FakeGitLab::start().await;
    let token = fake.set_bot(BOT);
    fake.create_project(PROJECT);
    fake.add_group_member("ml", BOT, DEVELOPER);
    let api = Api::new(&fake, Some(&token));
    (fake, api)
}

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap()
}

/// !7: the base has a README, metrics, an old model and a policy; c1 (alice, dated 2020)
/// adds a model and edits the metrics; c2 (bob) renames the old model and deletes the README.
fn sample_mr(fake: &FakeGitLab) {
    fake.set_file(PROJECT, BASE, "README.md", "hello\n");
    fake.set_file(PROJECT, BASE, "eval/metrics.json", "{\n\"auc\": 0.91\n}\n");
    fake.set_file(PROJECT, BASE, "models/old.onnx", "weights\n");
    fake.set_file(PROJECT, BASE, ".governance.toml", "version = 1\n");
    let c1 = CommitSpec::new(
        "c1",
        "alice",
        vec![
            FileChange::added("models/new/model.onnx", "new weights\n"),
            FileChange::modified("eval/metrics.json", "{\n\"auc\": 0.95\n}\n"),
        ],
    )
    .titled("Retrain the detector")
    .dated(at(2020, 1, 2));
    let c2 = CommitSpec::new(
        "c2",
        "bob",
        vec![
            FileChange::renamed("models/old.onnx", "models/renamed.onnx"),
            FileChange::removed("README.md"),
        ],
    )
    .committer("GitLab", "noreply@gitlab.example.com");
    fake.open_mr(
        PROJECT,
        MrSpec {
            iid: 7,
            title: "Retrain".to_owned(),
            description: "## Rollback plan\nRevert.".to_owned(),
            labels: vec!["sensitive-domain".to_owned(), "ml".to_owned()],
            commits: vec![c1, c2],
            ..MrSpec::default()
        },
    );
}

/// !1 by alice whose single commit adds `count` files.
fn wide_mr(fake: &FakeGitLab, count: usize) {
    let files = (0..count)
        .map(|i| FileChange::added(&format!("data/f{i:03}.csv"), "a,b\n"))
        .collect();
    fake.open_mr(
        PROJECT,
        MrSpec {
            commits: vec![CommitSpec::new("wide", "alice", files)],
            ..MrSpec::default()
        },
    );
}

fn mr_path(iid: u64) -> String {
    format!("/projects/{ENCODED}/merge_requests/{iid}")
}

/// One field of every item of a list.
fn column(list: &Value, pointer: &str) -> Vec<Value> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|item| item.pointer(pointer).cloned().unwrap_or(Value::Null))
        .collect()
}

fn link_to(answer: &Answer, rel: &str) -> Option<String> {
    let wanted = format!("rel=\"{rel}\"");
    answer.header("link")?.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let url = url.trim().trim_start_matches('<').trim_end_matches('>');
        params.contains(&wanted).then(|| url.to_owned())
    })
}

/// The pagination headers of an answer: page, per page, next, prev, total, total pages.
fn pagination(answer: &Answer) -> [&str; 6] {
    [
        "x-page",
        "x-per-page",
        "x-next-page",
        "x-prev-page",
        "x-total",
        "x-total-pages",
    ]
    .map(|name| answer.header(name).unwrap_or("<missing>"))
}

/// Every item of a list, following `rel="next"` links; returns the items and pages read.
async fn all_pages(api: &Api, first: &str) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut next = Some(first.to_owned());
    let mut pages = 0;
    while let Some(url) = next {
        let answer = api.get(&url).await;
        assert_eq!(answer.status, 200, "{url}: {}", answer.text);
        items.extend(answer.body.as_array().expect("a list").iter().cloned());
        next = link_to(&answer, "next");
        pages += 1;
    }
    (items, pages)
}

fn time(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("{value} is not a timestamp"))
}

// --- authentication ----------------------------------------------------------------------------

#[tokio::test]
async fn requests_need_a_known_token() {
    let (fake, bot) = bot_fake().await;
    let anonymous = Api::new(&fake, None);
    let refused = anonymous.get("/user").await;
    assert_eq!(
        (refused.status, refused.body.clone()),
        (401, json!({ "message": "401 Unauthorized" }))
    );
    let wrong = Api::new(&fake, Some("glpat-not-a-token"));
    for path in ["/user", &format!("/projects/{ENCODED}")] {
        let answer = wrong.get(path).await;
        assert_eq!(answer.status, 401, "{path}: an unknown token is refused");
        assert_eq!(answer.body, json!({ "message": "401 Unauthorized" }));
    }

    let me = bot.get("/user").await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(
        (
            &me.body["username"],
            &me.body["bot"],
            me.body["id"].as_u64()
        ),
        (&json!(BOT), &json!(true), Some(fake.user_id(BOT)))
    );
    let bearer = Api {
        auth: Auth::Bearer,
        ..Api::new(&fake, Some(&fake.token_for(BOT)))
    };
    assert_eq!(bearer.get("/user").await.body["username"], BOT);
    let query = anonymous
        .get(&format!("/user?private_token={}", fake.token_for("alice")))
        .await;
    assert_eq!(query.body["username"], "alice");

    // An internal project is hidden from anonymous requests; a public one is not.
    let hidden = anonymous.get(&format!("/projects/{ENCODED}")).await;
    assert_eq!(
        (hidden.status, hidden.body),
        (404, json!({ "message": "404 Project Not Found" }))
    );
    fake.set_visibility(PROJECT, Visibility::Public);
    assert_eq!(
        anonymous.get(&format!("/projects/{ENCODED}")).await.status,
        200
    );
    let write = anonymous
        .post(&format!("{}/notes", mr_path(1)), json!({ "body": "hi" }))
        .await;
    assert_eq!(write.status, 401, "writes always need a token");

    let unknown = bot.get("/projects/1/no_such_thing").await;
    assert_eq!(
        (unknown.status, unknown.body),
        (404, json!({ "error": "404 Not Found" }))
    );

    fake.revoke_tokens(BOT);
    assert_eq!(bot.get("/user").await.status, 401, "a revoked token");
    let recorded = fake.requests();
    assert_eq!(recorded[3].user.as_deref(), Some(BOT));
    assert_eq!(
        recorded[3].header("private-token"),
        Some(bot.token.as_deref().unwrap())
    );
}

#[tokio::test]
async fn private_projects_need_membership() {
    let (fake, _) = bot_fake().await;
    fake.create_project("secret/models");
    fake.set_visibility("secret/models", Visibility::Private);
    fake.add_project_member("secret/models", "guest", GUEST);
    fake.add_project_member("secret/models", "reader", REPORTER);
    let path = "/projects/secret%2Fmodels";
    let stranger = Api::as_user(&fake, "stranger");
    assert_eq!(stranger.get(path).await.status, 404);
    let guest = Api::as_user(&fake, "guest");
    assert_eq!(guest.get(path).await.status, 200);
    let tree = format!("{path}/repository/tree");
    assert_eq!(
        guest.get(&tree).await.body,
        json!({ "message": "403 Forbidden" }),
        "guests do not read code"
    );
    fake.set_branch("secret/models", "main", BASE);
    let reader = Api::as_user(&fake, "reader");
    assert_eq!(reader.get(&tree).await.status, 200);
    let project = reader.get(path).await.body;
    assert_eq!(
        (
            &project["visibility"],
            &project["permissions"]["project_access"]["access_level"]
        ),
        (&json!("private"), &json!(REPORTER))
    );
}

// --- merge requests ----------------------------------------------------------------------------

#[tokio::test]
async fn merge_request_fields_and_diff_refs() {
    let (fake, bot) = bot_fake().await;
    sample_mr(&fake);
    let id = fake.project_id(PROJECT);
    let by_path = bot.get(&mr_path(7)).await;
    let by_id = bot.get(&format!("/projects/{id}/merge_requests/7")).await;
    assert_eq!(by_path.status, 200, "{}", by_path.text);
    assert_eq!(
        by_path.body, by_id.body,
        "numeric id and URL-encoded path agree"
    );
    let mr = &by_path.body;
    assert_eq!(mr["iid"], 7);
    assert_eq!(mr["project_id"], id);
    assert_eq!(mr["title"], "Retrain");
    assert_eq!(mr["description"], "## Rollback plan\nRevert.");
    assert_eq!(mr["state"], "opened");
    assert_eq!(mr["draft"], false);
    assert_eq!(mr["labels"], json!(["ml", "sensitive-domain"]));
    assert_eq!(mr["author"]["username"], "alice");
    assert_eq!(mr["author"]["id"], fake.user_id("alice"));
    assert_eq!(
        (&mr["source_branch"], &mr["target_branch"]),
        (&json!("feature"), &json!("main"))
    );
    assert_eq!(mr["sha"], "c2");
    assert_eq!(
        mr["diff_refs"],
        json!({ "base_sha": BASE, "head_sha": "c2", "start_sha": BASE })
    );
    assert_eq!(mr["changes_count"], "4");
    assert_eq!(
        mr["web_url"],
        format!("{}/{PROJECT}/-/merge_requests/7", fake.url())
    );
    assert_eq!(mr["references"]["full"], format!("{PROJECT}!7"));

    fake.set_draft(PROJECT, 7, true);
    let draft = bot.get(&mr_path(7)).await.body;
    assert_eq!(
        (&draft["title"], &draft["draft"]),
        (&json!("Draft: Retrain"), &json!(true))
    );

    let missing = bot.get(&mr_path(99)).await;
    assert_eq!(
        (missing.status, missing.body),
        (404, json!({ "message": "404 Not found" }))
    );
    let invalid = bot
        .get(&format!("/projects/{ENCODED}/merge_requests/x"))
        .await;
    assert_eq!(
        (invalid.status, invalid.body),
        (400, json!({ "error": "merge_request_iid is invalid" }))
    );
    let listed = bot
        .get(&format!(
            "/projects/{ENCODED}/merge_requests?state=opened&labels=ml"
        ))
        .await;
    assert_eq!(column(&listed.body, "/iid"), [json!(7)]);
}

#[tokio::test]
async fn diffs_detect_renames_and_carry_hunks() {
    let (fake, bot) = bot_fake().await;
    sample_mr(&fake);
    let diffs = bot.get(&format!("{}/diffs", mr_path(7))).await;
    assert_eq!(diffs.status, 200, "{}", diffs.text);
    let files: Vec<Value> = diffs
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            json!([
                d["old_path"],
                d["new_path"],
                d["new_file"],
                d["renamed_file"],
                d["deleted_file"]
            ])
        })
        .collect();
    assert_eq!(
        files,
        [
            json!(["README.md", "README.md", false, false, true]),
            json!([
                "eval/metrics.json",
                "eval/metrics.json",
                false,
                false,
                false
            ]),
            json!([
                "models/new/model.onnx",
                "models/new/model.onnx",
                true,
                false,
                false
            ]),
            json!(["models/old.onnx", "models/renamed.onnx", false, true, false]),
        ]
    );
    let by_path = |path: &str| {
        diffs
            .body
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["new_path"] == path)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        by_path("eval/metrics.json")["diff"],
        "@@ -1,3 +1,3 @@\n {\n-\"auc\": 0.91\n+\"auc\": 0.95\n }\n"
    );
    assert_eq!(by_path("README.md")["diff"], "@@ -1 +0,0 @@\n-hello\n");
    assert_eq!(
        (
            &by_path("README.md")["a_mode"],
            &by_path("README.md")["b_mode"]
        ),
        (&json!("100644"), &json!("0"))
    );
    assert_eq!(by_path("models/renamed.onnx")["diff"], "");

    let changes = bot.get(&format!("{}/changes", mr_path(7))).await.body;
    assert_eq!(changes["iid"], 7);
    assert_eq!(
        column(&changes["changes"], "/new_path"),
        column(&diffs.body, "/new_path")
    );
}

#[tokio::test]
async fn diff_hunks_keep_three_lines_of_context() {
    let (fake, bot) = bot_fake().await;
    let lines: String = (1..=20).map(|i| format!("line {i}\n")).collect();
    fake.set_file(PROJECT, BASE, "config.yaml", &lines);
    fake.set_file(PROJECT, BASE, "notes.txt", "no newline");
    let edited = lines
        .replace("line 2\n", "line two\n")
        .replace("line 18\n", "line 18\nline 18b\n");
    let commit = CommitSpec::new(
        "c1",
        "alice",
        vec![
            FileChange::modified("config.yaml", &edited),
            FileChange::modified("notes.txt", "no newline\nnow one\n"),
        ],
    );
    fake.open_mr(
        PROJECT,
        MrSpec {
            commits: vec![commit],
            ..MrSpec::default()
        },
    );
    let diffs = bot.get(&format!("{}/diffs", mr_path(1))).await.body;
    assert_eq!(
        diffs[0]["diff"],
        "@@ -1,5 +1,5 @@\n line 1\n-line 2\n+line two\n line 3\n line 4\n line 5\n\
         @@ -16,5 +16,6 @@\n line 16\n line 17\n line 18\n+line 18b\n line 19\n line 20\n"
    );
    assert_eq!(
        diffs[1]["diff"],
        "@@ -1 +1,2 @@\n-no newline\n\\ No newline at end of file\n+no newline\n+now one\n"
    );
}

#[tokio::test]
async fn diffs_paginate_with_gitlab_headers() {
    let (fake, bot) = bot_fake().await;
    wide_mr(&fake, 45);
    let first = bot.get(&format!("{}/diffs", mr_path(1))).await;
    assert_eq!(pagination(&first), ["1", "20", "2", "", "45", "3"]);
    assert_eq!(
        first.body.as_array().unwrap().len(),
        20,
        "20 per page by default"
    );
    assert!(link_to(&first, "prev").is_none());
    let last = link_to(&first, "last").expect("a last link");
    assert!(last.ends_with("/diffs?page=3&per_page=20"), "{last}");
    assert!(
        last.contains(&format!("/api/v4/projects/{ENCODED}/")),
        "{last}"
    );

    let (items, pages) = all_pages(&bot, &format!("{}/diffs?per_page=20", mr_path(1))).await;
    assert_eq!((items.len(), pages), (45, 3));
    let paths: Vec<String> = column(&Value::Array(items), "/new_path")
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..45).map(|i| format!("data/f{i:03}.csv")).collect();
    assert_eq!(paths, expected, "every file once, in order");

    let third = bot
        .get(&format!("{}/diffs?page=3&per_page=20", mr_path(1)))
        .await;
    assert_eq!(pagination(&third), ["3", "20", "", "2", "45", "3"]);
    assert_eq!(third.body.as_array().unwrap().len(), 5);
    let big = bot.get(&format!("{}/diffs?per_page=500", mr_path(1))).await;
    assert_eq!(
        pagination(&big),
        ["1", "100", "", "", "45", "1"],
        "at most 100"
    );
}

#[tokio::test]
async fn commits_are_listed_newest_first_with_their_git_dates() {
    let (fake, bot) = bot_fake().await;
    sample_mr(&fake);
    let commits = bot.get(&format!("{}/commits", mr_path(7))).await;
    assert_eq!(commits.status, 200, "{}", commits.text);
    assert_eq!(column(&commits.body, "/id"), [json!("c2"), json!("c1")]);
    let c1 = &commits.body[1];
    assert_eq!(c1["title"], "Retrain the detector");
    assert_eq!(
        (&c1["author_name"], &c1["author_email"]),
        (&json!("alice"), &json!("alice@example.com"))
    );
    assert_eq!(
        time(&c1["authored_date"]),
        at(2020, 1, 2),
        "the git date as set"
    );
    assert_eq!(c1["authored_date"], "2020-01-02T12:00:00.000+00:00");
    assert_eq!(c1["created_at"], c1["committed_date"]);
    let c2 = &commits.body[0];
    assert_eq!(c2["committer_name"], "GitLab");
    assert_eq!(c2["short_id"], "c2");
    assert_eq!(pagination(&commits)[4], "2");

    let single = bot
        .get(&format!("/projects/{ENCODED}/repository/commits/c2"))
        .await
        .body;
    assert_eq!(single["parent_ids"], json!(["c1"]));
    assert_eq!(single["stats"]["deletions"], 1);
}

#[tokio::test]
async fn versions_are_dated_by_the_push_not_by_commit_dates() {
    let (fake, bot) = bot_fake().await;
    sample_mr(&fake);
    let opened_at = fake.versions(PROJECT, 7)[0].created_at;
    fake.advance(TimeDelta::hours(3));
    // main moves on, then a commit whose git dates claim 2019 is pushed.
    fake.push_branch(
        PROJECT,
        "main",
        vec![CommitSpec::new(
            "m1",
            "carol",
            vec![FileChange::added("LICENSE", "MIT\n")],
        )],
    );
    let pushed_at = fake.now();
    let old_looking = CommitSpec::new(
        "c3",
        "alice",
        vec![FileChange::modified("eval/metrics.json", "{}\n")],
    )
    .dated(at(2019, 6, 1));
    fake.push(PROJECT, 7, old_looking);

    let versions = bot.get(&format!("{}/versions", mr_path(7))).await;
    assert_eq!(versions.status, 200, "{}", versions.text);
    let list = versions.body.as_array().unwrap();
    assert_eq!(list.len(), 2, "one version per push");
    assert_eq!(
        column(&versions.body, "/head_commit_sha"),
        [json!("c3"), json!("c2")]
    );
    assert_eq!(
        time(&list[0]["created_at"]),
        pushed_at,
        "the push time, not 2019"
    );
    assert_eq!(time(&list[1]["created_at"]), opened_at);
    assert!(pushed_at > opened_at + TimeDelta::hours(3));
    assert_eq!(
        (&list[0]["start_commit_sha"], &list[0]["base_commit_sha"]),
        (&json!("m1"), &json!(BASE)),
        "start is main's head at the push, base the merge base"
    );
    assert_eq!(
        list[0]["merge_request_id"],
        bot.get(&mr_path(7)).await.body["id"]
    );
    assert_eq!(list[0]["state"], "collected");
    assert_eq!(list[0]["real_size"], "4");

    let mr = bot.get(&mr_path(7)).await.body;
    assert_eq!(
        mr["diff_refs"],
        json!({ "base_sha": BASE, "head_sha": "c3", "start_sha": "m1" })
    );
    let one = list[1]["id"].as_u64().unwrap();
    let old = bot
        .get(&format!("{}/versions/{one}", mr_path(7)))
        .await
        .body;
    assert_eq!(column(&old["commits"], "/id"), [json!("c2"), json!("c1")]);
    assert_eq!(old["diffs"].as_array().unwrap().len(), 4);

    let notes = fake.notes(PROJECT, 7);
    let push_note = notes.last().unwrap();
    assert!(push_note.system);
    assert!(
        push_note
            .body
            .starts_with("added 1 commit\n\n<ul><li>c3 - Commit c3</li></ul>")
    );
    assert_eq!(push_note.created_at, pushed_at);
}

// --- approvals ---------------------------------------------------------------------------------

#[tokio::test]
async fn approvals_come_with_system_notes() {
    let (fake, bot) = bot_fake().await;
    sample_mr(&fake);
    fake.add_group_member("ml/vision", "dave", DEVELOPER);
    fake.add_project_member(PROJECT, "rita", REPORTER);

    fake.approve(PROJECT, 7, "carol");
    let carol_at = fake.approvals(PROJECT, 7)[0].approved_at;
    let approvals = bot.get(&format!("{}/approvals", mr_path(7))).await;
    assert_eq!(approvals.status, 200, "{}", approvals.text);
    assert_eq!(approvals.body["approved"], true);
    assert_eq!(
        approvals.body["approved_by"][0]["user"]["username"],
        "carol"
    );
    assert_eq!(
        approvals.body["approved_by"][0]["user"]["id"],
        fake.user_id("carol")
    );
    assert_eq!(
        time(&approvals.body["approved_by"][0]["approved_at"]),
        carol_at
    );
    assert_eq!(approvals.body["user_has_approved"], false);

    let dave = Api::as_user(&fake, "dave");
    let approve = format!("{}/approve", mr_path(7));
    let wrong_sha = dave.post(&approve, json!({ "sha": "c1" })).await;
    assert_eq!(
        (wrong_sha.status, wrong_sha.body),
        (
            409,
            json!({ "message": "SHA does not match HEAD of source branch: c2" })
        )
    );
    let approved = dave.post(&approve, json!({ "sha": "c2" })).await;
    assert_eq!(approved.status, 201, "{}", approved.text);
    assert_eq!(
        column(&approved.body["approved_by"], "/user/username"),
        [json!("carol"), json!("dave")]
    );
    assert_eq!(approved.body["user_has_approved"], true);
    let twice = dave.post(&approve, json!({})).await;
    assert_eq!(
        (twice.status, twice.body),
        (401, json!({ "message": "401 Unauthorized" }))
    );
    let rita = Api::as_user(&fake, "rita");
    assert_eq!(
        rita.post(&approve, json!({})).await.status,
        403,
        "reporters cannot"
    );

    let unapprove = format!("{}/unapprove", mr_path(7));
    assert_eq!(dave.post(&unapprove, json!({})).await.status, 201);
    let again = dave.post(&unapprove, json!({})).await;
    assert_eq!(
        (again.status, again.body),
        (404, json!({ "message": "404 Not Found" }))
    );

    let system: Vec<(String, String)> = fake
        .notes(PROJECT, 7)
        .into_iter()
        .filter(|n| n.system)
        .map(|n| (n.author, n.body))
        .collect();
    let expected = [
        ("carol", "approved this merge request"),
        ("dave", "approved this merge request"),
        ("dave", "unapproved this merge request"),
    ]
    .map(|(a, b)| (a.to_owned(), b.to_owned()));
    assert_eq!(system, expected);
    let listed = bot
        .get(&format!("{}/notes?sort=asc", mr_path(7)))
        .await
        .body;
    assert_eq!(
        column(&listed, "/system"),
        [json!(true), json!(true), json!(true)]
    );
    assert_eq!(column(&listed, "/author/username")[0], "carol");
    assert_eq!(time(&listed[0]["created_at"]), carol_at);

    // The author approves unless the project prevents it.
    fake.add_project_member(PROJECT, "alice", DEVELOPER);
    let alice = Api::as_user(&fake, "alice");
    fake.set_approval_settings(
        PROJECT,
        ApprovalSettings {
            author_can_approve: false,
            ..ApprovalSettings::default()
        },
    );
    assert_eq!(alice.post(&approve, json!({})).await.status, 401);
    fake.set_approval_settings(PROJECT, ApprovalSettings::default());
    assert_eq!(alice.post(&approve, json!({})).await.status, 201);
}

#[tokio::test]
async fn pushes_reset_approvals_only_when_the_project_says_so() {
    let (fake, _) = bot_fake().await;
    sample_mr(&fake);
    fake.approve(PROJECT, 7, "carol");
    fake.push(PROJECT, 7, CommitSpec::new("c3", "alice", vec![]));
    assert_eq!(
        fake.approvals(PROJECT, 7).len(),
        1,
        "GitLab Free keeps approvals"
    );
    fake.set_approval_settings(
        PROJECT,
        ApprovalSettings {
            reset_approvals_on_push: true,
            ..ApprovalSettings::default()
        },
    );
    fake.push(PROJECT, 7, CommitSpec::new("c4", "alice", vec![]));
    assert!(fake.approvals(PROJECT, 7).is_empty());
}

// --- notes -------------------------------------------------------------------------------------

#[tokio::test]
async fn notes_are_created_and_edited_by_their_author() {
    let (fake, bot) = bot_fake().await;
    sample_mr(&fake);
    let alice_note = fake.add_note(PROJECT, 7, "alice", "/cc @carol");
    let notes = format!("{}/notes", mr_path(7));

    let created = bot
        .post(&notes, json!({ "body": "Tollgate: 2 checks" }))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let note = &created.body;
    assert_eq!(
        (
            &note["author"]["username"],
            &note["system"],
            &note["noteable_iid"]
        ),
        (&json!(BOT), &json!(false), &json!(7))
    );
    assert_eq!(note["noteable_type"], "MergeRequest");
    assert_eq!(note["created_at"], note["updated_at"]);
    let id = note["id"].as_u64().unwrap();
    let one = format!("{notes}/{id}");
    assert_eq!(bot.get(&one).await.body["body"], "Tollgate: 2 checks");

    fake.advance(TimeDelta::minutes(5));
    let edited = bot
        .put(&one, json!({ "body": "Tollgate: all clear" }))
        .await;
    assert_eq!(edited.status, 200, "{}", edited.text);
    assert_eq!(edited.body["body"], "Tollgate: all clear");
    assert!(time(&edited.body["updated_at"]) >= time(&note["created_at"]) + TimeDelta::minutes(5));
    assert_eq!(edited.body["created_at"], note["created_at"]);

    let others = bot
        .put(
            &format!("{notes}/{alice_note}"),
            json!({ "body": "hijacked" }),
        )
        .await;
    assert_eq!(
        (others.status, others.body),
        (403, json!({ "message": "403 Forbidden" }))
    );
    assert_eq!(fake.notes(PROJECT, 7)[0].body, "/cc @carol", "unchanged");
    fake.add_project_member(PROJECT, "mia", MAINTAINER);
    let mia = Api::as_user(&fake, "mia");
    let by_maintainer = mia
        .put(
            &format!("{notes}/{alice_note}"),
            json!({ "body": "edited by a maintainer" }),
        )
        .await;
    assert_eq!(by_maintainer.status, 200, "maintainers edit anyone's note");

    fake.approve(PROJECT, 7, "mia");
    let system = fake.notes(PROJECT, 7).last().unwrap().id;
    let system_edit = mia
        .put(&format!("{notes}/{system}"), json!({ "body": "x" }))
        .await;
    assert_eq!(system_edit.status, 403, "nobody edits a system note");

    let missing = bot.post(&notes, json!({})).await;
    assert_eq!(
        (missing.status, missing.body),
        (400, json!({ "error": "body is missing" }))
    );
    let blank = bot.put(&one, json!({ "body": "" })).await;
    assert_eq!(
        (blank.status, blank.body),
        (400, json!({ "error": "body is empty" }))
    );
    let gone = bot.get(&format!("{notes}/999999")).await;
    assert_eq!(gone.body, json!({ "message": "404 Not found" }));
    let no_mr = bot.get(&format!("{}/notes", mr_path(99))).await;
    assert_eq!(no_mr.status, 404);

    let order = |query: &'static str| {
        let url = format!("{notes}?{query}");
        let bot = &bot;
        async move { column(&bot.get(&url).await.body, "/id") }
    };
    let system = json!(system);
    let (alice_note, id) = (json!(alice_note), json!(id));
    assert_eq!(
        order("order_by=updated_at&sort=desc").await,
        [system.clone(), alice_note.clone(), id.clone()],
        "the last edited first"
    );
    assert_eq!(
        order("order_by=created_at").await,
        [system, id, alice_note],
        "newest first by default"
    );
}

#[tokio::test]
async fn notes_paginate_in_either_order() {
    let (fake, bot) = bot_fake().await;
    sample_mr(&fake);
    let ids: Vec<u64> = (0..25)
        .map(|i| fake.add_note(PROJECT, 7, "alice", &format!("note {i}")))
        .collect();
    let first = format!("{}/notes?sort=asc&per_page=10", mr_path(7));
    let page1 = bot.get(&first).await;
    assert_eq!(pagination(&page1), ["1", "10", "2", "", "25", "3"]);
    let next = link_to(&page1, "next").unwrap();
    assert!(
        next.ends_with("/notes?page=2&per_page=10&sort=asc"),
        "{next}"
    );
    let (items, pages) = all_pages(&bot, &first).await;
    assert_eq!(pages, 3);
    let listed: Vec<u64> = items.iter().map(|n| n["id"].as_u64().unwrap()).collect();
    assert_eq!(listed, ids, "oldest first with sort=asc");

    let newest = bot.get(&format!("{}/notes?per_page=10", mr_path(7))).await;
    assert_eq!(
        newest.body[0]["id"], ids[24],
        "GitLab sorts newest first by default"
    );
    let beyond = bot
        .get(&format!("{}/notes?per_page=10&page=9", mr_path(7)))
        .await;
    assert_eq!(beyond.body, json!([]));
    assert_eq!(pagination(&beyond), ["9", "10", "", "", "25", "3"]);
    let bad = bot.get(&format!("{}/notes?sort=up", mr_path(7))).await;
    assert_eq!(
        (bad.status, bad.body),
        (400, json!({ "error": "sort does not have a valid value" }))
    );
}

// --- repository --------------------------------------------------------------------------------

#[tokio::test]
async fn raw_files_take_url_encoded_paths() {
    let (fake, bot) = bot_fake().await;
    sample_mr(&fake);
    let raw = |path: &str, reference: &str| {
        format!("/projects/{ENCODED}/repository/files/{path}/raw?ref={reference}")
    };
    let found = bot.get(&raw("models%2Fnew%2Fmodel.onnx", "c2")).await;
    assert_eq!(found.status, 200, "{}", found.text);
    assert_eq!(found.text, "new weights\n");
    assert!(
        found
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(
        found.header("x-gitlab-file-path"),
        Some("models/new/model.onnx")
    );
    assert_eq!(found.header("x-gitlab-commit-id"), Some("c2"));
    assert_eq!(found.header("x-gitlab-last-commit-id"), Some("c1"));

    let removed = bot.get(&raw("README.md", "c2")).await;
    assert_eq!(
        (removed.status, removed.body),
        (404, json!({ "message": "404 File Not Found" }))
    );
    assert_eq!(bot.get(&raw("README.md", BASE)).await.text, "hello\n");
    assert_eq!(
        bot.get(&raw("README.md", "feature")).await.status,
        404,
        "a branch ref"
    );
    let unencoded = bot.get(&raw("models/new/model.onnx", "c2")).await;
    assert_eq!(
        (unencoded.status, unencoded.body),
        (404, json!({ "error": "404 Not Found" })),
        "a path with raw slashes matches no route"
    );
    let no_commit = bot.get(&raw("README.md", "nope")).await;
    assert_eq!(no_commit.body, json!({ "message": "404 Commit Not Found" }));

    let file = bot
        .get(&format!(
            "/projects/{ENCODED}/repository/files/eval%2Fmetrics.json?ref=c1"
        ))
        .await;
    assert_eq!(file.status, 200, "{}", file.text);
    assert_eq!(
        (
            &file.body["file_path"],
            &file.body["encoding"],
            &file.body["ref"]
        ),
        (&json!("eval/metrics.json"), &json!("base64"), &json!("c1"))
    );
    use base64::Engine as _;
    let content = base64::engine::general_purpose::STANDARD
        .decode(file.body["content"].as_str().unwrap())
        .unwrap();
    assert_eq!(content, b"{\n\"auc\": 0.95\n}\n");
    assert_eq!(file.body["last_commit_id"], "c1");
    let no_ref = bot
        .get(&format!("/projects/{ENCODED}/repository/files/README.md"))
        .await;
    assert_eq!(
        (no_ref.status, no_ref.body),
        (400, json!({ "error": "ref is missing" }))
    );
}

#[tokio::test]
async fn trees_list_paths_with_pages() {
    let (fake, bot) = bot_fake().await;
    sample_mr(&fake);
    let tree = |query: &str| format!("/projects/{ENCODED}/repository/tree?ref=c2{query}");
    let top = bot.get(&tree("")).await;
    assert_eq!(top.status, 200, "{}", top.text);
    assert_eq!(
        column(&top.body, "/path"),
        [json!("eval"), json!("models"), json!(".governance.toml")]
    );
    assert_eq!(column(&top.body, "/type")[0], "tree");
    let all = bot.get(&tree("&recursive=true")).await;
    let paths = column(&all.body, "/path");
    assert!(paths.contains(&json!("models/new")));
    assert!(paths.contains(&json!("models/new/model.onnx")));
    let paged = bot.get(&tree("&recursive=true&per_page=2&page=2")).await;
    assert_eq!(pagination(&paged)[..3], ["2", "2", "3"]);
    let sub = bot.get(&tree("&path=models")).await;
    assert_eq!(
        column(&sub.body, "/name"),
        [json!("new"), json!("renamed.onnx")]
    );
    let missing = bot.get(&tree("&path=nope")).await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn compare_lists_the_commits_and_diffs_between_refs() {
    let (fake, bot) = bot_fake().await;
    sample_mr(&fake);
    let compare = bot
        .get(&format!(
            "/projects/{ENCODED}/repository/compare?from=main&to=feature"
        ))
        .await;
    assert_eq!(compare.status, 200, "{}", compare.text);
    assert_eq!(
        column(&compare.body["commits"], "/id"),
        [json!("c1"), json!("c2")]
    );
    assert_eq!(compare.body["commit"]["id"], "c2");
    assert_eq!(compare.body["diffs"].as_array().unwrap().len(), 4);
    assert_eq!(compare.body["compare_same_ref"], false);
    let unknown = bot
        .get(&format!(
            "/projects/{ENCODED}/repository/compare?from=main&to=nope"
        ))
        .await;
    assert_eq!(unknown.body, json!({ "message": "404 Ref Not Found" }));
}

// --- members -----------------------------------------------------------------------------------

#[tokio::test]
async fn membership_is_effective_through_groups() {
    let (fake, bot) = bot_fake().await;
    fake.add_group_member("ml", "erin", REPORTER);
    fake.add_project_member(PROJECT, "erin", GUEST);
    fake.add_group_member("ml/vision", "frank", MAINTAINER);
    fake.add_group_member("ml/reviewers", "gina", OWNER);
    fake.share_project(PROJECT, "ml/reviewers", DEVELOPER);
    let stranger = fake.add_user("stranger");

    let level = |answer: &Answer| answer.body["access_level"].clone();
    let member = |user: &str| format!("/projects/{ENCODED}/members/all/{}", fake.user_id(user));
    let erin = bot.get(&member("erin")).await;
    assert_eq!(erin.status, 200, "{}", erin.text);
    assert_eq!(
        (&erin.body["username"], level(&erin)),
        (&json!("erin"), json!(REPORTER)),
        "the highest of group and project"
    );
    assert_eq!(level(&bot.get(&member("frank")).await), json!(MAINTAINER));
    assert_eq!(
        level(&bot.get(&member("gina")).await),
        json!(DEVELOPER),
        "a shared group grants at most the share's level"
    );
    assert_eq!(level(&bot.get(&member(BOT)).await), json!(DEVELOPER));
    let none = bot
        .get(&format!("/projects/{ENCODED}/members/all/{stranger}"))
        .await;
    assert_eq!(
        (none.status, none.body),
        (404, json!({ "message": "404 Not found" }))
    );
    let direct = bot
        .get(&format!(
            "/projects/{ENCODED}/members/{}",
            fake.user_id("frank")
        ))
        .await;
    assert_eq!(direct.status, 404, "frank is no direct member");
    assert_eq!(fake.access_level(PROJECT, "gina"), DEVELOPER);

    let reviewers = bot
        .get("/groups/ml%2Freviewers/members/all?per_page=1")
        .await;
    assert_eq!(reviewers.status, 200, "{}", reviewers.text);
    assert_eq!(column(&reviewers.body, "/username"), [json!(BOT)]);
    assert_eq!(pagination(&reviewers)[4], "3", "bot and erin via ml, gina");
    let gina = bot
        .get(&format!(
            "/groups/ml%2Freviewers/members/all/{}",
            fake.user_id("gina")
        ))
        .await;
    assert_eq!(level(&gina), json!(OWNER));
    let group = bot.get("/groups/ml%2Freviewers").await.body;
    assert_eq!(group["full_path"], "ml/reviewers");
    assert_eq!(group["parent_id"], bot.get("/groups/ml").await.body["id"]);

    let found = bot.get("/users?username=erin").await.body;
    assert_eq!(column(&found, "/id"), [json!(fake.user_id("erin"))]);
}

// --- commit statuses ---------------------------------------------------------------------------

#[tokio::test]
async fn statuses_keep_their_history() {
    let (fake, bot) = bot_fake().await;
    sample_mr(&fake);
    let post = format!("/projects/{ENCODED}/statuses/c2");
    let status =
        |state: &str| json!({ "state": state, "name": "tollgate", "description": "Governance" });

    let pending = bot.post(&post, status("pending")).await;
    assert_eq!(pending.status, 201, "{}", pending.text);
    assert_eq!(
        (
            &pending.body["status"],
            &pending.body["name"],
            &pending.body["ref"]
        ),
        (&json!("pending"), &json!("tollgate"), &json!("feature"))
    );
    assert_eq!(pending.body["author"]["username"], BOT);
    let first = pending.body["id"].clone();
    let again = bot.post(&post, status("pending")).await;
    assert_eq!(again.status, 400);
    assert!(
        again.body["message"]
            .as_str()
            .unwrap()
            .starts_with("Cannot transition status via :enqueue from :pending"),
        "{}",
        again.text
    );
    let running = bot.post(&post, status("running")).await;
    assert_eq!(
        (running.status, &running.body["id"]),
        (201, &first),
        "the same job"
    );
    let twice = bot.post(&post, status("running")).await;
    assert_eq!(twice.status, 400);
    assert!(
        twice
            .text
            .contains("Cannot transition status via :run from :running")
    );
    let success = bot.post(&post, status("success")).await;
    assert_eq!((success.status, &success.body["id"]), (201, &first));
    assert!(success.body["finished_at"].is_string());
    let rerun = bot.post(&post, status("success")).await;
    assert_eq!(rerun.status, 201);
    assert_ne!(
        rerun.body["id"], first,
        "a finished job is followed by a new one"
    );

    let other = bot
        .post(&post, json!({ "state": "failed", "context": "lint" }))
        .await;
    assert_eq!(other.body["name"], "lint");
    let unnamed = bot.post(&post, json!({ "state": "canceled" })).await;
    assert_eq!(unnamed.body["name"], "default");

    let list = format!("/projects/{ENCODED}/repository/commits/c2/statuses");
    let latest = bot.get(&list).await;
    assert_eq!(latest.status, 200, "{}", latest.text);
    assert_eq!(
        column(&latest.body, "/name"),
        [json!("tollgate"), json!("lint"), json!("default")]
    );
    assert_eq!(latest.body[0]["id"], rerun.body["id"]);
    let all = bot.get(&format!("{list}?all=true&name=tollgate")).await;
    assert_eq!(all.body.as_array().unwrap().len(), 2);

    assert_eq!(
        fake.status_history(PROJECT, "c2", "tollgate"),
        ["pending", "running", "success", "success"]
    );
    assert!(
        !fake
            .status_history(PROJECT, "c2", "tollgate")
            .contains(&"failed".to_owned())
    );
    let views = fake.statuses(PROJECT, "c2");
    assert_eq!(views[0].history.len(), 3);
    assert_eq!(views[0].description.as_deref(), Some("Governance"));

    let missing = bot.post(&post, json!({ "name": "x" })).await;
    assert_eq!(
        (missing.status, missing.body),
        (400, json!({ "error": "state is missing" }))
    );
    let invalid = bot.post(&post, json!({ "state": "done" })).await;
    assert_eq!(
        invalid.body,
        json!({ "error": "state does not have a valid value" })
    );
    let unknown = bot
        .post(
            &format!("/projects/{ENCODED}/statuses/nope"),
            status("pending"),
        )
        .await;
    assert_eq!(unknown.body, json!({ "message": "404 Commit Not Found" }));
    let reporter = {
        fake.add_project_member(PROJECT, "rita", REPORTER);
        Api::as_user(&fake, "rita")
    };
    let refused = reporter.post(&post, status("pending")).await;
    assert_eq!(
        (refused.status, refused.body),
        (403, json!({ "message": "403 Forbidden" }))
    );
    fake.post_status(PROJECT, "c2", "ci-bot", "build", "running");
    assert_eq!(fake.status_history(PROJECT, "c2", "build"), ["running"]);
}

// --- observation and failures ------------------------------------------------------------------

#[tokio::test]
async fn fail_next_injects_failures_then_serves() {
    let (fake, bot) = bot_fake().await;
    sample_mr(&fake);
    let path = mr_path(7);
    fake.fail_next(
        "GET",
        &format!("/projects/{ENCODED}/merge_requests"),
        502,
        2,
        None,
    );
    assert_eq!(bot.get(&path).await.status, 502);
    assert_eq!(bot.get(&path).await.status, 502);
    assert_eq!(bot.get(&path).await.status, 200);

    fake.fail_next("*", "/api/v4/projects/", 429, 1, Some(7));
    let limited = bot.get(&path).await;
    assert_eq!(
        (
            limited.status,
            limited.header("retry-after"),
            limited.text.as_str()
        ),
        (429, Some("7"), "Retry later\n")
    );
    assert_eq!(limited.header("ratelimit-remaining"), Some("0"));

    fake.fail_next("POST", "/projects/", 500, 1, None);
    let notes = format!("{path}/notes");
    let failed = bot.post(&notes, json!({ "body": "hi" })).await;
    assert_eq!(
        (failed.status, failed.body),
        (500, json!({ "message": "500 Internal Server Error" }))
    );
    assert!(
        fake.notes(PROJECT, 7).is_empty(),
        "an injected failure changes nothing"
    );
    assert_eq!(bot.post(&notes, json!({ "body": "hi" })).await.status, 201);

    let recorded = fake.requests();
    let statuses: Vec<u16> = recorded.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [502, 502, 200, 429, 500, 201]);
    let write = recorded.last().unwrap();
    assert_eq!(
        (write.method.as_str(), write.path.as_str()),
        ("POST", format!("/api/v4{notes}").as_str())
    );
    assert_eq!(write.body, Some(json!({ "body": "hi" })));
    assert_eq!(write.user.as_deref(), Some(BOT));
    fake.clear_requests();
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn form_encoded_writes_are_accepted() {
    let (fake, bot) = bot_fake().await;
    sample_mr(&fake);
    let answer = bot
        .send(
            bot.request(Method::POST, &format!("{}/notes", mr_path(7)))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("body=from+a+form"),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    assert_eq!(answer.body["body"], "from a form");
    let query = bot
        .post(
            &format!("/projects/{ENCODED}/statuses/c2?state=pending&name=q"),
            json!({}),
        )
        .await;
    assert_eq!(
        query.body["status"], "pending",
        "query parameters count too"
    );
}

// --- issues ------------------------------------------------------------------------------------

fn issues_path() -> String {
    format!("/projects/{ENCODED}/issues")
}

#[tokio::test]
async fn issues_are_opened_read_and_labelled() {
    let (fake, bot) = bot_fake().await;
    sample_mr(&fake);
    let alice = fake.add_user("alice");
    let created = bot
        .post(
            &issues_path(),
            json!({
                "title": "Post-incident review: !7",
                "description": "What happened",
                "labels": "post-incident-review,incident",
                "assignee_ids": [alice, 999_999],
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let issue = &created.body;
    assert_eq!(issue["iid"], 1, "issue iids count apart from !7");
    assert_eq!(issue["project_id"], fake.project_id(PROJECT));
    assert_eq!(issue["state"], "opened");
    assert_eq!(issue["labels"], json!(["incident", "post-incident-review"]));
    assert_eq!(column(&issue["assignees"], "/username"), [json!("alice")]);
    assert_eq!(issue["assignee"]["username"], "alice");
    assert_eq!(issue["author"]["username"], BOT);
    assert_eq!(
        (&issue["closed_at"], &issue["closed_by"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(issue["created_at"], issue["updated_at"]);
    assert_eq!(
        issue["web_url"],
        format!("{}/{PROJECT}/-/issues/1", fake.url())
    );
    assert_eq!(issue["references"]["full"], format!("{PROJECT}#1"));
    let one = format!("{}/1", issues_path());
    assert_eq!(bot.get(&one).await.body, *issue, "GET answers the same");

    let second = bot
        .post(&issues_path(), json!({ "title": "Another" }))
        .await;
    assert_eq!(
        (&second.body["iid"], &second.body["description"]),
        (&json!(2), &Value::Null)
    );
    assert!(
        second.body["id"].as_u64() > issue["id"].as_u64(),
        "ids are global"
    );

    let relabelled = bot
        .put(
            &one,
            json!({ "add_labels": "rollback", "remove_labels": "incident", "title": "Review !7" }),
        )
        .await;
    assert_eq!(relabelled.status, 200, "{}", relabelled.text);
    assert_eq!(
        relabelled.body["labels"],
        json!(["post-incident-review", "rollback"])
    );
    assert_eq!(relabelled.body["title"], "Review !7");
    let replaced = bot.put(&one, json!({ "labels": ["b", "a", "b"] })).await;
    assert_eq!(replaced.body["labels"], json!(["a", "b"]));
    let described = bot.put(&one, json!({ "description": "Root cause" })).await;
    assert_eq!(described.body["description"], "Root cause");
    assert!(time(&described.body["updated_at"]) > time(&issue["updated_at"]));

    let untitled = bot
        .post(&issues_path(), json!({ "description": "x" }))
        .await;
    assert_eq!(
        (untitled.status, untitled.body),
        (400, json!({ "error": "title is missing" }))
    );
    let blank = bot.post(&issues_path(), json!({ "title": " " })).await;
    assert_eq!(
        (blank.status, blank.body),
        (400, json!({ "message": { "title": ["can't be blank"] } }))
    );
    let cleared = bot.put(&one, json!({ "title": "" })).await;
    assert_eq!(
        cleared.body,
        json!({ "message": { "title": ["can't be blank"] } })
    );
    let missing = bot.get(&format!("{}/9", issues_path())).await;
    assert_eq!(
        (missing.status, missing.body),
        (404, json!({ "message": "404 Not found" }))
    );
    let listed = bot
        .get(&format!("{}?labels=a,b&state=opened", issues_path()))
        .await;
    assert_eq!(column(&listed.body, "/iid"), [json!(1)]);
    let by_author = bot
        .get(&format!(
            "{}?author_id={}&state=all",
            issues_path(),
            fake.user_id(BOT)
        ))
        .await;
    assert_eq!(column(&by_author.body, "/iid"), [json!(2), json!(1)]);

    let views = fake.issues(PROJECT);
    assert_eq!(views.len(), 2);
    assert_eq!(
        (
            views[0].iid,
            views[0].title.as_str(),
            views[0].description.as_str(),
            views[0].state.as_str()
        ),
        (1, "Review !7", "Root cause", "opened")
    );
    assert_eq!(views[0].labels, ["a", "b"]);
    assert_eq!(views[0].assignees, ["alice"]);
    assert_eq!(views[0].author, BOT);
    assert_eq!(views[1].description, "", "none is empty in the view");
    assert_eq!(fake.open_issue(PROJECT, "carol", "By hand", &["x"]), 3);
}

#[tokio::test]
async fn issues_close_reopen_and_take_notes() {
    let (fake, bot) = bot_fake().await;
    sample_mr(&fake);
    let created = bot
        .send(
            bot.request(Method::POST, &issues_path())
                .header("content-type", "application/x-www-form-urlencoded")
                .body("title=From+a+form&labels=a%2Cb"),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["labels"], json!(["a", "b"]));
    let one = format!("{}/1", issues_path());

    let closed = bot.put(&one, json!({ "state_event": "close" })).await;
    assert_eq!(closed.status, 200, "{}", closed.text);
    assert_eq!(closed.body["state"], "closed");
    assert_eq!(closed.body["closed_by"]["username"], BOT);
    assert!(closed.body["closed_at"].is_string());
    let reopened = bot.put(&one, json!({ "state_event": "reopen" })).await;
    assert_eq!(
        (&reopened.body["state"], &reopened.body["closed_by"]),
        (&json!("opened"), &Value::Null)
    );
    fake.close_issue(PROJECT, 1, "carol");
    let view = &fake.issues(PROJECT)[0];
    assert_eq!(
        (view.state.as_str(), view.closed_by.as_deref()),
        ("closed", Some("carol"))
    );

    let notes = format!("{one}/notes");
    let posted = bot.post(&notes, json!({ "body": "Review due" })).await;
    assert_eq!(posted.status, 201, "{}", posted.text);
    assert_eq!(
        (
            &posted.body["noteable_type"],
            &posted.body["noteable_iid"],
            &posted.body["noteable_id"]
        ),
        (&json!("Issue"), &json!(1), &created.body["id"])
    );
    let reply = fake.add_issue_note(PROJECT, 1, "carol", "Done");
    let listed = bot.get(&format!("{notes}?sort=asc")).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let bodies = column(&listed.body, "/body");
    assert_eq!(
        bodies,
        [
            json!("closed"),
            json!("reopened"),
            json!("closed"),
            json!("Review due"),
            json!("Done")
        ],
        "state changes leave system notes"
    );
    let id = posted.body["id"].as_u64().unwrap();
    let edited = bot
        .put(
            &format!("{notes}/{id}"),
            json!({ "body": "Review overdue" }),
        )
        .await;
    assert_eq!(edited.body["body"], "Review overdue");
    let others = bot
        .put(&format!("{notes}/{reply}"), json!({ "body": "x" }))
        .await;
    assert_eq!(others.status, 403);
    let seen = fake.issue_notes(PROJECT, 1);
    assert_eq!(
        seen.iter()
            .map(|n| (n.author.as_str(), n.system))
            .collect::<Vec<_>>(),
        [
            (BOT, true),
            (BOT, true),
            ("carol", true),
            (BOT, false),
            ("carol", false)
        ]
    );
    assert_eq!(seen[3].body, "Review overdue");
    assert_eq!(
        bot.get(&format!("{}/9/notes", issues_path())).await.body,
        json!({ "message": "404 Issue Not Found" })
    );
    assert!(
        fake.notes(PROJECT, 7).is_empty(),
        "the MR's notes are apart"
    );

    let stranger = Api::as_user(&fake, "stranger");
    let refused = stranger.put(&one, json!({ "state_event": "reopen" })).await;
    assert_eq!(
        (refused.status, refused.body),
        (403, json!({ "message": "403 Forbidden" }))
    );
    let theirs = stranger
        .post(&issues_path(), json!({ "title": "Mine" }))
        .await;
    assert_eq!(theirs.status, 201, "anyone who sees the project opens one");
    let own = stranger
        .put(
            &format!("{}/2", issues_path()),
            json!({ "state_event": "close" }),
        )
        .await;
    assert_eq!(own.status, 200, "its author edits it");
    let bad = bot.put(&one, json!({ "state_event": "shut" })).await;
    assert_eq!(
        bad.body,
        json!({ "error": "state_event does not have a valid value" })
    );
    let nothing = bot.put(&one, json!({})).await;
    assert_eq!(nothing.status, 400);
    assert!(
        nothing.body["error"]
            .as_str()
            .unwrap()
            .ends_with("are missing, at least one parameter must be provided")
    );
}

// --- branches, merges and reverts --------------------------------------------------------------

fn repo_path(rest: &str) -> String {
    format!("/projects/{ENCODED}/repository/{rest}")
}

#[tokio::test]
async fn branches_are_created_from_a_ref() {
    let (fake, bot) = bot_fake().await;
    sample_mr(&fake);
    let created = bot
        .post(
            &repo_path("branches"),
            json!({ "branch": "rollback-7", "ref": "feature" }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let branch = &created.body;
    assert_eq!(branch["name"], "rollback-7");
    assert_eq!(branch["commit"]["id"], "c2");
    assert_eq!(branch["commit"]["parent_ids"], json!(["c1"]));
    assert_eq!(
        (&branch["protected"], &branch["merged"], &branch["default"]),
        (&json!(false), &json!(false), &json!(false))
    );
    assert_eq!(branch["can_push"], true);
    assert_eq!(
        branch["web_url"],
        format!("{}/{PROJECT}/-/tree/rollback-7", fake.url())
    );
    assert_eq!(
        fake.branch_tip(PROJECT, "rollback-7").as_deref(),
        Some("c2")
    );
    let by_query = bot
        .post(
            &repo_path("branches?branch=from-base&ref=base0000"),
            json!({}),
        )
        .await;
    assert_eq!(by_query.status, 201, "{}", by_query.text);
    assert_eq!(
        bot.get(&repo_path("branches/from-base")).await.body["commit"]["id"],
        BASE
    );

    let again = bot
        .post(
            &repo_path("branches"),
            json!({ "branch": "rollback-7", "ref": "main" }),
        )
        .await;
    assert_eq!(
        (again.status, again.body),
        (400, json!({ "message": "Branch already exists" }))
    );
    let unknown = bot
        .post(
            &repo_path("branches"),
            json!({ "branch": "x", "ref": "nope" }),
        )
        .await;
    assert_eq!(
        (unknown.status, unknown.body),
        (400, json!({ "message": "Invalid reference name: nope" }))
    );
    let invalid = bot
        .post(
            &repo_path("branches"),
            json!({ "branch": "a..b", "ref": "main" }),
        )
        .await;
    assert_eq!(invalid.body, json!({ "message": "Branch name is invalid" }));
    let missing = bot.post(&repo_path("branches"), json!({})).await;
    assert_eq!(
        (missing.status, missing.body),
        (400, json!({ "error": "branch is missing, ref is missing" }))
    );
    fake.add_project_member(PROJECT, "rita", REPORTER);
    let reporter = Api::as_user(&fake, "rita")
        .post(
            &repo_path("branches"),
            json!({ "branch": "r", "ref": "main" }),
        )
        .await;
    assert_eq!(reporter.status, 403);
}

#[tokio::test]
async fn merging_makes_a_merge_commit() {
    let (fake, bot) = bot_fake().await;
    sample_mr(&fake);
    let license = CommitSpec::new("", "carol", vec![FileChange::added("LICENSE", "MIT\n")]);
    let tip = fake.commit_to_branch(PROJECT, "main", license);
    assert_eq!(
        fake.branch_tip(PROJECT, "main").as_deref(),
        Some(tip.as_str())
    );
    assert_eq!(tip.len(), 40, "a generated sha");
    fake.add_project_member(PROJECT, "mia", MAINTAINER);
    let merge = fake.merge_mr(PROJECT, 7, "mia");

    assert_eq!(fake.branch_tip(PROJECT, "main"), Some(merge.clone()));
    let mut expected = fake.tree_at(PROJECT, "c2");
    expected.insert("LICENSE".to_owned(), "MIT\n".to_owned());
    assert_eq!(
        fake.tree_at(PROJECT, "main"),
        expected,
        "both sides' changes"
    );
    let commit = bot.get(&repo_path(&format!("commits/{merge}"))).await.body;
    assert_eq!(commit["parent_ids"], json!([tip, "c2"]));
    assert_eq!(commit["title"], "Merge branch 'feature' into 'main'");
    assert_eq!(
        commit["message"],
        format!("Merge branch 'feature' into 'main'\n\nRetrain\n\nSee merge request {PROJECT}!7")
    );
    assert_eq!(commit["author_name"], "mia");

    let mr = bot.get(&mr_path(7)).await.body;
    assert_eq!(mr["state"], "merged");
    assert_eq!(mr["merge_commit_sha"], merge);
    assert_eq!(mr["merged_by"]["username"], "mia");
    assert_eq!(mr["merge_user"]["username"], "mia");
    assert!(mr["merged_at"].is_string());
    assert_eq!(
        (&mr["closed_at"], &mr["closed_by"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(mr["sha"], "c2", "the head stays");
    let note = fake.notes(PROJECT, 7).pop().unwrap();
    assert_eq!(
        (note.body.as_str(), note.author.as_str(), note.system),
        ("merged", "mia", true)
    );
    let views = fake.merge_requests(PROJECT);
    assert_eq!(views[0].state, "merged");
    assert_eq!(views[0].merge_commit_sha.as_deref(), Some(merge.as_str()));
    assert_eq!(views[0].labels, ["ml", "sensitive-domain"]);
    let labelled = bot
        .put(
            &mr_path(7),
            json!({ "add_labels": "rolled-back", "state_event": "close" }),
        )
        .await;
    assert_eq!(labelled.status, 200, "{}", labelled.text);
    assert_eq!(
        labelled.body["labels"],
        json!(["ml", "rolled-back", "sensitive-domain"])
    );
    assert_eq!(
        labelled.body["state"], "merged",
        "a merged one stays merged"
    );
    let feature = bot.get(&repo_path("branches/feature")).await.body;
    assert_eq!(feature["merged"], true, "in main's history now");
    let statuses = bot
        .post(
            &format!("/projects/{ENCODED}/statuses/c1?state=success"),
            json!({}),
        )
        .await;
    assert_eq!(statuses.body["ref"], "feature", "c1 is on both branches");
}

/// `sample_mr` merged by mia after main moved on (LICENSE); returns (main's tree before the
/// merge, the merge commit).
fn merged_sample(fake: &FakeGitLab) -> (std::collections::BTreeMap<String, String>, String) {
    sample_mr(fake);
    let license = CommitSpec::new("m1", "carol", vec![FileChange::added("LICENSE", "MIT\n")]);
    fake.commit_to_branch(PROJECT, "main", license);
    let before = fake.tree_at(PROJECT, "main");
    (before, fake.merge_mr(PROJECT, 7, "mia"))
}

async fn revert(api: &Api, sha: &str, branch: &str) -> Answer {
    api.post(
        &repo_path(&format!("commits/{sha}/revert")),
        json!({ "branch": branch }),
    )
    .await
}

#[tokio::test]
async fn reverting_a_merge_restores_the_tree_before_it() {
    let (fake, bot) = bot_fake().await;
    let (before, merge) = merged_sample(&fake);
    let branch = bot
        .post(
            &repo_path("branches"),
            json!({ "branch": "revert-7", "ref": "main" }),
        )
        .await;
    assert_eq!(branch.status, 201, "{}", branch.text);

    let reverted = revert(&bot, &merge, "revert-7").await;
    assert_eq!(reverted.status, 201, "{}", reverted.text);
    let commit = &reverted.body;
    let sha = commit["id"].as_str().unwrap().to_owned();
    assert_eq!(
        commit["title"],
        "Revert \"Merge branch 'feature' into 'main'\""
    );
    assert_eq!(
        commit["message"],
        "Revert \"Merge branch 'feature' into 'main'\"\n\nThis reverts merge request !7"
    );
    assert_eq!(commit["parent_ids"], json!([merge]));
    assert_eq!(
        (&commit["author_name"], &commit["committer_email"]),
        (&json!(BOT), &json!(format!("{BOT}@example.com")))
    );
    assert_eq!(commit["short_id"], sha[..8]);
    assert_eq!(fake.branch_tip(PROJECT, "revert-7"), Some(sha.clone()));
    assert_eq!(
        fake.tree_at(PROJECT, "revert-7"),
        before,
        "as before the merge"
    );
    assert_eq!(
        fake.branch_tip(PROJECT, "main"),
        Some(merge.clone()),
        "main stays"
    );

    let twice = revert(&bot, &merge, "revert-7").await;
    assert_eq!(twice.status, 400);
    assert_eq!(twice.body["error_code"], "empty", "nothing left to revert");
    assert!(
        twice.body["message"]
            .as_str()
            .unwrap()
            .starts_with("Sorry, we cannot revert this commit automatically.")
    );
    let plain = revert(&bot, "c1", "revert-7").await;
    assert_eq!(plain.status, 400, "c1's changes are gone already");

    let unknown = revert(&bot, "0123456789abcdef", "revert-7").await;
    assert_eq!(
        (unknown.status, unknown.body),
        (404, json!({ "message": "404 Commit Not Found" }))
    );
    let no_branch = revert(&bot, &merge, "nope").await;
    assert_eq!(
        (no_branch.status, no_branch.body),
        (404, json!({ "message": "404 Branch Not Found" }))
    );
    let no_param = bot
        .post(&repo_path(&format!("commits/{merge}/revert")), json!({}))
        .await;
    assert_eq!(no_param.body, json!({ "error": "branch is missing" }));
    let protected = revert(&bot, &merge, "main").await;
    assert_eq!(protected.status, 403, "main is protected from developers");
}

#[tokio::test]
async fn a_revert_that_does_not_apply_is_a_conflict() {
    let (fake, bot) = bot_fake().await;
    let (_, merge) = merged_sample(&fake);
    let later = CommitSpec::new(
        "m2",
        "carol",
        vec![FileChange::modified(
            "eval/metrics.json",
            "{\n\"auc\": 0.97\n}\n",
        )],
    );
    fake.commit_to_branch(PROJECT, "main", later);
    fake.set_branch(PROJECT, "revert-7", "m2");
    let refused = revert(&bot, &merge, "revert-7").await;
    assert_eq!(
        (refused.status, refused.body),
        (
            400,
            json!({
                "message": "Sorry, we cannot revert this commit automatically. This commit may already have been reverted, or a more recent commit may have updated some of its content.",
                "error_code": "conflict",
            })
        )
    );
    assert_eq!(fake.branch_tip(PROJECT, "revert-7").as_deref(), Some("m2"));

    // A later commit that leaves the merge's files alone does not stand in the way.
    let unrelated = CommitSpec::new("m3", "carol", vec![FileChange::added("NOTICE", "n\n")]);
    fake.commit_to_branch(PROJECT, "feature", unrelated);
    fake.set_branch(PROJECT, "revert-c2", "m3");
    let c2 = revert(&bot, "c2", "revert-c2").await;
    assert_eq!(c2.status, 201, "{}", c2.text);
    assert_eq!(
        c2.body["message"],
        "Revert \"Commit c2\"\n\nThis reverts commit c2"
    );
    let tree = fake.tree_at(PROJECT, "revert-c2");
    assert_eq!(tree.get("README.md").map(String::as_str), Some("hello\n"));
    assert!(tree.contains_key("models/old.onnx") && !tree.contains_key("models/renamed.onnx"));
    assert!(tree.contains_key("NOTICE"));
}

/// The (old path, new path, new, renamed, deleted) of each file of a diff list.
fn shapes(diffs: &Value) -> Vec<(String, String, bool, bool, bool)> {
    let mut shapes: Vec<_> = diffs
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let text = |k: &str| d[k].as_str().unwrap().to_owned();
            let flag = |k: &str| d[k].as_bool().unwrap();
            (
                text("old_path"),
                text("new_path"),
                flag("new_file"),
                flag("renamed_file"),
                flag("deleted_file"),
            )
        })
        .collect();
    shapes.sort();
    shapes
}

#[tokio::test]
async fn a_merge_request_from_the_revert_branch_undoes_the_original() {
    let (fake, bot) = bot_fake().await;
    let (before, merge) = merged_sample(&fake);
    bot.post(
        &repo_path("branches"),
        json!({ "branch": "revert-7", "ref": "main" }),
    )
    .await;
    let sha = revert(&bot, &merge, "revert-7").await.body["id"].clone();
    let opened_at = fake.now();
    let mrs = format!("/projects/{ENCODED}/merge_requests");
    let created = bot
        .post(
            &mrs,
            json!({
                "source_branch": "revert-7",
                "target_branch": "main",
                "title": "Revert !7",
                "description": "Rollback of !7",
                "labels": "rollback,incident",
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let mr = &created.body;
    assert_eq!(mr["iid"], 8, "the next merge request iid");
    assert_eq!(
        (&mr["state"], &mr["author"]["username"], &mr["sha"]),
        (&json!("opened"), &json!(BOT), &sha)
    );
    assert_eq!(mr["labels"], json!(["incident", "rollback"]));
    assert_eq!(mr["description"], "Rollback of !7");
    assert_eq!(
        mr["diff_refs"],
        json!({ "base_sha": merge, "head_sha": sha, "start_sha": merge })
    );
    assert_eq!(mr["merge_commit_sha"], Value::Null);
    assert_eq!(
        mr["web_url"],
        format!("{}/{PROJECT}/-/merge_requests/8", fake.url())
    );
    assert_eq!(bot.get(&mr_path(8)).await.body, *mr);

    let original = shapes(&bot.get(&format!("{}/diffs", mr_path(7))).await.body);
    let undo = bot.get(&format!("{}/diffs", mr_path(8))).await.body;
    let mut reversed: Vec<_> = original
        .into_iter()
        .map(|(old, new, added, renamed, deleted)| (new, old, deleted, renamed, added))
        .collect();
    reversed.sort();
    assert_eq!(shapes(&undo), reversed);
    let metrics = undo
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["new_path"] == "eval/metrics.json")
        .unwrap();
    assert_eq!(
        metrics["diff"],
        "@@ -1,3 +1,3 @@\n {\n-\"auc\": 0.95\n+\"auc\": 0.91\n }\n"
    );
    let changes = bot.get(&format!("{}/changes", mr_path(8))).await.body;
    assert_eq!(changes["changes"].as_array().unwrap().len(), 4);
    let commits = bot.get(&format!("{}/commits", mr_path(8))).await.body;
    assert_eq!(column(&commits, "/id"), [sha]);
    assert_eq!(commits[0]["author_name"], BOT);
    let versions = fake.versions(PROJECT, 8);
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].created_at, opened_at, "dated at the opening");
    let note = bot
        .post(&format!("{}/notes", mr_path(8)), json!({ "body": "hi" }))
        .await;
    assert_eq!(note.status, 201, "{}", note.text);
    fake.add_project_member(PROJECT, "mia", MAINTAINER);
    let approved = Api::as_user(&fake, "mia")
        .post(&format!("{}/approve", mr_path(8)), json!({}))
        .await;
    assert_eq!(approved.status, 201, "{}", approved.text);

    let again = bot
        .post(
            &mrs,
            json!({ "source_branch": "revert-7", "target_branch": "main", "title": "Again" }),
        )
        .await;
    assert_eq!(
        (again.status, again.body),
        (
            409,
            json!({ "message": ["Another open merge request already exists for this source branch: !8"] })
        )
    );
    let same = bot
        .post(
            &mrs,
            json!({ "source_branch": "main", "target_branch": "main", "title": "x" }),
        )
        .await;
    assert_eq!(
        (same.status, same.body),
        (
            422,
            json!({ "message": ["You can't use same project/branch for source and target"] })
        )
    );
    let missing = bot
        .post(
            &mrs,
            json!({ "source_branch": "nope", "target_branch": "main", "title": "x" }),
        )
        .await;
    assert_eq!(
        (missing.status, missing.body),
        (
            422,
            json!({ "message": ["Source branch \"nope\" does not exist"] })
        )
    );
    let incomplete = bot.post(&mrs, json!({ "title": "x" })).await;
    assert_eq!(
        incomplete.body,
        json!({ "error": "source_branch is missing, target_branch is missing" })
    );

    fake.merge_mr(PROJECT, 8, "mia");
    assert_eq!(
        fake.tree_at(PROJECT, "main"),
        before,
        "the rollback is merged"
    );
    let views = fake.merge_requests(PROJECT);
    assert_eq!(
        (
            views[1].iid,
            views[1].state.as_str(),
            views[1].author.as_str()
        ),
        (8, "merged", BOT)
    );
    assert_eq!(views[1].source_branch, "revert-7");
}

#[tokio::test]
async fn merge_requests_are_edited_through_the_api() {
    let (fake, bot) = bot_fake().await;
    sample_mr(&fake);
    let edited = bot
        .put(
            &mr_path(7),
            json!({ "remove_labels": "ml", "title": "Retrain v2", "description": "Updated" }),
        )
        .await;
    assert_eq!(edited.status, 200, "{}", edited.text);
    assert_eq!(
        (
            &edited.body["labels"],
            &edited.body["title"],
            &edited.body["description"]
        ),
        (
            &json!(["sensitive-domain"]),
            &json!("Retrain v2"),
            &json!("Updated")
        )
    );
    let closed = bot
        .put(&mr_path(7), json!({ "state_event": "close" }))
        .await;
    assert_eq!(
        (&closed.body["state"], &closed.body["closed_by"]["username"]),
        (&json!("closed"), &json!(BOT))
    );
    let reopened = bot
        .put(&mr_path(7), json!({ "state_event": "reopen" }))
        .await;
    assert_eq!(
        (&reopened.body["state"], &reopened.body["closed_at"]),
        (&json!("opened"), &Value::Null)
    );
    let notes: Vec<String> = fake.notes(PROJECT, 7).into_iter().map(|n| n.body).collect();
    assert_eq!(notes, ["changed the description", "closed", "reopened"]);
    let reader = Api::as_user(&fake, "stranger")
        .put(&mr_path(7), json!({ "add_labels": "x" }))
        .await;
    assert_eq!(reader.status, 403, "a non-member is no developer");
    let nothing = bot.put(&mr_path(7), json!({})).await;
    assert_eq!(nothing.status, 400);
    assert_eq!(
        fake.merge_requests(PROJECT)[0].labels,
        ["sensitive-domain"],
        "refusals change nothing"
    );
}
