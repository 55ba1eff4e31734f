//! Tests of the fake GitHub itself (`tests/common/fake_github.rs`): plain HTTP calls with
//! reqwest, plus octocrab's models and client to show a real client gets what it expects.

mod common;

use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use common::fake_github::{
    CommitSpec, FakeGitHub, FileChange, PR_FILES_CAP, PrSpec, ProtectionAnswer,
};
use reqwest::Method;
use serde_json::{Value, json};

const REPO: &str = "acme/models";
const USER_AGENT: &str = "tollgate-selftest";
const BASE: &str = "base0000";

/// A reply: status, headers and JSON body (`Null` when empty).
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Plain reqwest calls against the fake, as one credential.
struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    fn new(fake: &FakeGitHub, token: Option<&str>) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: fake.url(),
            token: token.map(str::to_owned),
        }
    }

    /// A request to a path (`/repos/…`) or to a full URL (a `Link` target).
    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let url = match path.starts_with("http") {
            true => path.to_owned(),
            false => format!("{}{path}", self.base),
        };
        let builder = self
            .http
            .request(method, url)
            .header("user-agent", USER_AGENT)
            .header("accept", "application/vnd.github+json");
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    async fn send(&self, builder: reqwest::RequestBuilder) -> Answer {
        let response = builder.send().await.expect("the fake answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a body");
        let body = match text.is_empty() {
            true => Value::Null,
            false => serde_json::from_str(&text).expect("a JSON body"),
        };
        Answer {
            status,
            headers,
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

    async fn patch(&self, path: &str, body: Value) -> Answer {
        self.send(self.request(Method::PATCH, path).json(&body))
            .await
    }
}

/// A fake with App `tollgate` (id 42) and an installation token for it.
async fn app_fake() -> (FakeGitHub, Api) {
    let fake = FakeGitHub::start().await;
    fake.set_app("tollgate", 42);
    let jwt = Api::new(&fake, Some(&fake.app_jwt()));
    let path = format!(
        "/app/installations/{}/access_tokens",
        fake.installation_id()
    );
    let minted = jwt.post(&path, json!({})).await;
    assert_eq!(minted.status, 201, "{}", minted.body);
    let token = minted.body["token"].as_str().expect("a token").to_owned();
    let api = Api::new(&fake, Some(&token));
    (fake, api)
}

/// PR #7: base has a README, metrics, an old model and a policy; commit c1 (alice) adds a
/// model and edits the metrics; commit c2 (bob, committed by web-flow) renames the old model
/// and deletes the README.
fn sample_pr(fake: &FakeGitHub) {
    fake.set_file(REPO, BASE, "README.md", "hello\n");
    fake.set_file(REPO, BASE, "eval/metrics.json", "{\n\"auc\": 0.91\n}\n");
    fake.set_file(REPO, BASE, "models/old.onnx", "weights\n");
    fake.set_file(REPO, BASE, ".governance.toml", "version = 1\n");
    let c1 = CommitSpec::new(
        "c1",
        "alice",
        vec![
            FileChange::added("models/new/model.onnx", "new weights\n"),
            FileChange::modified("eval/metrics.json", "{\n\"auc\": 0.95\n}\n"),
        ],
    );
    let c2 = CommitSpec {
        committer: "web-flow".to_owned(),
        ..CommitSpec::new(
            "c2",
            "bob",
            vec![
                FileChange::renamed("models/old.onnx", "models/renamed.onnx"),
                FileChange::removed("README.md"),
            ],
        )
    };
    fake.open_pr(
        REPO,
        PrSpec {
            number: 7,
            title: "Retrain".to_owned(),
            body: "## Rollback plan\nRevert.".to_owned(),
            labels: vec!["sensitive-domain".to_owned()],
            commits: vec![c1, c2],
            ..PrSpec::default()
        },
    );
}

/// A PR #1 whose single commit adds `count` files.
fn wide_pr(fake: &FakeGitHub, count: usize) {
    let files = (0..count)
        .map(|i| FileChange::added(&format!("data/f{i:05}.csv"), "a,b\n"))
        .collect();
    let commits = vec![CommitSpec::new("wide", "alice", files)];
    fake.open_pr(
        REPO,
        PrSpec {
            commits,
            ..PrSpec::default()
        },
    );
}

/// The values at several JSON pointers, as one array (compact assertions).
fn pick(value: &Value, pointers: &[&str]) -> Value {
    pointers
        .iter()
        .map(|p| value.pointer(p).cloned().unwrap_or(Value::Null))
        .collect()
}

/// One field of every item of a list.
fn column(list: &Value, pointer: &str) -> Vec<Value> {
    let items = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"));
    items
        .iter()
        .map(|item| pick(item, &[pointer])[0].clone())
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

/// Every item of a list, following `rel="next"` links; returns the items and pages read.
async fn all_pages(api: &Api, first: &str) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut next = Some(first.to_owned());
    let mut pages = 0;
    while let Some(url) = next {
        let answer = api.get(&url).await;
        assert_eq!(answer.status, 200, "{url}: {}", answer.body);
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

// --- identity and authentication -------------------------------------------------------------

#[tokio::test]
async fn app_identity_and_installation_tokens() {
    let fake = FakeGitHub::start().await;
    fake.set_app("tollgate", 42);
    sample_pr(&fake);
    let jwt = Api::new(&fake, Some(&fake.app_jwt()));
    let app = jwt.get("/app").await;
    assert_eq!(app.status, 200);
    assert_eq!(pick(&app.body, &["/slug", "/id"]), json!(["tollgate", 42]));
    assert!(app.body["owner"]["login"].is_string());
    let installation = jwt.get(&format!("/repos/{REPO}/installation")).await;
    assert_eq!(installation.body["id"], json!(fake.installation_id()));

    let path = format!(
        "/app/installations/{}/access_tokens",
        fake.installation_id()
    );
    let minted = jwt.post(&path, json!({})).await;
    assert_eq!(
        (minted.status, &minted.body["token"]),
        (201, &json!("ghs_fake_1"))
    );
    let expires = time(&minted.body["expires_at"]);
    assert!(expires > Utc::now() + TimeDelta::minutes(55), "{expires}");
    assert_eq!(jwt.post(&path, json!({})).await.body["token"], "ghs_fake_2");
    assert_eq!(fake.tokens_minted(), 2);
    let elsewhere = jwt
        .post("/app/installations/999/access_tokens", json!({}))
        .await;
    assert_eq!(elsewhere.status, 404);

    let installation = Api::new(&fake, Some("ghs_fake_1"));
    let pr = format!("/repos/{REPO}/pulls/7");
    assert_eq!(installation.get(&pr).await.status, 200);
    assert_eq!(
        installation.get("/user").await.status,
        403,
        "/user is not for installations"
    );
    assert_eq!(
        installation.post(&path, json!({})).await.status,
        401,
        "minting needs the JWT"
    );
    assert_eq!(
        jwt.get(&pr).await.status,
        401,
        "a JWT is not an installation token"
    );
    fake.assert_requests_match_openapi();
}

#[tokio::test]
async fn requests_need_credentials_and_a_user_agent() {
    let fake = FakeGitHub::start().await;
    sample_pr(&fake);
    let path = format!("{}/repos/{REPO}/pulls/7", fake.url());
    let no_agent = reqwest::Client::new()
        .get(&path)
        .bearer_auth("pat")
        .send()
        .await
        .unwrap();
    assert_eq!(no_agent.status().as_u16(), 403);
    let anonymous = Api::new(&fake, None).get(&path).await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.body["message"], "Requires authentication");
    assert_eq!(
        Api::new(&fake, Some("ghs_forged")).get(&path).await.status,
        401
    );

    fake.set_app("tollgate", 42);
    let other = FakeGitHub::start().await;
    other.set_app("other", 7);
    let foreign_jwt = Api::new(&fake, Some(&other.app_jwt()));
    assert_eq!(
        foreign_jwt.get("/app").await.status,
        401,
        "the JWT names another App"
    );

    fake.set_user("octo");
    let user = Api::new(&fake, Some("ghp_personal")).get("/user").await;
    assert_eq!((user.status, &user.body["login"]), (200, &json!("octo")));
    let recorded = fake.requests();
    let statuses: Vec<u16> = recorded.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [403, 401, 401, 401, 200]);
    assert_eq!(
        recorded[4].header("Authorization"),
        Some("Bearer ghp_personal")
    );
    assert_eq!(
        (recorded[4].method.as_str(), recorded[4].path.as_str()),
        ("GET", "/user")
    );
}

/// octocrab's own App flow: a JWT signed with the repository's test key, then one installation
/// token, reused.
#[tokio::test]
async fn octocrab_app_mode_mints_one_installation_token() {
    let fake = FakeGitHub::start().await;
    fake.set_app("tollgate", 42);
    sample_pr(&fake);
    let pem = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/github-app-test-key.pem"
    ))
    .expect("the test App key");
    let key = octocrab::EncodingKey::from_rsa_pem(&pem).expect("an RSA key");
    let app = octocrab::Octocrab::builder()
        .base_uri(fake.url())
        .unwrap()
        .app(octocrab::models::AppId(42), key)
        .build()
        .unwrap();
    let installation = app
        .installation(octocrab::models::InstallationId(fake.installation_id()))
        .unwrap();
    for _ in 0..2 {
        let pr = installation
            .pulls("acme", "models")
            .get(7)
            .await
            .expect("the PR");
        assert_eq!(pr.head.sha, "c2");
    }
    assert_eq!(fake.tokens_minted(), 1);
    fake.assert_requests_match_openapi();
}

// --- pull requests -----------------------------------------------------------------------------

#[tokio::test]
async fn pull_request_and_its_net_files() {
    let (fake, api) = app_fake().await;
    sample_pr(&fake);
    let pr = api.get(&format!("/repos/{REPO}/pulls/7")).await.body;
    let fields = [
        "/number",
        "/state",
        "/user/login",
        "/labels/0/name",
        "/draft",
        "/merged",
    ];
    assert_eq!(
        pick(&pr, &fields),
        json!([7, "open", "alice", "sensitive-domain", false, false])
    );
    let branches = ["/head/ref", "/head/sha", "/base/ref", "/base/sha"];
    assert_eq!(pick(&pr, &branches), json!(["feature", "c2", "main", BASE]));
    assert_eq!(pick(&pr, &["/changed_files", "/commits"]), json!([4, 2]));

    let files = api.get(&format!("/repos/{REPO}/pulls/7/files")).await.body;
    let described: Vec<Value> = files
        .as_array()
        .unwrap()
        .iter()
        .map(|f| pick(f, &["/filename", "/status", "/previous_filename"]))
        .collect();
    let expected = [
        json!(["README.md", "removed", null]),
        json!(["eval/metrics.json", "modified", null]),
        json!(["models/new/model.onnx", "added", null]),
        json!(["models/renamed.onnx", "renamed", "models/old.onnx"]),
    ];
    assert_eq!(described, expected);
    assert_eq!(
        pick(&files[1], &["/additions", "/deletions", "/changes"]),
        json!([1, 1, 2])
    );
    assert_eq!(api.get(&format!("/repos/{REPO}/pulls/8")).await.status, 404);
    fake.assert_requests_match_openapi();
}

