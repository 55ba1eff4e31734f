//! `tollgate jobs list|retry|purge` on a SQLite store.

use std::process::Command;

use tollgate::ledger::store::Ledger;
use tollgate::queue::JobQueue;

fn jobs(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("jobs")
        .args(args)
        .env_clear()
        .env(
            "TOLLGATE_DATABASE_URL",
            format!("sqlite://{}", dir.join("store.db").display()),
        )
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn operators_list_retry_and_purge_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let ledger = Ledger::open(&url).await.unwrap();
    let queue = JobQueue::new(ledger.pool().clone());
    let now = chrono::Utc::now().timestamp_millis();
    queue
        .enqueue("d1", "github:acme/m#1", "{}", now - 1_000)
        .await
        .unwrap();
    queue
        .enqueue("d2", "github:acme/m#2", "{}", now - 1_000)
        .await
        .unwrap();
    // #1 failed and waits an hour before its next try; #2 is done, from two days ago.
    let claim = queue.claim("w", now, 60_000).await.unwrap().unwrap();
    queue
        .retry(&claim, "GitHub 502", now + 3_600_000)
        .await
        .unwrap();
    let done = queue.claim("w", now, 60_000).await.unwrap().unwrap();
    queue.complete(&done).await.unwrap();
    sqlx::query("UPDATE jobs SET created_ms = created_ms - 172800000 WHERE delivery_id = 'd2'")
        .execute(ledger.pool())
        .await
        .unwrap();
    ledger.pool().close().await;

    let (ok, listed) = jobs(dir.path(), &["list"]);
    assert!(ok, "{listed}");
    assert!(
        listed.contains("queued\t1\tgithub:acme/m#1\td1"),
        "{listed}"
    );
    assert!(listed.contains("GitHub 502"), "{listed}");
    assert!(
        !listed.contains("github:acme/m#2"),
        "done jobs only with --all: {listed}"
    );
    let (_, all) = jobs(dir.path(), &["list", "--all"]);
    assert!(all.contains("done\t0\tgithub:acme/m#2"), "{all}");

    let (ok, retried) = jobs(dir.path(), &["retry"]);
    assert!(
        ok && retried.contains("1 job(s) made available now"),
        "{retried}"
    );
    let (ok, purged) = jobs(dir.path(), &["purge", "--older-than-hours", "24"]);
    assert!(
        ok && purged.contains("1 finished job(s) removed"),
        "{purged}"
    );

    let ledger = Ledger::open(&url).await.unwrap();
    let queue = JobQueue::new(ledger.pool().clone());
    let claim = queue
        .claim("w2", chrono::Utc::now().timestamp_millis(), 60_000)
        .await
        .unwrap();
    assert_eq!(
        claim.map(|c| c.change_key),
        Some("github:acme/m#1".to_owned()),
        "retried job runs now"
    );
}
