//! `tollgate serve` as a real process: starts with no forge credentials, answers `/healthz`,
//! logs accepted events as dry-run lines, refuses oversized bodies and stays healthy, and
//! stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use tollgate::intake::verify::github_signature;

const SECRET: &str = "process-test-secret";
const WAIT: Duration = Duration::from_secs(20);

/// A running `tollgate serve` and its log lines (JSON, one per line).
struct Server {
    child: Child,
    addr: SocketAddr,
    logs: mpsc::Receiver<Value>,
}

impl Server {
    fn start(extra_env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_tollgate"));
        command
            .arg("serve")
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TOLLGATE_LISTEN", "127.0.0.1:0")
            .env("TOLLGATE_LOG_FORMAT", "json")
            .env("TOLLGATE_GITHUB_WEBHOOK_SECRET", SECRET)
            .env("TOLLGATE_DRAIN_TIMEOUT_SECS", "5")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in extra_env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start tollgate serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, logs) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        // Keep the temporary directory for the process's lifetime.
        std::mem::forget(dir);
        let started = wait_for(&logs, |line| message(line) == "tollgate serve started")
            .expect("tollgate serve started");
        let addr = started["fields"]["listen"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        Server { child, addr, logs }
    }

    fn request(&self, raw: &[u8]) -> String {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.write_all(raw).unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
    }

    fn get(&self, path: &str) -> String {
        self.request(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill().ok();
        panic!("tollgate serve did not stop within 10 s of SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn message(line: &Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or("")
}

fn wait_for(logs: &mpsc::Receiver<Value>, mut wanted: impl FnMut(&Value) -> bool) -> Option<Value> {
    let deadline = std::time::Instant::now() + WAIT;
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match logs.recv_timeout(left) {
            Ok(line) if wanted(&line) => return Some(line),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

fn status_line(response: &str) -> &str {
    response.lines().next().unwrap_or("")
}

fn signed_post(body: &[u8], event: &str, delivery: &str) -> Vec<u8> {
    let mut raw = format!(
        "POST /webhooks/github HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
         Content-Type: application/json\r\nX-GitHub-Event: {event}\r\n\
         X-GitHub-Delivery: {delivery}\r\nX-Hub-Signature-256: {}\r\nContent-Length: {}\r\n\r\n",
        github_signature(SECRET, body),
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

const PR_OPENED: &str = include_str!("../fixtures/github/pull_request.opened.json");

#[test]
fn serve_without_credentials_answers_health_and_logs_dry_run_lines() {
    let server = Server::start(&[]);
    let started_mode = server.get("/healthz");
    assert!(status_line(&started_mode).contains("200"), "{started_mode}");
    assert!(
        started_mode.ends_with(r#"{"status":"ok"}"#),
        "{started_mode}"
    );
    // The start page and the decision pages are served too (none decided yet).
    let start = server.get("/");
    assert!(status_line(&start).contains("200"), "{start}");
    assert!(start.contains("No decisions yet."), "{start}");
    let unknown = server.get("/pr/github/acme/ml/1");
    assert!(status_line(&unknown).contains("404"), "{unknown}");

    let response = server.request(&signed_post(
        PR_OPENED.as_bytes(),
        "pull_request",
        "delivery-abc",
    ));
    assert!(status_line(&response).contains("202"), "{response}");
    let line = wait_for(&server.logs, |line| message(line).starts_with("dry-run:"))
        .expect("a dry-run log line for the accepted event");
    assert_eq!(line["fields"]["repo"], "acme/fraud-model");
    assert_eq!(line["fields"]["number"], 12);
    assert_eq!(line["fields"]["delivery"], "delivery-abc");
    assert_eq!(
        line["fields"]["head_sha"],
        "1111111111111111111111111111111111111111"
    );
    // The request span carries the delivery id too.
    assert!(line.to_string().contains("delivery-abc"));

    // On first start it created its SQLite ledger and a signing key, and serves the public key.
    let key = server.get("/.well-known/tollgate-signing-key");
    assert!(status_line(&key).contains("200"), "{key}");
    assert!(key.contains("-----BEGIN PUBLIC KEY-----"), "{key}");

    // The container health check command agrees.
    let healthcheck = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args([
            "healthcheck",
            "--url",
            &format!("http://{}/healthz", server.addr),
        ])
        .status()
        .unwrap();
    assert!(healthcheck.success());

    let addr = server.addr;
    let status = server.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    let healthcheck = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["healthcheck", "--url", &format!("http://{addr}/healthz")])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!healthcheck.success(), "a stopped server is not healthy");
}

#[test]
fn oversized_bodies_are_refused_and_the_server_stays_healthy() {
    let server = Server::start(&[]);
    // Declared too large: answered 413 from the headers alone, before the body is sent.
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let head = format!(
        "POST /webhooks/github HTTP/1.1\r\nHost: t\r\nX-GitHub-Event: pull_request\r\n\
         X-Hub-Signature-256: sha256={}\r\nContent-Length: {}\r\n\r\n{{",
        "0".repeat(64),
        26 * 1024 * 1024
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut buffer = [0u8; 512];
    let read = stream.read(&mut buffer).unwrap();
    let response = String::from_utf8_lossy(&buffer[..read]);
    assert!(status_line(&response).contains("413"), "{response}");
    drop(stream);

    // The server keeps serving, health and real deliveries alike.
    assert!(status_line(&server.get("/healthz")).contains("200"));
    let response = server.request(&signed_post(
        PR_OPENED.as_bytes(),
        "pull_request",
        "after-413",
    ));
    assert!(status_line(&response).contains("202"), "{response}");
    let metrics = server.get("/metrics");
    assert!(
        metrics.contains(r#"tollgate_webhook_deliveries_total{forge="github",event="unverified",outcome="too_large"} 1"#),
        "{metrics}"
    );
}

#[test]
fn a_bad_configuration_stops_start_up_naming_the_key() {
    let output = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("serve")
        .env_clear()
        .env("TOLLGATE_LISTEN", "not-an-address")
        .env("TOLLGATE_GITHUB_WEBHOOK_SECRET", "do-not-print-me")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("TOLLGATE_LISTEN"), "{stderr}");
    assert!(stderr.contains("not-an-address"), "{stderr}");
    assert!(
        !stderr.contains("do-not-print-me"),
        "a secret leaked: {stderr}"
    );
}