#[tokio::test]
async fn pull_request_commits_and_reviews() {
    let (fake, api) = app_fake().await;
    sample_pr(&fake);
    let commits = api
        .get(&format!("/repos/{REPO}/pulls/7/commits"))
        .await
        .body;
    assert_eq!(column(&commits, "/sha"), [json!("c1"), json!("c2")]);
    let people = [
        "/author/login",
        "/committer/login",
        "/commit/author/name",
        "/parents/0/sha",
    ];
    assert_eq!(
        pick(&commits[1], &people),
        json!(["bob", "web-flow", "bob", "c1"])
    );
    let date = |i: usize| time(&commits[i]["commit"]["committer"]["date"]);
    assert!(date(0) < date(1), "commits are stamped in order");

    let approved = fake.add_review(REPO, 7, "carol", "APPROVED", "c1", fake.now());
    let vetoed = fake.add_review(REPO, 7, "dave", "CHANGES_REQUESTED", "c2", fake.now());
    fake.dismiss_review(REPO, 7, vetoed);
    let reviews = api
        .get(&format!("/repos/{REPO}/pulls/7/reviews"))
        .await
        .body;
    assert_eq!(column(&reviews, "/id"), [json!(approved), json!(vetoed)]);
    let first = ["/user/login", "/state", "/commit_id"];
    assert_eq!(
        pick(&reviews[0], &first),
        json!(["carol", "APPROVED", "c1"])
    );
    assert_eq!(pick(&reviews[1], &["/state"]), json!(["DISMISSED"]));
    assert!(reviews[0]["submitted_at"].is_string());
    fake.assert_requests_match_openapi();
}

#[tokio::test]
async fn compare_lists_the_changes_between_two_commits() {
    let (fake, api) = app_fake().await;
    sample_pr(&fake);
    let compare = api
        .get(&format!("/repos/{REPO}/compare/c1...c2"))
        .await
        .body;
    let summary = ["/status", "/ahead_by", "/behind_by", "/commits/0/sha"];
    assert_eq!(pick(&compare, &summary), json!(["ahead", 1, 0, "c2"]));
    let files = column(&compare["files"], "/filename");
    assert_eq!(files, [json!("README.md"), json!("models/renamed.onnx")]);
    let backwards = api
        .get(&format!("/repos/{REPO}/compare/c2...c1"))
        .await
        .body;
    assert_eq!(
        pick(&backwards, &["/status", "/behind_by"]),
        json!(["behind", 1])
    );
    let unknown = api.get(&format!("/repos/{REPO}/compare/c1...nope")).await;
    assert_eq!(unknown.status, 404);
    fake.assert_requests_match_openapi();
}

#[tokio::test]
async fn push_retarget_labels_and_body_change_what_is_served() {
    let (fake, api) = app_fake().await;
    sample_pr(&fake);
    let c3 = CommitSpec::new(
        "c3",
        "alice",
        vec![FileChange::removed("models/new/model.onnx")],
    );
    fake.push(REPO, 7, c3);
    fake.set_labels(REPO, 7, &["low-risk"]);
    fake.set_body(REPO, 7, "new body");
    fake.set_file(REPO, "release0", "README.md", "hello\n");
    fake.retarget(REPO, 7, "release", "release0");
    let pr = api.get(&format!("/repos/{REPO}/pulls/7")).await.body;
    let fields = [
        "/head/sha",
        "/base/ref",
        "/base/sha",
        "/labels/0/name",
        "/body",
        "/commits",
    ];
    assert_eq!(
        pick(&pr, &fields),
        json!(["c3", "release", "release0", "low-risk", "new body", 3])
    );
    // Against release0 (a README only), head's files are added and its deleted README removed.
    let files = api.get(&format!("/repos/{REPO}/pulls/7/files")).await.body;
    let described: Vec<Value> = files
        .as_array()
        .unwrap()
        .iter()
        .map(|f| pick(f, &["/filename", "/status"]))
        .collect();
    let expected = [
        json!([".governance.toml", "added"]),
        json!(["README.md", "removed"]),
        json!(["eval/metrics.json", "added"]),
        json!(["models/renamed.onnx", "added"]),
    ];
    assert_eq!(described, expected);
    let pulls = api
        .get(&format!("/repos/{REPO}/commits/c3/pulls"))
        .await
        .body;
    assert_eq!(column(&pulls, "/number"), [json!(7)]);
}

// --- lists -------------------------------------------------------------------------------------

#[tokio::test]
async fn pagination_follows_link_headers() {
    let (fake, api) = app_fake().await;
    wide_pr(&fake, 75);
    let files = format!("/repos/{REPO}/pulls/1/files");
    let first = api.get(&format!("{files}?per_page=30")).await;
    assert_eq!(first.body.as_array().unwrap().len(), 30);
    let next = link_to(&first, "next").expect("a next link");
    assert!(next.starts_with(&fake.url()), "{next}");
    assert!(
        next.contains("per_page=30") && next.ends_with("page=2"),
        "{next}"
    );
    assert!(link_to(&first, "last").unwrap().ends_with("page=3"));
    assert_eq!(link_to(&first, "prev"), None);
    let second = api.get(&next).await;
    assert!(link_to(&second, "prev").unwrap().ends_with("page=1"));
    assert!(link_to(&second, "first").unwrap().ends_with("page=1"));

    let (items, pages) = all_pages(&api, &format!("{files}?per_page=30")).await;
    assert_eq!((items.len(), pages), (75, 3));
    let mut names: Vec<&str> = items
        .iter()
        .map(|f| f["filename"].as_str().unwrap())
        .collect();
    names.dedup();
    assert_eq!(names.len(), 75, "no item twice");

    let default = api.get(&files).await;
    assert_eq!(
        default.body.as_array().unwrap().len(),
        30,
        "GitHub's default page is 30"
    );
    let clamped = api.get(&format!("{files}?per_page=500")).await;
    assert_eq!(
        clamped.body.as_array().unwrap().len(),
        75,
        "per_page is capped at 100"
    );
    assert_eq!(clamped.header("link"), None, "one page, no links");
    let beyond = api.get(&format!("{files}?page=9")).await;
    assert_eq!((beyond.status, beyond.body), (200, json!([])));
    fake.assert_requests_match_openapi();
}

#[tokio::test]
async fn files_list_stops_at_3000_and_commits_at_250() {
    let (fake, api) = app_fake().await;
    wide_pr(&fake, 3_100);
    let pr = api.get(&format!("/repos/{REPO}/pulls/1")).await.body;
    assert_eq!(
        pr["changed_files"], 3_100,
        "the count is not capped, the list is"
    );
    let files = format!("/repos/{REPO}/pulls/1/files?per_page=100");
    let first = api.get(&files).await;
    assert!(link_to(&first, "last").unwrap().ends_with("page=30"));
    let last = api.get(&format!("{files}&page=30")).await;
    assert_eq!(last.body.as_array().unwrap().len(), 100);
    assert_eq!(link_to(&last, "next"), None);
    assert_eq!(api.get(&format!("{files}&page=31")).await.body, json!([]));
    assert_eq!(PR_FILES_CAP, 3_000);

    let commits = (0..260)
        .map(|i| {
            let file = FileChange::added(&format!("k{i}"), "x");
            CommitSpec::new(&format!("k{i}"), "alice", vec![file])
        })
        .collect();
    fake.open_pr(
        REPO,
        PrSpec {
            number: 2,
            commits,
            ..PrSpec::default()
        },
    );
    let pr = api.get(&format!("/repos/{REPO}/pulls/2")).await.body;
    assert_eq!(pr["commits"], 260);
    let (listed, pages) =
        all_pages(&api, &format!("/repos/{REPO}/pulls/2/commits?per_page=100")).await;
    assert_eq!((listed.len(), pages), (250, 3));
    assert_eq!(listed[249]["sha"], "k249");
}

// --- files ---------------------------------------------------------------------------------------

#[tokio::test]
async fn contents_carry_etags_and_answer_304() {
    let (fake, api) = app_fake().await;
    sample_pr(&fake);
    let card =
        "# Model card\n\n## Intended use\nRanking support tickets by urgency, nothing else.\n";
    fake.set_file(REPO, "c2", "models/new/MODEL_CARD.md", card);
    let path = format!("/repos/{REPO}/contents/models/new/MODEL_CARD.md?ref=c2");
    let file = api.get(&path).await;
    assert_eq!(file.status, 200);
    let fields = ["/type", "/encoding", "/name", "/path"];
    let expected = json!([
        "file",
        "base64",
        "MODEL_CARD.md",
        "models/new/MODEL_CARD.md"
    ]);
    assert_eq!(pick(&file.body, &fields), expected);
    let content = file.body["content"].as_str().unwrap();
    assert!(
        content.lines().count() > 1,
        "GitHub wraps base64: {content}"
    );
    assert!(content.lines().all(|l| l.len() <= 60), "{content}");
    let compact: String = content.split_whitespace().collect();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), card);
    let etag = file.header("etag").expect("an ETag").to_owned();

    fake.clear_requests();
    let conditional = |tag: &str| api.request(Method::GET, &path).header("if-none-match", tag);
    let cached = api.send(conditional(&etag)).await;
    assert_eq!((cached.status, cached.body), (304, Value::Null));
    let stale = api.send(conditional("W/\"other\"")).await;
    assert_eq!(stale.status, 200);
    assert_eq!(fake.not_modified_count(), 1);
    assert_eq!(fake.api_requests_excluding_304(), 1);
    fake.assert_requests_match_openapi();
}

#[tokio::test]
async fn contents_follow_the_ref_and_list_folders() {
    let (fake, api) = app_fake().await;
    sample_pr(&fake);
    let metrics =
        |reference: &str| format!("/repos/{REPO}/contents/eval/metrics.json?ref={reference}");
    let at_base = api.get(&metrics(BASE)).await;
    let at_head = api.get(&metrics("c2")).await;
    assert_ne!(at_base.body["content"], at_head.body["content"]);
    assert_ne!(at_base.header("etag"), at_head.header("etag"));
    let by_branch = api.get(&metrics("feature")).await;
    assert_eq!(by_branch.body["content"], at_head.body["content"]);
    let readme = |reference: &str| format!("/repos/{REPO}/contents/README.md?ref={reference}");
    assert_eq!(api.get(&readme(BASE)).await.status, 200);
    assert_eq!(api.get(&readme("c2")).await.status, 404, "removed at c2");
    assert_eq!(api.get(&readme("nope")).await.status, 404);
    let folder = api
        .get(&format!("/repos/{REPO}/contents/models?ref=c2"))
        .await
        .body;
    let entries: Vec<Value> = folder
        .as_array()
        .unwrap()
        .iter()
        .map(|e| pick(e, &["/path", "/type"]))
        .collect();
    assert_eq!(
        entries,
        [
            json!(["models/new", "dir"]),
            json!(["models/renamed.onnx", "file"])
        ]
    );

    let big = "x".repeat(1_100_000);
    fake.set_file(REPO, "c2", "data/big.csv", &big);
    let large = api
        .get(&format!("/repos/{REPO}/contents/data/big.csv?ref=c2"))
        .await
        .body;
    assert_eq!(
        pick(&large, &["/encoding", "/content", "/size"]),
        json!(["none", "", 1_100_000])
    );
    fake.assert_requests_match_openapi();
}

