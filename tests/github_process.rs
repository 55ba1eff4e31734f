//! End to end through the real binary: `tollgate serve` runs as a process against the fake
//! GitHub (App mode), receives signed webhooks over HTTP, and the check run and the sticky
//! comment appear on the fake.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tollgate::intake::verify::github_signature;
use tollgate::render::COMMENT_MARKER;

use common::fake_github::{CommitSpec, FakeGitHub, FileChange, PrSpec};

const SECRET: &str = "e2e-secret";
const REPO: &str = "acme/fraud-model";
const BASE: &str = "base0000000000000000000000000000000000000";
const HEAD: &str = "head1111111111111111111111111111111111111";

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `tollgate serve` against the fake and returns it with its listen address.
fn start(api_url: &str, extra: &[(&str, &str)]) -> (Serve, String) {
    let key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/github-app-test-key.pem"
    );
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("serve")
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TOLLGATE_LISTEN", "127.0.0.1:0")
        .env("TOLLGATE_LOG_FORMAT", "json")
        .env("TOLLGATE_GITHUB_WEBHOOK_SECRET", SECRET)
        .env("TOLLGATE_GITHUB_API_URL", api_url)
        .env("TOLLGATE_GITHUB_APP_ID", "4242")
        .env("TOLLGATE_GITHUB_PRIVATE_KEY_FILE", key)
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tollgate serve");
    // Owned at once, so the process is killed and reaped on every path out of here.
    let mut serve = Serve(child);
    let stderr = serve.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    std::mem::forget(dir);
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let line = rx
            .recv_timeout(left)
            .expect("tollgate serve logs its start");
        let json: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if json["fields"]["message"] == "tollgate serve started" {
            let addr = json["fields"]["listen"].as_str().unwrap().to_owned();
            // Keep draining the log so the process never blocks on a full pipe.
            std::thread::spawn(move || for _ in rx {});
            return (serve, addr);
        }
    }
    panic!("tollgate serve did not start");
}

#[tokio::test]
async fn serve_publishes_a_check_run_and_a_comment_for_a_signed_webhook() {
    let fake = FakeGitHub::start().await;
    fake.set_app("tollgate-e2e", 4242);
    let policy = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/examples/fraud-model.governance.toml"
    ))
    .unwrap();
    fake.set_file(REPO, BASE, ".governance.toml", &policy);
    fake.open_pr(
        REPO,
        PrSpec {
            number: 7,
            base_sha: BASE.to_owned(),
            body: "## Rollback plan\nRevert.\n".to_owned(),
            commits: vec![CommitSpec::new(
                HEAD,
                "alice",
                vec![FileChange::added("models/fraud/v2/model.onnx", "weights")],
            )],
            ..PrSpec::default()
        },
    );
    let (_serve, addr) = start(&fake.url(), &[]);

    let payload = json!({
        "action": "opened", "number": 7,
        "pull_request": {"number": 7, "user": {"login": "alice"},
            "head": {"ref": "feature", "sha": HEAD}, "base": {"ref": "main", "sha": BASE},
            "labels": [], "title": "Fraud v2", "body": ""},
        "repository": {"id": 99, "full_name": REPO},
        "installation": {"id": fake.installation_id()},
    });
    let body = serde_json::to_vec(&payload).unwrap();
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/webhooks/github"))
        .header("content-type", "application/json")
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", "e2e-1")
        .header("x-hub-signature-256", github_signature(SECRET, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let runs = fake.check_runs(REPO);
        let comments = fake.comments(REPO, 7);
        if let (Some(run), Some(comment)) = (runs.first(), comments.first())
            && run.conclusion.is_some()
        {
            assert_eq!(run.head_sha, HEAD);
            assert_eq!(run.name, "tollgate");
            assert_eq!(run.conclusion.as_deref(), Some("action_required"));
            assert!(run.title.as_deref().unwrap().starts_with("High risk"));
            assert!(comment.body.contains(COMMENT_MARKER));
            assert_eq!(comment.author, "tollgate-e2e[bot]");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no check run and comment within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fake.assert_requests_match_openapi();
}

fn policy_text() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/examples/fraud-model.governance.toml"
    ))
    .unwrap()
}

