//! The decision page (issue 9): worked example 1 decided in process, its page served over HTTP
//! by the real pages router, read as HTML, and loaded in real headless Chromium (Debian's
//! `chromium` driven through `chromedriver` by fantoccini), which checks the sign-off table and
//! the verified-signature marks and saves a screenshot to `target/decision-page.png`.
//!
//! Chromium is installed by `.ci/run`; without it (outside CI) the browser test says it was
//! skipped. Under `CI=true` a missing browser fails the test.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::TimeDelta;
use serde_json::json;
use tollgate::pages::{Pages, PagesState, render_page};

use common::fake_github::FileChange;
use common::github_world::{CHECK, REPO, World};

const CARD: &str = "# Fraud v2\n## Intended use\nScoring card payments.\n## Metrics\nAUC 0.93\n## Limitations\nNot for loans.\n";
const SIGN_OFFS: [(&str, &str); 4] = [
    ("dana", "data_reviewer"),
    ("rita", "risk_reviewer"),
    ("omar", "ops_reviewer"),
    ("lena", "approver"),
];

/// Worked example 1 through tollgate: the fraud model PR, every sign-off, passed. Pages are
/// announced under `public`.
async fn worked_example_1(public: &str) -> (World, tempfile::TempDir, String) {
    let db = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", db.path().join("ledger.db").display());
    let mut w = World::on(&url, false).await;
    w.public_url = Some(public.parse().unwrap());
    w.start_replica().await;
    let head = w.open_pr(
        7,
        "alice",
        "Fraud model v2",
        vec![
            FileChange::added("models/fraud/v2/model.onnx", "weights"),
            FileChange::modified("models/fraud/MODEL_CARD.md", CARD),
            FileChange::added("reports/validation/fraud-v2.html", "<html>ok</html>"),
            FileChange::added("reports/risk/fraud-v2.md", "# Risk\nLow.\n"),
            FileChange::modified("eval/metrics.json", r#"{"auc": 0.93}"#),
        ],
    );
    w.deliver("pull_request", &w.pr_payload(7, "opened")).await;
    // The author's own approval is ignored (and shown as such).
    for (who, _) in [("alice", "")].into_iter().chain(SIGN_OFFS) {
        w.advance(TimeDelta::minutes(5));
        w.fake
            .add_review(REPO, 7, who, "APPROVED", &head, w.fake.now());
        let review = json!({
            "action": "submitted",
            "review": {"user": {"login": who, "id": 2}, "state": "approved", "commit_id": head,
                       "submitted_at": w.fake.now().to_rfc3339()},
            "pull_request": {"number": 7},
            "repository": w.repository(),
            "installation": w.installation(),
        });
        w.deliver("pull_request_review", &review).await;
    }
    assert_eq!(w.conclusion(&head).as_deref(), Some("success"));
    (w, db, head)
}

/// Serves the pages of `w`'s store on a free port; returns its root URL.
async fn serve_pages(w: &World) -> String {
    let audit = &w.first().audit;
    let state = PagesState {
        pages: Pages::new(audit.ledger.pool().clone()),
        ledger: audit.ledger.clone(),
        key: audit.key.verifying_key(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, tollgate::pages::router(state))
            .await
            .unwrap();
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn the_page_shows_the_decision_and_verifies_every_record() {
    let (w, _db, head) = worked_example_1("https://tollgate.example.com").await;
    let root = serve_pages(&w).await;

    // The check run links to the page.
    let run = w
        .fake
        .check_runs(REPO)
        .into_iter()
        .find(|r| r.head_sha == head && r.name == CHECK)
        .unwrap();
    assert_eq!(
        run.details_url.as_deref(),
        Some("https://tollgate.example.com/pr/github/acme/fraud-model/7")
    );

    let response = reqwest::get(format!("{root}/pr/github/acme/fraud-model/7"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'"), "no scripts: {csp}");
    let html = response.text().await.unwrap();
    assert!(html.contains("High risk — passed"), "the headline");
    for (who, role) in SIGN_OFFS {
        assert!(
            html.contains(&format!(
                "<td>{role}</td><td><span class=\"ok\">{who}</span>"
            )),
            "{role} signed by {who}"
        );
    }
    assert!(
        html.contains("alice: the author cannot approve their own change"),
        "ignored approvals with their reasons"
    );
    assert!(html.contains("Rollback plan"), "evidence");
    let records = w
        .first()
        .audit
        .ledger
        .change_records(REPO, 7)
        .await
        .unwrap();
    assert!(records.len() >= 10, "{}", records.len());
    assert_eq!(html.matches("✓ verified").count(), records.len());
    assert!(!html.contains("✗ "), "no record fails its check");
    assert!(!html.contains("<script"), "works without JavaScript");

    // Text from the change is escaped, never markup.
    assert!(!html.contains("<html>ok</html>"));

    // The start page links to it; an unknown change is a 404; nothing else is served.
    // (HTML escaping writes `/` as `&#x2f;` in attributes; browsers read it back.)
    let index = reqwest::get(format!("{root}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .replace("&#x2f;", "/");
    assert!(
        index.contains("href=\"/pr/github/acme/fraud-model/7\""),
        "{index}"
    );
    for missing in [
        "/pr/github/acme/fraud-model/8",
        "/pr/gitlab/acme/fraud-model/7",
        "/pr/github/x",
    ] {
        let status = reqwest::get(format!("{root}{missing}"))
            .await
            .unwrap()
            .status();
        assert_eq!(status, 404, "{missing}");
    }
}

#[tokio::test]
async fn a_record_signed_by_another_key_is_marked_unverified() {
    let (w, _db, _) = worked_example_1("https://tollgate.example.com").await;
    let audit = &w.first().audit;
    let entry = Pages::new(audit.ledger.pool().clone())
        .get("github", REPO, 7)
        .await
        .unwrap()
        .unwrap();
    let records = audit.ledger.change_records(REPO, 7).await.unwrap();
    let other = ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]).verifying_key();
    let html = render_page(&entry, &records, &other).unwrap();
    assert_eq!(html.matches("✓ verified").count(), 0);
    assert_eq!(html.matches("✗ ").count(), records.len());
}

/// `chromedriver` on a free port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Option<Driver> {
    let binary = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .ok()?;
    let child = Command::new(binary)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    Some(Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    })
}

#[tokio::test]
async fn the_page_in_headless_chromium_shows_the_sign_offs_and_verified_signatures() {
    let Some(driver) = chromedriver() else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must install chromium and chromium-driver (see .ci/run)"
        );
        eprintln!(
            "skipped: chromedriver is not installed (apt-get install chromium chromium-driver)"
        );
        return;
    };
    let (w, _db, _) = worked_example_1("https://tollgate.example.com").await;
    let root = serve_pages(&w).await;

    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": "/usr/bin/chromium",
            // A phone-sized window: the page must read on one.
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=412,2400", "--hide-scrollbars"],
        }),
    );
    // fantoccini's TLS stack needs a crypto provider chosen (the page itself is plain HTTP).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut client = None;
    for _ in 0..100 {
        match fantoccini::ClientBuilder::rustls()
            .expect("TLS roots")
            .capabilities(caps.clone())
            .connect(&driver.url)
            .await
        {
            Ok(connected) => {
                client = Some(connected);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let client = client.expect("chromedriver accepts a session");
    client
        .goto(&format!("{root}/pr/github/acme/fraud-model/7"))
        .await
        .unwrap();
    let headline = client
        .find(fantoccini::Locator::Id("headline"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(headline, "High risk — passed");
    let rows = client
        .find_all(fantoccini::Locator::Css("#sign-offs tbody tr"))
        .await
        .unwrap();
    let mut table = Vec::new();
    for row in rows {
        table.push(row.text().await.unwrap());
    }
    assert_eq!(table.len(), SIGN_OFFS.len(), "{table:#?}");
    for (who, role) in SIGN_OFFS {
        assert!(
            table.iter().any(|r| r.starts_with(role) && r.contains(who)),
            "{role} by {who}: {table:#?}"
        );
    }
    let records = w
        .first()
        .audit
        .ledger
        .change_records(REPO, 7)
        .await
        .unwrap();
    let verified = client
        .find_all(fantoccini::Locator::Css(
            "#log span.ok[title='signature verified']",
        ))
        .await
        .unwrap();
    assert_eq!(verified.len(), records.len());
    let failed = client
        .find_all(fantoccini::Locator::Css("#log span.bad"))
        .await
        .unwrap();
    assert!(failed.is_empty());
    // Readable on a phone: nothing wider than the window.
    let overflow = client
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(overflow, json!(true), "the page fits a 412 px wide screen");
    let png = client.screenshot().await.unwrap();
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/decision-page.png");
    std::fs::write(&out, &png).unwrap();
    eprintln!("screenshot: {} ({} bytes)", out.display(), png.len());
    client.close().await.unwrap();
}