#[tokio::test]
async fn trees_list_every_path_at_a_commit() {
    let (fake, api) = app_fake().await;
    sample_pr(&fake);
    let tree = api
        .get(&format!("/repos/{REPO}/git/trees/c2?recursive=1"))
        .await
        .body;
    let blobs: Vec<&str> = tree["tree"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "blob")
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    let expected = [
        ".governance.toml",
        "eval/metrics.json",
        "models/new/model.onnx",
        "models/renamed.onnx",
    ];
    assert_eq!(blobs, expected);
    assert_eq!(tree["truncated"], false);
    let top = api.get(&format!("/repos/{REPO}/git/trees/c2")).await.body;
    let top = column(&top["tree"], "/path");
    assert_eq!(
        top,
        [json!(".governance.toml"), json!("eval"), json!("models")]
    );
    assert!(
        fake.openapi_violations().is_empty(),
        "the trees API is a known addition"
    );
}

// --- people --------------------------------------------------------------------------------------

#[tokio::test]
async fn permissions_and_team_memberships() {
    let (fake, api) = app_fake().await;
    sample_pr(&fake);
    fake.set_permission(REPO, "Carol", "maintain");
    fake.set_permission(REPO, "erin", "none");
    let permission = async |user: &str| {
        let path = format!("/repos/{REPO}/collaborators/{user}/permission");
        api.get(&path).await.body
    };
    let carol = permission("carol").await;
    let fields = ["/permission", "/role_name", "/user/login"];
    assert_eq!(pick(&carol, &fields), json!(["write", "maintain", "carol"]));
    assert_eq!(permission("erin").await["permission"], "none");
    assert_eq!(permission("stranger").await["permission"], "read");

    fake.set_team("acme", "ml-leads", &["carol"]);
    fake.set_team_pending("acme", "ml-leads", "dave");
    let membership = async |team: &str, user: &str| {
        api.get(&format!("/orgs/acme/teams/{team}/memberships/{user}"))
            .await
    };
    let carol = membership("ml-leads", "carol").await;
    assert_eq!(carol.status, 200);
    assert_eq!(
        pick(&carol.body, &["/state", "/role"]),
        json!(["active", "member"])
    );
    assert_eq!(
        membership("ml-leads", "dave").await.body["state"],
        "pending"
    );
    assert_eq!(membership("ml-leads", "erin").await.status, 404);
    assert_eq!(membership("unknown", "carol").await.status, 404);
    assert_eq!(api.get("/orgs/acme/members/carol").await.status, 204);
    fake.assert_requests_match_openapi();
}

// --- comments ------------------------------------------------------------------------------------

#[tokio::test]
async fn comment_authors_follow_the_identity() {
    let (fake, app) = app_fake().await;
    sample_pr(&fake);
    let path = format!("/repos/{REPO}/issues/7/comments");
    fake.add_comment(REPO, 7, "carol", "/tollgate bypass INC-1");
    let posted = app
        .post(&path, json!({ "body": "<!-- tollgate -->\nPending" }))
        .await;
    assert_eq!(posted.status, 201);
    assert_eq!(
        pick(&posted.body, &["/user/login", "/user/type"]),
        json!(["tollgate[bot]", "Bot"])
    );
    assert_eq!(posted.body["created_at"], posted.body["updated_at"]);

    fake.set_user("octo");
    let token_user = Api::new(&fake, Some("ghp_personal"));
    let by_user = token_user
        .post(&path, json!({ "body": "token mode" }))
        .await;
    assert_eq!(
        pick(&by_user.body, &["/user/login", "/user/type"]),
        json!(["octo", "User"])
    );

    let listed = app.get(&path).await.body;
    let authors = column(&listed, "/user/login");
    assert_eq!(
        authors,
        [json!("carol"), json!("tollgate[bot]"), json!("octo")]
    );
    let views = fake.comments(REPO, 7);
    let view_authors: Vec<(&str, &str)> = views
        .iter()
        .map(|c| (c.author.as_str(), c.author_type.as_str()))
        .collect();
    assert_eq!(
        view_authors,
        [
            ("carol", "User"),
            ("tollgate[bot]", "Bot"),
            ("octo", "User")
        ]
    );
    let elsewhere = app
        .post(
            &format!("/repos/{REPO}/issues/99/comments"),
            json!({ "body": "x" }),
        )
        .await;
    assert_eq!(elsewhere.status, 404);
    fake.assert_requests_match_openapi();
}

#[tokio::test]
async fn comment_edits_move_updated_at_and_name_the_editor() {
    let (fake, app) = app_fake().await;
    sample_pr(&fake);
    let human = fake.add_comment(REPO, 7, "carol", "/tollgate bypass INC-1");
    let posted = app
        .post(
            &format!("/repos/{REPO}/issues/7/comments"),
            json!({ "body": "v1" }),
        )
        .await;
    let id = posted.body["id"].as_u64().unwrap();
    let edited = app
        .patch(
            &format!("/repos/{REPO}/issues/comments/{id}"),
            json!({ "body": "v2" }),
        )
        .await;
    assert_eq!(edited.status, 200);
    assert!(time(&edited.body["updated_at"]) > time(&edited.body["created_at"]));
    fake.edit_comment(REPO, human, "/tollgate bypass INC-2");
    fake.edit_comment_as(REPO, human, "mallory", "/tollgate approve");

    let views = fake.comments(REPO, 7);
    assert_eq!(
        (views[0].body.as_str(), views[0].edited_by.as_deref()),
        ("/tollgate approve", Some("mallory"))
    );
    assert!(views[0].updated_at > views[0].created_at);
    assert_eq!(
        (views[1].body.as_str(), views[1].edited_by.as_deref()),
        ("v2", Some("tollgate[bot]"))
    );
    let fetched = app
        .get(&format!("/repos/{REPO}/issues/comments/{human}"))
        .await
        .body;
    assert_eq!(fetched["body"], "/tollgate approve");
    let delete = app.request(
        Method::DELETE,
        &format!("/repos/{REPO}/issues/comments/{id}"),
    );
    assert_eq!(app.send(delete).await.status, 204);
    assert_eq!(fake.comments(REPO, 7).len(), 1);
    fake.assert_requests_match_openapi();
}

// --- checks and statuses -------------------------------------------------------------------------

#[tokio::test]
async fn check_runs_keep_their_history() {
    let (fake, app) = app_fake().await;
    sample_pr(&fake);
    let runs = format!("/repos/{REPO}/check-runs");
    let start = json!({ "name": "tollgate", "head_sha": "c2", "status": "in_progress" });
    let created = app.post(&runs, start).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let fields = ["/app/id", "/app/slug", "/pull_requests/0/number", "/status"];
    assert_eq!(
        pick(&created.body, &fields),
        json!([42, "tollgate", 7, "in_progress"])
    );
    let id = created.body["id"].as_u64().unwrap();
    let annotation = json!({ "path": "models/new/model.onnx", "start_line": 1, "end_line": 1,
        "annotation_level": "failure", "message": "no model card" });
    let output = json!({ "title": "Blocked", "summary": "Missing evidence", "text": "details",
        "annotations": [annotation] });
    let finish = json!({ "conclusion": "failure", "output": output });
    let updated = app.patch(&format!("{runs}/{id}"), finish).await;
    assert_eq!(updated.status, 200);
    let fields = ["/status", "/conclusion", "/output/annotations_count"];
    assert_eq!(
        pick(&updated.body, &fields),
        json!(["completed", "failure", 1])
    );
    let other = json!({ "name": "other", "head_sha": "c2", "conclusion": "success" });
    assert_eq!(app.post(&runs, other).await.status, 201);

    let listed = app
        .get(&format!(
            "/repos/{REPO}/commits/c2/check-runs?check_name=tollgate"
        ))
        .await;
    let fields = ["/total_count", "/check_runs/0/id", "/check_runs/0/app/slug"];
    assert_eq!(pick(&listed.body, &fields), json!([1, id, "tollgate"]));
    let by_branch = app
        .get(&format!("/repos/{REPO}/commits/feature/check-runs"))
        .await;
    assert_eq!(by_branch.body["total_count"], 2);

    let views = fake.check_runs(REPO);
    assert_eq!(views.len(), 2);
    let run = &views[0];
    assert_eq!(
        (run.name.as_str(), run.head_sha.as_str(), run.app_id),
        ("tollgate", "c2", 42)
    );
    assert_eq!(
        (run.title.as_deref(), run.summary.as_deref()),
        (Some("Blocked"), Some("Missing evidence"))
    );
    assert_eq!(run.annotations_count, 1);
    let history = [
        ("in_progress".to_owned(), None),
        ("completed".to_owned(), Some("failure".to_owned())),
    ];
    assert_eq!(run.history, history);
    fake.assert_requests_match_openapi();
}

#[tokio::test]
async fn check_runs_need_an_app_and_a_known_commit() {
    let (fake, app) = app_fake().await;
    sample_pr(&fake);
    let runs = format!("/repos/{REPO}/check-runs");
    fake.set_user("octo");
    let token_user = Api::new(&fake, Some("ghp_personal"));
    let refused = token_user
        .post(&runs, json!({ "name": "tollgate", "head_sha": "c2" }))
        .await;
    assert_eq!(refused.status, 403);
    assert_eq!(
        refused.body["message"],
        "You must authenticate via a GitHub App."
    );
    let unknown_sha = app
        .post(&runs, json!({ "name": "tollgate", "head_sha": "nope" }))
        .await;
    assert_eq!(unknown_sha.status, 422);
    assert!(fake.check_runs(REPO).is_empty(), "nothing was created");
    fake.assert_requests_match_openapi();
}

#[tokio::test]
async fn statuses_are_kept_in_order_and_combined() {
    let fake = FakeGitHub::start().await;
    sample_pr(&fake);
    fake.set_user("octo");
    let api = Api::new(&fake, Some("ghp_personal"));
    let path = format!("/repos/{REPO}/statuses/c2");
    let pending = json!({ "state": "pending", "context": "tollgate", "description": "Evaluating" });
    let posted = api.post(&path, pending).await;
    assert_eq!(
        (posted.status, &posted.body["creator"]["login"]),
        (201, &json!("octo"))
    );
    let success =
        json!({ "state": "success", "context": "tollgate", "target_url": "https://example.com" });
    api.post(&path, success).await;
    api.post(&path, json!({ "state": "failure", "context": "ci" }))
        .await;
    let combined = api
        .get(&format!("/repos/{REPO}/commits/c2/status"))
        .await
        .body;
    assert_eq!(
        pick(&combined, &["/state", "/total_count"]),
        json!(["failure", 2])
    );

    let views = fake.statuses(REPO, "c2");
    let states: Vec<(&str, &str)> = views
        .iter()
        .map(|s| (s.context.as_str(), s.state.as_str()))
        .collect();
    assert_eq!(
        states,
        [
            ("tollgate", "pending"),
            ("tollgate", "success"),
            ("ci", "failure")
        ]
    );
    assert_eq!(views[1].target_url.as_deref(), Some("https://example.com"));
    let unknown = api
        .post(
            &format!("/repos/{REPO}/statuses/nope"),
            json!({ "state": "success" }),
        )
        .await;
    assert_eq!(unknown.status, 422);
    fake.assert_requests_match_openapi();
}