async fn send_opened(addr: &str, fake: &FakeGitHub, number: u64, head: &str) {
    let payload = json!({
        "action": "opened", "number": number,
        "pull_request": {"number": number, "user": {"login": "alice"},
            "head": {"ref": "feature", "sha": head}, "base": {"ref": "main", "sha": BASE},
            "labels": [], "title": "Model", "body": ""},
        "repository": {"id": 99, "full_name": REPO},
        "installation": {"id": fake.installation_id()},
    });
    let body = serde_json::to_vec(&payload).unwrap();
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/webhooks/github"))
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", format!("pg-{number}"))
        .header("x-hub-signature-256", github_signature(SECRET, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
}

#[tokio::test]
async fn two_servers_on_one_postgres_database_keep_one_chain_per_repository() {
    use sqlx::Connection as _;
    let Ok(admin) = std::env::var("TOLLGATE_TEST_POSTGRES_URL") else {
        eprintln!("skipped: TOLLGATE_TEST_POSTGRES_URL is not set (two servers on PostgreSQL)");
        return;
    };
    let name = format!("tollgate_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin_conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin_conn)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    let url = format!("{base}/{name}");
    let keys = tempfile::tempdir().unwrap();
    let key = tollgate::ledger::keys::generate();
    let (private, _) = tollgate::ledger::keys::write_pair(keys.path(), &key).unwrap();

    let fake = FakeGitHub::start().await;
    fake.set_app("tollgate-e2e", 4242);
    fake.set_file(REPO, BASE, ".governance.toml", &policy_text());
    let heads: Vec<String> = (1..=6).map(|n| format!("head{n:0>36}")).collect();
    for (n, head) in (1..=6u64).zip(&heads) {
        fake.open_pr(
            REPO,
            PrSpec {
                number: n,
                base_sha: BASE.to_owned(),
                commits: vec![CommitSpec::new(
                    head,
                    "alice",
                    vec![FileChange::added(&format!("models/m{n}/model.onnx"), "w")],
                )],
                ..PrSpec::default()
            },
        );
    }
    let env = [
        ("TOLLGATE_DATABASE_URL", url.as_str()),
        ("TOLLGATE_SIGNING_KEY_FILE", private.to_str().unwrap()),
    ];
    // Both start together on the empty database: the schema is set up once.
    let (first, second) = (start(&fake.url(), &env), start(&fake.url(), &env));
    let addrs = [first.1.clone(), second.1.clone()];
    let sends: Vec<_> = (1..=6u64)
        .zip(&heads)
        .map(|(n, head)| send_opened(&addrs[n as usize % 2], &fake, n, head))
        .collect();
    futures_util::future::join_all(sends).await;

    let deadline = Instant::now() + Duration::from_secs(30);
    while (1..=6).any(|n| fake.comments(REPO, n).is_empty()) {
        assert!(
            Instant::now() < deadline,
            "not every pull request got its comment"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop((first, second));

    let ledger = tollgate::ledger::store::Ledger::open(&url).await.unwrap();
    let report = ledger.verify(&key.verifying_key()).await.unwrap();
    assert!(report.broken.is_empty(), "{report:?}");
    assert_eq!(report.repos, 1);
    let chain = ledger.records(Some(REPO)).await.unwrap();
    assert!(chain.len() >= 6, "{}", chain.len());
    assert_eq!(
        chain.iter().map(|r| r.repo_seq).collect::<Vec<_>>(),
        (1..=chain.len() as i64).collect::<Vec<_>>()
    );
    ledger.pool().close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin_conn)
    .await
    .unwrap();
}
