//! `tollgate serve` as a real child process against the fake GitHub (App mode): start it, send
//! it signed deliveries over HTTP, read its JSON log, stop it with SIGTERM or SIGKILL.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tollgate::intake::verify::github_signature;

/// The webhook secret the served processes accept.
pub const SECRET: &str = "e2e-secret";
/// The App id the fake knows the served processes by (`fake.set_app(slug, APP_ID)`).
pub const APP_ID: &str = "4242";

/// A running `tollgate serve`; killed and reaped when dropped.
pub struct Serve {
    child: Option<Child>,
    /// `host:port` it listens on.
    pub addr: String,
    /// Every log line so far (JSON).
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    /// Starts `tollgate serve` in `dir` (its working directory: the SQLite store and the
    /// signing key live there by default) against the fake at `api_url`, with `extra`
    /// environment variables on top of the App-mode defaults. Waits until it listens.
    pub fn start(dir: &std::path::Path, api_url: &str, extra: &[(&str, &str)]) -> Serve {
        let key = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/github-app-test-key.pem"
        );
        let child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .arg("serve")
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TOLLGATE_LISTEN", "127.0.0.1:0")
            .env("TOLLGATE_LOG_FORMAT", "json")
            .env("TOLLGATE_GITHUB_WEBHOOK_SECRET", SECRET)
            .env("TOLLGATE_GITHUB_API_URL", api_url)
            .env("TOLLGATE_GITHUB_APP_ID", APP_ID)
            .env("TOLLGATE_GITHUB_PRIVATE_KEY_FILE", key)
            .envs(extra.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tollgate serve");
        let mut serve = Serve {
            child: Some(child),
            addr: String::new(),
            log: Arc::default(),
        };
        let stderr = serve.child.as_mut().unwrap().stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::clone(&serve.log);
        // Keeps draining the log so the process never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = rx.recv_timeout(left) else {
                break;
            };
            let json: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if json["fields"]["message"] == "tollgate serve started" {
                serve.addr = json["fields"]["listen"].as_str().unwrap().to_owned();
                return serve;
            }
        }
        panic!(
            "tollgate serve did not start:\n{}",
            serve.log.lock().unwrap().join("\n")
        );
    }

    /// The webhook URL.
    pub fn webhook_url(&self) -> String {
        format!("http://{}/webhooks/github", self.addr)
    }

    /// Kills it with SIGKILL (no chance to clean up) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits up to `within` for it to exit.
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Log lines whose message is `message`.
    pub fn logged(&self, message: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|json| json["fields"]["message"] == message)
            .count()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Sends a signed GitHub delivery and returns the HTTP status.
pub async fn deliver(
    client: &reqwest::Client,
    url: &str,
    event: &str,
    delivery: &str,
    payload: &Value,
) -> u16 {
    let body = serde_json::to_vec(payload).unwrap();
    client
        .post(url)
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", github_signature(SECRET, &body))
        .body(body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// A fresh PostgreSQL database for one test, dropped by [`PgDatabase::drop_now`]; `None` (and
/// a line saying the test was skipped) without `TOLLGATE_TEST_POSTGRES_URL`.
pub struct PgDatabase {
    admin: String,
    name: String,
    /// Its URL.
    pub url: String,
}

impl PgDatabase {
    pub async fn create(test: &str) -> Option<PgDatabase> {
        use sqlx::Connection as _;
        let Ok(admin) = std::env::var("TOLLGATE_TEST_POSTGRES_URL") else {
            eprintln!("skipped: TOLLGATE_TEST_POSTGRES_URL is not set ({test})");
            return None;
        };
        let name = format!("tollgate_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        Some(PgDatabase { admin, name, url })
    }

    pub async fn drop_now(self) {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&self.admin).await.unwrap();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}