// --- OpenAPI validation --------------------------------------------------------------------------

/// A request that breaks the OpenAPI description, and what the fake must say about it.
struct BadRequest {
    method: Method,
    path: String,
    body: Option<Value>,
    status: u16,
    reason: &'static str,
}

fn bad(
    method: Method,
    path: String,
    body: Option<Value>,
    status: u16,
    reason: &'static str,
) -> BadRequest {
    BadRequest {
        method,
        path,
        body,
        status,
        reason,
    }
}

/// One request per validation rule: each is refused and reported, with its reason.
fn bad_requests() -> Vec<BadRequest> {
    let runs = format!("/repos/{REPO}/check-runs");
    let annotation = |level: &str| json!({ "path": "a", "start_line": 1, "end_line": 1, "annotation_level": level, "message": "m" });
    let with_annotations = |annotations: Vec<Value>| {
        let output = json!({ "title": "t", "summary": "s", "annotations": annotations });
        json!({ "name": "t", "head_sha": "c2", "output": output })
    };
    let nested = with_annotations(vec![annotation("fatal")]);
    let too_many = with_annotations(vec![annotation("notice"); 51]);
    vec![
        bad(
            Method::POST,
            runs.clone(),
            Some(json!({ "name": "tollgate" })),
            422,
            "body: required property `head_sha` is missing",
        ),
        bad(
            Method::POST,
            runs.clone(),
            Some(json!({ "name": "t", "head_sha": "c2", "conclusion": "passed" })),
            422,
            "body.conclusion: \"passed\" is not one of",
        ),
        bad(
            Method::POST,
            runs.clone(),
            Some(nested),
            422,
            "body.output.annotations[0].annotation_level: \"fatal\" is not one of",
        ),
        bad(
            Method::POST,
            runs.clone(),
            Some(too_many),
            422,
            "body.output.annotations: 51 items, at most 50",
        ),
        bad(
            Method::POST,
            runs.clone(),
            Some(json!({ "name": 5, "head_sha": "c2" })),
            422,
            "body.name: expected string, found a number",
        ),
        bad(
            Method::POST,
            runs.clone(),
            Some(json!({ "name": "t", "head_sha": "c2", "started_at": "yesterday" })),
            422,
            "is not an ISO 8601 date-time",
        ),
        bad(
            Method::POST,
            runs.clone(),
            Some(json!({ "name": "t", "head_sha": "c2", "status": "completed" })),
            422,
            "`conclusion` is required",
        ),
        bad(
            Method::PATCH,
            format!("{runs}/1001"),
            Some(json!({ "status": "completed" })),
            422,
            "matches none of the anyOf alternatives",
        ),
        bad(
            Method::POST,
            format!("/repos/{REPO}/issues/7/comments"),
            Some(json!({})),
            422,
            "required property `body` is missing",
        ),
        bad(
            Method::POST,
            format!("/repos/{REPO}/issues/7/comments"),
            None,
            422,
            "a JSON request body is required",
        ),
        bad(
            Method::GET,
            format!("/repos/{REPO}/pulls/7/files?per_page=many"),
            None,
            422,
            "query parameter `per_page`: `many` is not of type integer",
        ),
        bad(
            Method::POST,
            format!("/repos/{REPO}/actions/runs/1/deployment_protection_rule"),
            Some(json!({ "environment_name": "production", "state": "approve" })),
            422,
            "matches none of the anyOf alternatives",
        ),
        bad(
            Method::GET,
            format!("/repos/{REPO}/secrets"),
            None,
            404,
            "no operation of the OpenAPI subset",
        ),
        bad(
            Method::GET,
            format!("/repos/{REPO}/pulls/seven"),
            None,
            404,
            "no operation of the OpenAPI subset",
        ),
    ]
}

#[tokio::test]
async fn openapi_validation_reports_each_broken_rule() {
    let (fake, app) = app_fake().await;
    if !fake.openapi_validation_enabled() {
        eprintln!("skipped: no OpenAPI subset");
        return;
    }
    sample_pr(&fake);
    let valid = json!({ "name": "tollgate", "head_sha": "c2", "status": "queued" });
    let created = app.post(&format!("/repos/{REPO}/check-runs"), valid).await;
    assert_eq!(created.status, 201);
    assert_eq!(
        created.body["id"], 1_001,
        "the PATCH case below targets this run"
    );
    assert!(
        fake.openapi_violations().is_empty(),
        "{:?}",
        fake.openapi_violations()
    );

    let cases = bad_requests();
    for (i, case) in cases.iter().enumerate() {
        let mut request = app.request(case.method.clone(), &case.path);
        if let Some(body) = &case.body {
            request = request.json(body);
        }
        let answer = app.send(request).await;
        let what = format!("{} {}", case.method, case.path);
        assert_eq!(answer.status, case.status, "{what}: {}", answer.body);
        let violations = fake.openapi_violations();
        assert_eq!(violations.len(), i + 1, "{what}: {violations:#?}");
        let reported = &violations[i];
        assert!(
            reported.contains(case.reason),
            "{what}: {reported:?} lacks {:?}",
            case.reason
        );
    }
    assert_eq!(
        fake.check_runs(REPO).len(),
        1,
        "refused requests change nothing"
    );
    let history = &fake.check_runs(REPO)[0].history;
    assert_eq!(history.len(), 1, "the refused PATCH did not touch the run");
    assert!(fake.protection_answers(REPO).is_empty(), "nor the gate");
    let check = std::panic::AssertUnwindSafe(|| fake.assert_requests_match_openapi());
    let panic = std::panic::catch_unwind(check).expect_err("violations make it panic");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains(&format!("{} request(s)", cases.len())),
        "{message}"
    );
}

#[tokio::test]
async fn every_route_of_the_fake_is_described_by_openapi() {
    let fake = FakeGitHub::start().await;
    match fake.routes_missing_from_openapi() {
        Some(missing) => assert!(missing.is_empty(), "{missing:?}"),
        None => eprintln!("skipped: no OpenAPI subset"),
    }
}

// --- failure injection ---------------------------------------------------------------------------

#[tokio::test]
async fn fail_next_injects_failures_then_serves() {
    let (fake, app) = app_fake().await;
    sample_pr(&fake);
    let path = format!("/repos/{REPO}/pulls/7");
    fake.fail_next("GET", &format!("/repos/{REPO}/pulls"), 502, 2, None);
    assert_eq!(app.get(&path).await.status, 502);
    assert_eq!(app.get(&path).await.status, 502);
    assert_eq!(app.get(&path).await.status, 200);

    fake.fail_next("*", "/repos/", 429, 1, Some(7));
    let limited = app.get(&path).await;
    assert_eq!(
        (limited.status, limited.header("retry-after")),
        (429, Some("7"))
    );
    fake.fail_next("GET", "/repos/", 403, 1, None);
    let exhausted = app.get(&path).await;
    assert_eq!(
        (exhausted.status, exhausted.header("x-ratelimit-remaining")),
        (403, Some("0"))
    );

    fake.fail_next("POST", &format!("/repos/{REPO}/issues"), 500, 1, None);
    let comments = format!("/repos/{REPO}/issues/7/comments");
    assert_eq!(
        app.post(&comments, json!({ "body": "hi" })).await.status,
        500
    );
    assert!(
        fake.comments(REPO, 7).is_empty(),
        "an injected failure changes nothing"
    );
    assert_eq!(
        app.post(&comments, json!({ "body": "hi" })).await.status,
        201
    );
    let statuses: Vec<u16> = fake.requests().iter().skip(1).map(|r| r.status).collect();
    assert_eq!(statuses, [502, 502, 200, 429, 403, 500, 201]);
}

// --- octocrab compatibility ----------------------------------------------------------------------

/// The fake's answers deserialize into octocrab's models, so a client may use either those or
/// its own thin structs.
#[tokio::test]
async fn answers_deserialize_into_octocrab_models() {
    use octocrab::models;
    fn parse<T: serde::de::DeserializeOwned>(what: &str, value: Value) -> T {
        serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{what}: {e}\n{value:#}"))
    }
    let (fake, app) = app_fake().await;
    sample_pr(&fake);
    fake.add_review(REPO, 7, "carol", "APPROVED", "c2", fake.now());
    fake.add_comment(REPO, 7, "carol", "hi");
    app.post(
        &format!("/repos/{REPO}/check-runs"),
        json!({ "name": "tollgate", "head_sha": "c2" }),
    )
    .await;
    app.post(
        &format!("/repos/{REPO}/statuses/c2"),
        json!({ "state": "success" }),
    )
    .await;
    let get = async |path: String| app.get(&path).await.body;
    let _: models::pulls::PullRequest = parse("pull", get(format!("/repos/{REPO}/pulls/7")).await);
    let _: Vec<models::repos::DiffEntry> =
        parse("files", get(format!("/repos/{REPO}/pulls/7/files")).await);
    let _: Vec<models::repos::RepoCommit> = parse(
        "commits",
        get(format!("/repos/{REPO}/pulls/7/commits")).await,
    );
    let _: Vec<models::pulls::Review> = parse(
        "reviews",
        get(format!("/repos/{REPO}/pulls/7/reviews")).await,
    );
    let _: Vec<models::issues::Comment> = parse(
        "comments",
        get(format!("/repos/{REPO}/issues/7/comments")).await,
    );
    let runs = get(format!("/repos/{REPO}/commits/c2/check-runs")).await;
    let _: Vec<models::checks::CheckRun> = parse("check runs", runs["check_runs"].clone());
    let contents = get(format!("/repos/{REPO}/contents/eval/metrics.json?ref=c2")).await;
    let _: models::repos::Content = parse("contents", contents);
    let compare = get(format!("/repos/{REPO}/compare/c1...c2")).await;
    let _: models::commits::CommitComparison = parse("compare", compare);
    let _: models::CombinedStatus = parse(
        "status",
        get(format!("/repos/{REPO}/commits/c2/status")).await,
    );
    let _: models::UserProfile = parse(
        "user",
        Api::new(&fake, Some("ghp_x")).get("/user").await.body,
    );
    let jwt = Api::new(&fake, Some(&fake.app_jwt()));
    let installation = jwt.get(&format!("/repos/{REPO}/installation")).await.body;
    let _: models::Installation = parse("installation", installation);
}

/// octocrab itself pages through the fake with its `Link` headers.
#[tokio::test]
async fn octocrab_pages_through_the_fake() {
    let (fake, _) = app_fake().await;
    wide_pr(&fake, 250);
    let client = octocrab::Octocrab::builder()
        .base_uri(fake.url())
        .unwrap()
        .personal_token("ghp_personal".to_owned())
        .build()
        .unwrap();
    let first = client
        .pulls("acme", "models")
        .list_files(1)
        .await
        .expect("first page");
    let all = client.all_pages(first).await.expect("every page");
    assert_eq!(all.len(), 250);
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.header("user-agent").is_some())
    );
    fake.assert_requests_match_openapi();
}

// --- merges and git data -------------------------------------------------------------------------

/// The tree of [`sample_pr`]'s base.
fn base_tree() -> Vec<(&'static str, &'static str)> {
    vec![
        (".governance.toml", "version = 1\n"),
        ("README.md", "hello\n"),
        ("eval/metrics.json", "{\n\"auc\": 0.91\n}\n"),
        ("models/old.onnx", "weights\n"),
    ]
}

fn tree_of(entries: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    entries
        .iter()
        .map(|(p, c)| ((*p).to_owned(), (*c).to_owned()))
        .collect()
}

/// (filename, status) of every file of a pull request.
async fn pull_files(api: &Api, number: u64) -> Vec<Value> {
    let files = api
        .get(&format!("/repos/{REPO}/pulls/{number}/files"))
        .await;
    assert_eq!(files.status, 200, "{}", files.body);
    files
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|f| pick(f, &["/filename", "/status"]))
        .collect()
}

#[tokio::test]
async fn merged_pull_request_reports_its_merge() {
    let (fake, api) = app_fake().await;
    sample_pr(&fake);
    let open = api.get(&format!("/repos/{REPO}/pulls/7")).await.body;
    let merge_fields = ["/merged", "/merged_at", "/merged_by", "/merge_commit_sha"];
    assert_eq!(pick(&open, &merge_fields), json!([false, null, null, null]));

    let at = fake.now();
    let merge = fake.merge_pr(REPO, 7, "carol");
    assert_eq!(fake.branch_tip(REPO, "main"), Some(merge.clone()));
    assert_eq!(
        fake.tree_at(REPO, &merge),
        fake.tree_at(REPO, "c2"),
        "nothing moved main since the PR's base: the merge's tree is the head's"
    );
    let pr = api.get(&format!("/repos/{REPO}/pulls/7")).await.body;
    let fields = [
        "/state",
        "/merged",
        "/merged_by/login",
        "/merge_commit_sha",
        "/node_id",
    ];
    assert_eq!(
        pick(&pr, &fields),
        json!(["closed", true, "carol", merge, "PR_fake7"])
    );
    assert_eq!(time(&pr["merged_at"]), at);
    assert_eq!(pr["closed_at"], pr["merged_at"]);

    let commit = api.get(&format!("/repos/{REPO}/git/commits/{merge}")).await;
    assert_eq!(commit.status, 200);
    assert_eq!(
        column(&commit.body["parents"], "/sha"),
        [json!(BASE), json!("c2")],
        "a true merge: the base's tip, then the PR's head"
    );
    assert_eq!(
        pick(&commit.body, &["/author/name", "/committer/name"]),
        json!(["carol", "web-flow"])
    );
    let pulls = api
        .get(&format!("/repos/{REPO}/commits/{merge}/pulls"))
        .await;
    assert_eq!(column(&pulls.body, "/number"), [json!(7)]);
    let view = &fake.pulls(REPO)[0];
    assert_eq!((view.merged, view.state.as_str()), (true, "closed"));
    assert_eq!(view.merge_commit_sha.as_deref(), Some(merge.as_str()));
    let _: octocrab::models::pulls::PullRequest =
        serde_json::from_value(pr).expect("octocrab reads a merged PR");
    fake.assert_requests_match_openapi();
}

#[tokio::test]
async fn merge_onto_a_moved_base_keeps_both_sides() {
    let (fake, _) = app_fake().await;
    sample_pr(&fake);
    let docs = CommitSpec::new("d1", "erin", vec![FileChange::added("docs/a.md", "a\n")]);
    let d1 = fake.commit_to_branch(REPO, "main", docs);
    assert_eq!(d1, "d1");
    let generated = fake.commit_to_branch(
        REPO,
        "main",
        CommitSpec::new("", "erin", vec![FileChange::modified("docs/a.md", "b\n")]),
    );
    assert_eq!(
        generated.len(),
        40,
        "an empty sha is generated: {generated}"
    );
    let merge = fake.merge_pr(REPO, 7, "carol");
    let mut expected = fake.tree_at(REPO, "c2");
    expected.insert("docs/a.md".to_owned(), "b\n".to_owned());
    assert_eq!(fake.tree_at(REPO, &merge), expected);
    assert_eq!(
        fake.tree_at(REPO, "main"),
        expected,
        "a branch name works too"
    );
}

#[tokio::test]
async fn git_data_reads_refs_and_commits() {
    let (fake, api) = app_fake().await;
    sample_pr(&fake);
    let main = api.get(&format!("/repos/{REPO}/git/ref/heads/main")).await;
    assert_eq!(main.status, 200, "{}", main.body);
    assert_eq!(
        pick(&main.body, &["/ref", "/object/sha", "/object/type"]),
        json!(["refs/heads/main", BASE, "commit"])
    );
    let feature = api
        .get(&format!("/repos/{REPO}/git/ref/heads/feature"))
        .await;
    assert_eq!(feature.body["object"]["sha"], "c2");
    let missing = api.get(&format!("/repos/{REPO}/git/ref/heads/nope")).await;
    assert_eq!(missing.status, 404);

    let c2 = api.get(&format!("/repos/{REPO}/git/commits/c2")).await.body;
    assert_eq!(column(&c2["parents"], "/sha"), [json!("c1")]);
    assert_eq!(
        pick(
            &c2,
            &["/author/name", "/committer/name", "/verification/reason"]
        ),
        json!(["bob", "web-flow", "unsigned"])
    );
    let listed = api
        .get(&format!("/repos/{REPO}/pulls/7/commits"))
        .await
        .body;
    assert_eq!(
        listed[1]["commit"]["tree"]["sha"], c2["tree"]["sha"],
        "one tree sha whichever API reports it"
    );
    let tree = api
        .get(c2["tree"]["url"].as_str().expect("a tree URL"))
        .await;
    assert_eq!(tree.status, 200, "a tree sha resolves");
    assert_eq!(tree.body["sha"], c2["tree"]["sha"]);
    assert_eq!(
        api.get(&format!("/repos/{REPO}/git/commits/nope"))
            .await
            .status,
        404
    );

    // The same files make the same tree, whichever commit holds them.
    let base = api
        .get(&format!("/repos/{REPO}/git/commits/{BASE}"))
        .await
        .body;
    assert_eq!(base["parents"], json!([]));
    fake.set_branch(REPO, "copy", "c2");
    let copy = CommitSpec::new("copy1", "erin", vec![FileChange::added("x", "1\n")]);
    fake.commit_to_branch(REPO, "copy", copy);
    let undo = CommitSpec::new("copy2", "erin", vec![FileChange::removed("x")]);
    fake.commit_to_branch(REPO, "copy", undo);
    let copy2 = api
        .get(&format!("/repos/{REPO}/git/commits/copy2"))
        .await
        .body;
    assert_eq!(copy2["tree"]["sha"], c2["tree"]["sha"]);

    let _: octocrab::models::repos::Ref =
        serde_json::from_value(main.body).expect("octocrab reads a ref");
    let _: octocrab::models::commits::GitCommitObject =
        serde_json::from_value(c2).expect("octocrab reads a git commit");
    fake.assert_requests_match_openapi();
}

#[tokio::test]
async fn git_data_writes_commits_and_refs_or_refuses() {
    let (fake, api) = app_fake().await;
    sample_pr(&fake);
    let c1 = api.get(&format!("/repos/{REPO}/git/commits/c1")).await.body;
    let commits = format!("/repos/{REPO}/git/commits");
    let tree = c1["tree"]["sha"].clone();
    let bad_tree = json!({ "message": "m", "tree": "0000", "parents": ["c2"] });
    let refused = api.post(&commits, bad_tree).await;
    assert_eq!(
        (refused.status, &refused.body["message"]),
        (422, &json!("Tree SHA does not exist"))
    );
    let bad_parent = json!({ "message": "m", "tree": tree, "parents": ["nope"] });
    assert_eq!(api.post(&commits, bad_parent).await.status, 422);

    let at = fake.now();
    let body = json!({ "message": "Back to c1", "tree": tree, "parents": ["c2"] });
    let created = api.post(&commits, body).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let sha = created.body["sha"].as_str().unwrap().to_owned();
    assert_eq!(
        pick(
            &created.body,
            &["/message", "/tree/sha", "/parents/0/sha", "/author/name"]
        ),
        json!(["Back to c1", tree, "c2", "tollgate[bot]"])
    );
    assert_eq!(time(&created.body["committer"]["date"]), at);
    assert_eq!(fake.tree_at(REPO, &sha), fake.tree_at(REPO, "c1"));

    let refs = format!("/repos/{REPO}/git/refs");
    let exists = api
        .post(&refs, json!({ "ref": "refs/heads/main", "sha": sha }))
        .await;
    assert_eq!(
        (exists.status, &exists.body["message"]),
        (422, &json!("Reference already exists"))
    );
    let unknown = api
        .post(&refs, json!({ "ref": "refs/heads/x", "sha": "nope" }))
        .await;
    assert_eq!(unknown.status, 422);
    let made = api
        .post(&refs, json!({ "ref": "refs/heads/x", "sha": sha }))
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!(
        pick(&made.body, &["/ref", "/object/sha"]),
        json!(["refs/heads/x", sha])
    );
    assert_eq!(fake.branch_tip(REPO, "x"), Some(sha));
    assert_eq!(fake.branch_tip(REPO, "y"), None);
    fake.assert_requests_match_openapi();
}

// --- pull requests opened through the API ------------------------------------------------------

/// The git data API's revert: the merge's first parent's tree, committed on the merge, on a new
/// branch, proposed as a pull request.
#[tokio::test]
async fn revert_through_the_git_data_api() {
    let (fake, api) = app_fake().await;
    sample_pr(&fake);
    fake.merge_pr(REPO, 7, "carol");
    let main = api
        .get(&format!("/repos/{REPO}/git/ref/heads/main"))
        .await
        .body;
    let merge_sha = main["object"]["sha"].as_str().unwrap().to_owned();
    let merge = api
        .get(&format!("/repos/{REPO}/git/commits/{merge_sha}"))
        .await
        .body;
    let parent_sha = merge["parents"][0]["sha"].as_str().unwrap().to_owned();
    let parent = api
        .get(&format!("/repos/{REPO}/git/commits/{parent_sha}"))
        .await
        .body;
    let body = json!({
        "message": "Revert \"Retrain\"",
        "tree": parent["tree"]["sha"],
        "parents": [merge_sha],
    });
    let revert = api.post(&format!("/repos/{REPO}/git/commits"), body).await;
    assert_eq!(revert.status, 201, "{}", revert.body);
    let revert_sha = revert.body["sha"].as_str().unwrap().to_owned();
    let new_ref = json!({ "ref": "refs/heads/revert-7", "sha": revert_sha });
    let made = api.post(&format!("/repos/{REPO}/git/refs"), new_ref).await;
    assert_eq!(made.status, 201);
    let opening = json!({
        "title": "Revert \"Retrain\"",
        "head": "revert-7",
        "base": "main",
        "body": "Reverts #7",
    });
    let pr = api.post(&format!("/repos/{REPO}/pulls"), opening).await;
    assert_eq!(pr.status, 201, "{}", pr.body);
    let fields = [
        "/number",
        "/state",
        "/user/login",
        "/head/sha",
        "/base/sha",
        "/commits",
    ];
    assert_eq!(
        pick(&pr.body, &fields),
        json!([8, "open", "tollgate[bot]", revert_sha, merge_sha, 1])
    );

    let reverse = [
        json!(["README.md", "added"]),
        json!(["eval/metrics.json", "modified"]),
        json!(["models/new/model.onnx", "removed"]),
        json!(["models/old.onnx", "added"]),
        json!(["models/renamed.onnx", "removed"]),
    ];
    assert_eq!(pull_files(&api, 8).await, reverse);
    let commits = api
        .get(&format!("/repos/{REPO}/pulls/8/commits"))
        .await
        .body;
    assert_eq!(
        pick(&commits[0], &["/sha", "/author/login", "/committer/login"]),
        json!([revert_sha, "tollgate[bot]", "tollgate[bot]"])
    );
    let readme = api
        .get(&format!(
            "/repos/{REPO}/contents/README.md?ref={revert_sha}"
        ))
        .await;
    assert_eq!(readme.status, 200);
    let compare = api
        .get(&format!("/repos/{REPO}/compare/main...revert-7"))
        .await
        .body;
    assert_eq!(
        pick(&compare, &["/status", "/ahead_by"]),
        json!(["ahead", 1])
    );
    assert_eq!(fake.tree_at(REPO, &revert_sha), tree_of(&base_tree()));
    fake.assert_requests_match_openapi();
}

#[tokio::test]
async fn creating_a_pull_request_refuses_as_github_does() {
    let (fake, api) = app_fake().await;
    sample_pr(&fake);
    fake.set_branch(REPO, "empty", BASE);
    let pulls = format!("/repos/{REPO}/pulls");
    let open = |head: &str, base: &str| json!({ "title": "T", "head": head, "base": base });
    let refusals = [
        (open("nope", "main"), "head"),
        (open("feature", "nope"), "base"),
        (open("other:feature", "main"), "head"),
    ];
    for (body, field) in refusals {
        let refused = api.post(&pulls, body.clone()).await;
        assert_eq!(refused.status, 422, "{body}");
        assert_eq!(
            pick(&refused.body, &["/message", "/errors/0/field"]),
            json!(["Validation Failed", field])
        );
    }
    let custom = [
        (open("main", "main"), "No commits between main and main"),
        (open("empty", "main"), "No commits between main and empty"),
        (
            open("feature", "main"),
            "A pull request already exists for acme:feature.",
        ),
    ];
    for (body, message) in custom {
        let refused = api.post(&pulls, body.clone()).await;
        assert_eq!(refused.status, 422, "{body}");
        assert_eq!(refused.body["errors"][0]["message"], message);
    }
    let untitled = api
        .post(&pulls, json!({ "head": "feature", "base": "x" }))
        .await;
    assert_eq!(untitled.status, 422);
    assert_eq!(fake.pulls(REPO).len(), 1, "nothing was opened");
    fake.assert_requests_match_openapi();
}

#[tokio::test]
async fn pull_requests_opened_through_the_api_follow_their_branch() {
    let fake = FakeGitHub::start().await;
    sample_pr(&fake);
    fake.set_user("octo");
    let api = Api::new(&fake, Some("ghp_octo"));
    fake.set_branch(REPO, "topic", BASE);
    let t1 = CommitSpec::new("t1", "dave", vec![FileChange::added("notes.md", "n\n")]);
    fake.commit_to_branch(REPO, "topic", t1);
    let opening = json!({
        "title": "Notes",
        "head": "acme:topic",
        "base": "main",
        "draft": true,
        "maintainer_can_modify": true,
    });
    let created = api.post(&format!("/repos/{REPO}/pulls"), opening).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert!(
        created
            .header("location")
            .is_some_and(|l| l.ends_with("/pulls/8"))
    );
    let fields = ["/number", "/user/login", "/draft", "/maintainer_can_modify"];
    assert_eq!(pick(&created.body, &fields), json!([8, "octo", true, true]));
    let got = api.get(&format!("/repos/{REPO}/pulls/8")).await.body;
    assert_eq!(
        pick(&got, &["/head/sha", "/base/sha", "/body"]),
        json!(["t1", BASE, ""])
    );

    let t2 = CommitSpec::new("t2", "dave", vec![FileChange::modified("notes.md", "m\n")]);
    fake.commit_to_branch(REPO, "topic", t2);
    let commits = api
        .get(&format!("/repos/{REPO}/pulls/8/commits"))
        .await
        .body;
    assert_eq!(column(&commits, "/sha"), [json!("t1"), json!("t2")]);
    assert_eq!(pull_files(&api, 8).await, [json!(["notes.md", "added"])]);
    let listed = api
        .get(&format!("/repos/{REPO}/pulls?head=acme:topic"))
        .await
        .body;
    assert_eq!(column(&listed, "/number"), [json!(8)]);
    let view = fake.pulls(REPO).pop().expect("PR #8");
    assert_eq!(
        (
            view.author.as_str(),
            view.head_ref.as_str(),
            view.head_sha.as_str()
        ),
        ("octo", "topic", "t2")
    );
    assert!(view.draft);
    fake.assert_requests_match_openapi();
}

// --- GraphQL -------------------------------------------------------------------------------------

const REVERT_MUTATION: &str = "mutation($input: RevertPullRequestInput!) { \
    revertPullRequest(input: $input) { revertPullRequest { number url } } }";

fn revert_request(id: &str, input: Value) -> Value {
    let mut input = input;
    input["pullRequestId"] = json!(id);
    json!({ "query": REVERT_MUTATION, "variables": { "input": input } })
}

/// GitHub's revert button, after main moved on: the revert undoes the PR's paths only.
#[tokio::test]
async fn graphql_reverts_a_merged_pull_request() {
    let (fake, api) = app_fake().await;
    sample_pr(&fake);
    let merge = fake.merge_pr(REPO, 7, "carol");
    let later = CommitSpec::new(
        "later",
        "erin",
        vec![
            FileChange::added("docs/a.md", "a\n"),
            FileChange::modified(".governance.toml", "version = 2\n"),
        ],
    );
    fake.commit_to_branch(REPO, "main", later);
    let input = json!({ "title": "Undo retrain", "body": "Rolling back.", "draft": false });
    let answer = api
        .post("/graphql", revert_request("PR_fake7", input))
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.body,
        json!({ "data": { "revertPullRequest": { "revertPullRequest": {
            "number": 8, "url": "https://github.com/acme/models/pull/8",
        } } } })
    );

    let view = fake.pulls(REPO).pop().expect("the revert PR");
    let fields = (
        view.number,
        view.title.as_str(),
        view.body.as_str(),
        view.author.as_str(),
        view.head_ref.as_str(),
        view.base_ref.as_str(),
        view.base_sha.as_str(),
    );
    assert_eq!(
        fields,
        (
            8,
            "Undo retrain",
            "Rolling back.",
            "tollgate[bot]",
            "revert-7-feature",
            "main",
            "later"
        )
    );
    let mut expected = tree_of(&base_tree());
    expected.insert("docs/a.md".to_owned(), "a\n".to_owned());
    expected.insert(".governance.toml".to_owned(), "version = 2\n".to_owned());
    assert_eq!(fake.tree_at(REPO, &view.head_sha), expected);
    assert_eq!(
        fake.branch_tip(REPO, "revert-7-feature"),
        Some(view.head_sha.clone())
    );
    let commit = api
        .get(&format!("/repos/{REPO}/git/commits/{}", view.head_sha))
        .await
        .body;
    assert_eq!(column(&commit["parents"], "/sha"), [json!("later")]);
    assert_eq!(
        pick(&commit, &["/author/name", "/committer/name"]),
        json!(["tollgate[bot]", "web-flow"])
    );
    assert!(
        commit["message"]
            .as_str()
            .unwrap()
            .contains(&format!("This reverts commit {merge}"))
    );
    let reverse = [
        json!(["README.md", "added"]),
        json!(["eval/metrics.json", "modified"]),
        json!(["models/new/model.onnx", "removed"]),
        json!(["models/old.onnx", "added"]),
        json!(["models/renamed.onnx", "removed"]),
    ];
    assert_eq!(pull_files(&api, 8).await, reverse);

    let again = api
        .post("/graphql", revert_request("PR_fake7", json!({})))
        .await;
    let second = again.body["data"]["revertPullRequest"]["revertPullRequest"]["number"].clone();
    assert_eq!(second, 9);
    let view = fake.pulls(REPO).pop().expect("the second revert");
    assert_eq!(
        (
            view.title.as_str(),
            view.body.as_str(),
            view.head_ref.as_str()
        ),
        (
            "Revert \"Retrain\"",
            "Reverts acme/models#7",
            "revert-7-feature-1"
        )
    );
    let recorded: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/graphql")
        .collect();
    assert_eq!(recorded.len(), 2);
    let sent = recorded[0].body.as_ref().expect("a JSON body");
    assert_eq!(sent["variables"]["input"]["pullRequestId"], "PR_fake7");
    fake.assert_requests_match_openapi();
}

#[tokio::test]
async fn graphql_refuses_what_github_refuses() {
    let (fake, api) = app_fake().await;
    sample_pr(&fake);
    let unmerged = api
        .post("/graphql", revert_request("PR_fake7", json!({})))
        .await;
    assert_eq!(unmerged.status, 200);
    assert_eq!(unmerged.body["data"]["revertPullRequest"], Value::Null);
    assert_eq!(
        pick(&unmerged.body, &["/errors/0/type", "/errors/0/path/0"]),
        json!(["UNPROCESSABLE", "revertPullRequest"])
    );
    let unknown = api
        .post("/graphql", revert_request("PR_fake99", json!({})))
        .await;
    assert_eq!(unknown.body["errors"][0]["type"], "NOT_FOUND");
    let query = api
        .post("/graphql", json!({ "query": "query { viewer { login } }" }))
        .await;
    assert_eq!(query.status, 200);
    assert!(
        query.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("revertPullRequest")
    );
    assert!(query.body.get("data").is_none());

    let anonymous = Api::new(&fake, None)
        .post("/graphql", revert_request("PR_fake7", json!({})))
        .await;
    assert_eq!(
        (anonymous.status, &anonymous.body["message"]),
        (
            401,
            &json!("This endpoint requires you to be authenticated.")
        )
    );
    let jwt = Api::new(&fake, Some(&fake.app_jwt()));
    assert_eq!(
        jwt.post("/graphql", json!({ "query": "{}" })).await.status,
        401
    );
    let user = Api::new(&fake, Some("ghp_user"));
    assert_eq!(
        user.post("/graphql", json!({ "query": "{}" })).await.status,
        200
    );
    assert_eq!(fake.pulls(REPO).len(), 1, "nothing was opened");
    fake.assert_requests_match_openapi();
}

// --- issues --------------------------------------------------------------------------------------

#[tokio::test]
async fn issues_share_the_numbers_of_pull_requests() {
    let (fake, api) = app_fake().await;
    sample_pr(&fake);
    fake.set_permission(REPO, "carol", "write");
    fake.set_permission(REPO, "mallory", "triage");
    let issues = format!("/repos/{REPO}/issues");
    let refused = api
        .post(
            &issues,
            json!({ "title": "x", "assignees": ["carol", "mallory"] }),
        )
        .await;
    assert_eq!(refused.status, 422);
    assert_eq!(
        pick(
            &refused.body,
            &[
                "/message",
                "/errors/0/field",
                "/errors/0/code",
                "/errors/0/value"
            ]
        ),
        json!(["Validation Failed", "assignees", "invalid", "mallory"])
    );
    let at = fake.now();
    let body = json!({
        "title": "Model rollback needed",
        "body": "AUC dropped.",
        "labels": ["incident", { "name": "sev2" }],
        "assignees": ["carol"],
    });
    let created = api.post(&issues, body).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let fields = [
        "/number",
        "/state",
        "/user/login",
        "/assignee/login",
        "/assignees/0/login",
        "/labels/1/name",
        "/html_url",
    ];
    assert_eq!(
        pick(&created.body, &fields),
        json!([
            8,
            "open",
            "tollgate[bot]",
            "carol",
            "carol",
            "sev2",
            "https://github.com/acme/models/issues/8"
        ])
    );
    assert!(created.body.get("pull_request").is_none());
    let fetched = api.get(&format!("{issues}/8")).await.body;
    assert_eq!(fetched["title"], "Model rollback needed");
    assert!(
        api.get(&format!("{issues}/7")).await.body["pull_request"].is_object(),
        "a PR's issue side links to it"
    );
    assert_eq!(api.get(&format!("/repos/{REPO}/pulls/8")).await.status, 404);
    let _: octocrab::models::issues::Issue =
        serde_json::from_value(fetched).expect("octocrab reads an issue");

    fake.set_branch(REPO, "topic", BASE);
    fake.commit_to_branch(
        REPO,
        "topic",
        CommitSpec::new("t1", "dave", vec![FileChange::added("n", "n")]),
    );
    let opening = json!({ "title": "T", "head": "topic", "base": "main" });
    let pr = api.post(&format!("/repos/{REPO}/pulls"), opening).await;
    assert_eq!(pr.body["number"], 9, "issues and PRs share one sequence");
    let next = api.post(&issues, json!({ "title": "Another" })).await;
    assert_eq!(next.body["number"], 10);
    assert_eq!(next.body["body"], Value::Null);

    let views = fake.issues(REPO);
    let numbers: Vec<u64> = views.iter().map(|i| i.number).collect();
    assert_eq!(numbers, [8, 10], "issues only, by number");
    assert_eq!(
        (views[0].labels.clone(), views[0].assignees.clone()),
        (
            vec!["incident".to_owned(), "sev2".to_owned()],
            vec!["carol".to_owned()]
        )
    );
    assert_eq!(views[0].created_at, at);
    assert_eq!(views[0].author, "tollgate[bot]");
    let pulls: Vec<u64> = fake.pulls(REPO).iter().map(|p| p.number).collect();
    assert_eq!(pulls, [7, 9]);
    fake.assert_requests_match_openapi();
}

#[tokio::test]
async fn issues_take_labels_comments_and_close() {
    let (fake, api) = app_fake().await;
    fake.set_permission(REPO, "carol", "admin");
    sample_pr(&fake);
    let issues = format!("/repos/{REPO}/issues");
    let created = api
        .post(
            &issues,
            json!({ "title": "Incident", "labels": ["incident"] }),
        )
        .await;
    assert_eq!(created.body["number"], 8);
    let labels = api
        .post(
            &format!("{issues}/8/labels"),
            json!({ "labels": ["sev1", "Incident"] }),
        )
        .await;
    assert_eq!(labels.status, 200, "{}", labels.body);
    assert_eq!(
        column(&labels.body, "/name"),
        [json!("incident"), json!("sev1")],
        "every label of the issue, names case-insensitive"
    );

    let comment = api
        .post(
            &format!("{issues}/8/comments"),
            json!({ "body": "Rolled back." }),
        )
        .await;
    assert_eq!(comment.status, 201);
    assert!(
        comment.body["html_url"]
            .as_str()
            .unwrap()
            .contains("/issues/8#issuecomment-")
    );
    fake.add_comment(REPO, 8, "carol", "Thanks");
    let listed = api.get(&format!("{issues}/8/comments")).await.body;
    assert_eq!(
        column(&listed, "/body"),
        [json!("Rolled back."), json!("Thanks")]
    );
    assert_eq!(fake.comments(REPO, 8).len(), 2);
    assert_eq!(api.get(&format!("{issues}/8")).await.body["comments"], 2);

    let patch = json!({
        "state": "closed",
        "state_reason": "not_planned",
        "title": "Incident (false alarm)",
        "assignees": ["carol"],
        "labels": ["false-alarm"],
    });
    let closed = api.patch(&format!("{issues}/8"), patch).await;
    assert_eq!(closed.status, 200, "{}", closed.body);
    let fields = [
        "/state",
        "/state_reason",
        "/closed_by/login",
        "/title",
        "/assignees/0/login",
        "/labels/0/name",
    ];
    assert_eq!(
        pick(&closed.body, &fields),
        json!([
            "closed",
            "not_planned",
            "tollgate[bot]",
            "Incident (false alarm)",
            "carol",
            "false-alarm"
        ])
    );
    assert!(closed.body["closed_at"].is_string());
    let reopened = api
        .patch(&format!("{issues}/8"), json!({ "state": "open" }))
        .await;
    assert_eq!(
        pick(&reopened.body, &["/state", "/state_reason", "/closed_by"]),
        json!(["open", "reopened", null])
    );
    let bad = api
        .patch(&format!("{issues}/8"), json!({ "assignees": ["mallory"] }))
        .await;
    assert_eq!(
        (bad.status, &bad.body["errors"][0]["value"]),
        (422, &json!("mallory"))
    );

    fake.close_issue(REPO, 8, "carol");
    let view = &fake.issues(REPO)[0];
    assert_eq!(
        (
            view.state.as_str(),
            view.closed_by.as_deref(),
            view.state_reason.as_deref()
        ),
        ("closed", Some("carol"), Some("completed"))
    );
    let closed_pr = api
        .patch(&format!("{issues}/7"), json!({ "state": "closed" }))
        .await;
    assert_eq!(closed_pr.body["state"], "closed");
    let pr = &fake.pulls(REPO)[0];
    assert_eq!((pr.state.as_str(), pr.merged), ("closed", false));
    assert_eq!(
        api.patch(&format!("{issues}/99"), json!({})).await.status,
        404
    );
    fake.assert_requests_match_openapi();
}

// --- deployments and protection rules ----------------------------------------------------------

/// Asserts that an answer fits the OpenAPI subset's schema for its status (without the subset,
/// nothing is checked).
fn assert_fits_openapi(fake: &FakeGitHub, method: &str, path: &str, answer: &Answer) {
    let path = path.strip_prefix(&fake.url()).unwrap_or(path);
    let problems = fake.openapi_response_problems(method, path, answer.status, &answer.body);
    if let Some(problems) = problems {
        assert!(problems.is_empty(), "{method} {path}: {problems:#?}");
    }
}

/// The `id` of every item of a list.
fn ids(list: &Value) -> Vec<u64> {
    column(list, "/id")
        .iter()
        .map(|id| id.as_u64().unwrap_or_else(|| panic!("{id} is not an id")))
        .collect()
}

/// Three deployments: `main` at `m1` to production, then to staging; five minutes later,
/// `feature` at `f1` to production.
fn sample_deployments(fake: &FakeGitHub) -> [u64; 3] {
    let prod_main = fake.add_deployment(REPO, "production", "m1", "main");
    let staging_main = fake.add_deployment(REPO, "staging", "m1", "main");
    fake.advance(TimeDelta::minutes(5));
    let prod_feature = fake.add_deployment(REPO, "production", "f1", "feature");
    [prod_main, staging_main, prod_feature]
}

#[tokio::test]
async fn deployments_are_listed_newest_first_and_filtered() {
    let (fake, app) = app_fake().await;
    let start = fake.now();
    let [prod_main, staging_main, prod_feature] = sample_deployments(&fake);
    let path = format!("/repos/{REPO}/deployments");
    let all = app.get(&path).await;
    assert_eq!(all.status, 200);
    assert_fits_openapi(&fake, "GET", &path, &all);
    assert_eq!(ids(&all.body), [prod_feature, staging_main, prod_main]);
    let newest = &all.body[0];
    let fields = [
        "/sha",
        "/ref",
        "/task",
        "/environment",
        "/original_environment",
        "/production_environment",
        "/transient_environment",
        "/payload",
        "/description",
        "/creator/login",
        "/creator/type",
        "/performed_via_github_app/slug",
    ];
    assert_eq!(
        pick(newest, &fields),
        json!([
            "f1",
            "feature",
            "deploy",
            "production",
            "production",
            true,
            false,
            {},
            null,
            "github-actions[bot]",
            "Bot",
            "github-actions"
        ])
    );
    let url = format!("{}/repos/{REPO}/deployments/{prod_feature}", fake.url());
    assert_eq!(
        pick(newest, &["/url", "/statuses_url"]),
        json!([url, format!("{url}/statuses")])
    );
    assert_eq!(all.body[1]["production_environment"], false);
    assert_eq!(time(&all.body[2]["created_at"]), start);
    let later = start + TimeDelta::seconds(2) + TimeDelta::minutes(5);
    assert_eq!(time(&newest["created_at"]), later);
    assert_eq!(time(&newest["updated_at"]), later);

    let filtered: [(&str, &[u64]); 7] = [
        ("environment=production", &[prod_feature, prod_main]),
        ("environment=Production", &[prod_feature, prod_main]),
        ("sha=m1", &[staging_main, prod_main]),
        ("ref=feature", &[prod_feature]),
        ("sha=m1&environment=staging", &[staging_main]),
        ("task=deploy", &[prod_feature, staging_main, prod_main]),
        ("task=deploy:migrations", &[]),
    ];
    for (query, expected) in filtered {
        let answer = app.get(&format!("{path}?{query}")).await;
        assert_eq!(ids(&answer.body), expected, "{query}");
    }
    let elsewhere = app.get("/repos/acme/elsewhere/deployments").await;
    assert_eq!(elsewhere.status, 404);
    fake.assert_requests_match_openapi();
}

#[tokio::test]
async fn deployments_page_through_link_headers() {
    let (fake, app) = app_fake().await;
    let mut production: Vec<u64> = (0..7)
        .map(|i| fake.add_deployment(REPO, "production", &format!("s{i}"), "main"))
        .collect();
    fake.add_deployment(REPO, "staging", "s9", "main");
    production.reverse();
    let first = format!("/repos/{REPO}/deployments?environment=production&per_page=3");
    let page = app.get(&first).await;
    assert_eq!(ids(&page.body), production[..3]);
    let next = link_to(&page, "next").expect("a next page");
    assert!(
        next.contains("environment=production") && next.contains("page=2"),
        "{next}"
    );
    let last = link_to(&page, "last").expect("a last page");
    assert!(last.contains("page=3"), "{last}");
    let (items, pages) = all_pages(&app, &first).await;
    assert_eq!(pages, 3);
    assert_eq!(ids(&Value::Array(items)), production);
    let beyond = app.get(&format!("{first}&page=4")).await;
    assert_eq!((beyond.status, &beyond.body), (200, &json!([])));
    fake.assert_requests_match_openapi();
}

#[tokio::test]
async fn deployment_statuses_are_listed_newest_first() {
    let (fake, app) = app_fake().await;
    let [prod_main, staging_main, prod_feature] = sample_deployments(&fake);
    let queued = fake.add_deployment_status(REPO, prod_main, "queued");
    fake.advance(TimeDelta::seconds(30));
    let running = fake.add_deployment_status(REPO, prod_main, "in_progress");
    let finished = fake.now();
    let done = fake.add_deployment_status(REPO, prod_main, "success");
    fake.add_deployment_status(REPO, staging_main, "failure");

    let path = format!("/repos/{REPO}/deployments/{prod_main}/statuses");
    let listed = app.get(&path).await;
    assert_eq!(listed.status, 200);
    assert_fits_openapi(&fake, "GET", &path, &listed);
    assert_eq!(ids(&listed.body), [done, running, queued]);
    assert_eq!(
        column(&listed.body, "/state"),
        [json!("success"), json!("in_progress"), json!("queued")]
    );
    let times: Vec<DateTime<Utc>> = column(&listed.body, "/created_at")
        .iter()
        .map(time)
        .collect();
    assert!(times.windows(2).all(|w| w[0] > w[1]), "{times:?}");
    assert_eq!(times[0], finished);
    let deployment_url = format!("{}/repos/{REPO}/deployments/{prod_main}", fake.url());
    let fields = [
        "/environment",
        "/creator/login",
        "/deployment_url",
        "/url",
        "/performed_via_github_app/slug",
    ];
    assert_eq!(
        pick(&listed.body[0], &fields),
        json!([
            "production",
            "github-actions[bot]",
            deployment_url,
            format!("{deployment_url}/statuses/{done}"),
            "github-actions"
        ])
    );
    let deployment = app
        .get(&format!(
            "/repos/{REPO}/deployments?sha=m1&environment=production"
        ))
        .await;
    assert_eq!(
        time(&deployment.body[0]["updated_at"]),
        finished,
        "a status moves its deployment's updated_at"
    );

    let paged = app.get(&format!("{path}?per_page=2")).await;
    assert_eq!(ids(&paged.body), [done, running]);
    let next = link_to(&paged, "next").expect("a second page");
    assert_eq!(ids(&app.get(&next).await.body), [queued]);
    let none_yet = app
        .get(&format!(
            "/repos/{REPO}/deployments/{prod_feature}/statuses"
        ))
        .await;
    assert_eq!((none_yet.status, &none_yet.body), (200, &json!([])));
    let unknown_path = format!("/repos/{REPO}/deployments/999999/statuses");
    let unknown = app.get(&unknown_path).await;
    assert_eq!(
        (unknown.status, &unknown.body["message"]),
        (404, &json!("Not Found"))
    );
    assert_fits_openapi(&fake, "GET", &unknown_path, &unknown);
    fake.assert_requests_match_openapi();
}

#[tokio::test]
async fn response_checks_catch_a_broken_deployment() {
    let fake = FakeGitHub::start().await;
    let path = format!("/repos/{REPO}/deployments");
    let broken = json!([{ "id": "one", "environment": "production" }]);
    let Some(problems) = fake.openapi_response_problems("GET", &path, 200, &broken) else {
        eprintln!("skipped: no OpenAPI subset");
        return;
    };
    let all = problems.join("\n");
    assert!(all.contains("response[0].id: expected integer"), "{all}");
    assert!(all.contains("required property `sha` is missing"), "{all}");
    let undocumented = fake.openapi_response_problems("GET", &path, 418, &json!([]));
    assert_eq!(
        undocumented,
        Some(vec!["the description lists no 418 response".to_owned()])
    );
}

#[tokio::test]
#[should_panic(expected = "unknown deployment state done")]
async fn deployment_states_are_githubs() {
    let fake = FakeGitHub::start().await;
    let id = fake.add_deployment(REPO, "production", "m1", "main");
    fake.add_deployment_status(REPO, id, "done");
}

#[tokio::test]
async fn protection_rule_answers_are_recorded_once_per_run_and_environment() {
    let (fake, app) = app_fake().await;
    let callback = fake.deployment_callback_url(REPO, 4242);
    let expected = format!(
        "{}/repos/{REPO}/actions/runs/4242/deployment_protection_rule",
        fake.url()
    );
    assert_eq!(callback, expected);
    let at = fake.now();
    let approve = json!({
        "environment_name": "production", "state": "approved", "comment": "All gates passed.",
    });
    let approved = app.post(&callback, approve).await;
    assert_eq!((approved.status, &approved.body), (204, &Value::Null));
    assert_fits_openapi(&fake, "POST", &callback, &approved);
    let first = ProtectionAnswer {
        run_id: 4242,
        environment: "production".to_owned(),
        state: "approved".to_owned(),
        comment: "All gates passed.".to_owned(),
        at,
    };
    assert_eq!(fake.protection_answers(REPO), [first]);

    let change = json!({
        "environment_name": "Production", "state": "rejected", "comment": "Changed my mind",
    });
    let again = app.post(&callback, change).await;
    assert_eq!(again.status, 422);
    let message = again.body["message"].as_str().unwrap_or_default();
    assert!(message.contains("already been reviewed"), "{message}");

    let staging = json!({ "environment_name": "staging", "state": "rejected" });
    assert_eq!(app.post(&callback, staging).await.status, 204);
    let other_run = fake.deployment_callback_url(REPO, 4243);
    let reject = json!({
        "environment_name": "production", "state": "rejected", "comment": "Blocked by tollgate",
    });
    assert_eq!(app.post(&other_run, reject).await.status, 204);
    let answers = fake.protection_answers(REPO);
    let seen: Vec<(u64, &str, &str, &str)> = answers
        .iter()
        .map(|a| {
            let (env, state) = (a.environment.as_str(), a.state.as_str());
            (a.run_id, env, state, a.comment.as_str())
        })
        .collect();
    assert_eq!(
        seen,
        [
            (4242, "production", "approved", "All gates passed."),
            (4242, "staging", "rejected", ""),
            (4243, "production", "rejected", "Blocked by tollgate"),
        ]
    );
    assert!(answers.windows(2).all(|w| w[0].at < w[1].at));
    fake.assert_requests_match_openapi();
}

#[tokio::test]
async fn protection_rule_status_reports_are_capped_and_end_with_the_answer() {
    let (fake, app) = app_fake().await;
    let callback = fake.deployment_callback_url(REPO, 7);
    for i in 0..10 {
        let report =
            json!({ "environment_name": "production", "comment": format!("Evaluating ({i})") });
        assert_eq!(app.post(&callback, report).await.status, 204, "report {i}");
    }
    let eleventh = json!({ "environment_name": "production", "comment": "Still evaluating" });
    assert_eq!(app.post(&callback, eleventh).await.status, 422);
    let reports = fake.protection_reports(REPO);
    assert_eq!(reports.len(), 10);
    assert_eq!(
        (reports[9].run_id, reports[9].comment.as_str()),
        (7, "Evaluating (9)")
    );
    assert!(
        fake.protection_answers(REPO).is_empty(),
        "a report is no answer"
    );

    let long = json!({
        "environment_name": "production", "state": "rejected", "comment": "x".repeat(1_025),
    });
    let refused = app.post(&callback, long).await;
    assert_eq!(
        (refused.status, &refused.body["errors"][0]["field"]),
        (422, &json!("comment"))
    );
    let approve = json!({ "environment_name": "production", "state": "approved", "comment": "ok" });
    assert_eq!(app.post(&callback, approve).await.status, 204);
    let late = json!({ "environment_name": "production", "comment": "Done" });
    assert_eq!(app.post(&callback, late).await.status, 422);
    assert_eq!(fake.protection_reports(REPO).len(), 10);
    fake.assert_requests_match_openapi();
}

#[tokio::test]
async fn protection_rule_takes_only_an_installation_token() {
    let (fake, app) = app_fake().await;
    let callback = fake.deployment_callback_url(REPO, 4242);
    let body = json!({ "environment_name": "production", "state": "approved", "comment": "ok" });
    fake.set_user("octo");
    let user = Api::new(&fake, Some("ghp_personal"))
        .post(&callback, body.clone())
        .await;
    assert_eq!(
        (user.status, &user.body["message"]),
        (403, &json!("You must authenticate via a GitHub App."))
    );
    let jwt = Api::new(&fake, Some(&fake.app_jwt()))
        .post(&callback, body.clone())
        .await;
    assert_eq!(jwt.status, 401, "a JWT is not an installation token");
    let anonymous = Api::new(&fake, None).post(&callback, body.clone()).await;
    assert_eq!(anonymous.status, 401);
    let elsewhere = "/repos/acme/elsewhere/actions/runs/4242/deployment_protection_rule";
    assert_eq!(app.post(elsewhere, body.clone()).await.status, 404);
    assert!(
        fake.protection_answers(REPO).is_empty(),
        "nothing refused counts"
    );
    assert_eq!(app.post(&callback, body).await.status, 204);
    assert_eq!(fake.protection_answers(REPO).len(), 1);
    fake.assert_requests_match_openapi();
}

/// octocrab's deployment models read the fake's answers, and it pages through them.
#[tokio::test]
async fn octocrab_reads_deployments_and_their_statuses() {
    use octocrab::models::repos::DeploymentStatusState;
    let (fake, _) = app_fake().await;
    let mut production: Vec<u64> = (0..5)
        .map(|i| fake.add_deployment(REPO, "production", &format!("s{i}"), "main"))
        .collect();
    fake.add_deployment(REPO, "staging", "s9", "main");
    production.reverse();
    fake.add_deployment_status(REPO, production[0], "in_progress");
    fake.add_deployment_status(REPO, production[0], "success");
    let client = octocrab::Octocrab::builder()
        .base_uri(fake.url())
        .unwrap()
        .personal_token("ghp_personal".to_owned())
        .build()
        .unwrap();
    let repo = client.repos("acme", "models");
    let first = repo
        .deployments()
        .list()
        .environment("production")
        .per_page(2u8)
        .send()
        .await
        .expect("first page");
    let all = client.all_pages(first).await.expect("every page");
    let ids: Vec<u64> = all.iter().map(|d| d.id.into_inner()).collect();
    assert_eq!(ids, production);
    let statuses = repo
        .deployments()
        .statuses(production[0])
        .list()
        .send()
        .await
        .expect("statuses");
    let states: Vec<DeploymentStatusState> = statuses.items.iter().map(|s| s.state).collect();
    assert_eq!(
        states,
        [
            DeploymentStatusState::Success,
            DeploymentStatusState::InProgress
        ]
    );
    fake.assert_requests_match_openapi();
}
