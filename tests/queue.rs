//! The durable job queue, on SQLite and on PostgreSQL (`TOLLGATE_TEST_POSTGRES_URL`).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use sqlx::Connection as _;
use tollgate::ledger::store::Ledger;
use tollgate::queue::JobQueue;

const LEASE_MS: i64 = 30_000;

/// A fresh store; for PostgreSQL also the (admin URL, database) to drop afterwards.
async fn open(
    postgres: bool,
) -> Option<(Ledger, Option<(String, String)>, Option<tempfile::TempDir>)> {
    if !postgres {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("queue.db").display());
        return Some((Ledger::open(&url).await.unwrap(), None, Some(dir)));
    }
    let Ok(admin) = std::env::var("TOLLGATE_TEST_POSTGRES_URL") else {
        eprintln!(
            "skipped: TOLLGATE_TEST_POSTGRES_URL is not set (PostgreSQL half of the queue suite)"
        );
        return None;
    };
    let name = format!("tollgate_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    let ledger = Ledger::open(&format!("{base}/{name}")).await.unwrap();
    Some((ledger, Some((admin, name)), None))
}

async fn close(ledger: Ledger, created: Option<(String, String)>) {
    ledger.pool().close().await;
    if let Some((admin, name)) = created {
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

async fn rules(queue: &JobQueue) {
    // A redelivery is acknowledged and not queued twice.
    assert!(
        queue
            .enqueue("d1", "github:acme/m#1", "a", 1_000)
            .await
            .unwrap()
    );
    assert!(
        !queue
            .enqueue("d1", "github:acme/m#1", "a", 1_001)
            .await
            .unwrap()
    );
    assert!(
        queue
            .enqueue("d2", "github:acme/m#1", "b", 1_002)
            .await
            .unwrap()
    );
    assert!(
        queue
            .enqueue("d3", "github:acme/m#2", "c", 1_003)
            .await
            .unwrap()
    );
    assert_eq!(queue.depth().await.unwrap(), 3);

    // The oldest change first, with all its ready jobs (coalesced), to one holder.
    let first = queue.claim("A", 2_000, LEASE_MS).await.unwrap().unwrap();
    assert_eq!(first.change_key, "github:acme/m#1");
    assert_eq!(
        first
            .jobs
            .iter()
            .map(|j| j.payload.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    // While A holds #1, a new event for #1 waits; B gets #2.
    assert!(
        queue
            .enqueue("d4", "github:acme/m#1", "d", 2_001)
            .await
            .unwrap()
    );
    let second = queue.claim("B", 2_002, LEASE_MS).await.unwrap().unwrap();
    assert_eq!(second.change_key, "github:acme/m#2");
    assert!(queue.claim("C", 2_003, LEASE_MS).await.unwrap().is_none());

    // Done jobs leave; the waiting event for #1 is next.
    queue.complete(&first).await.unwrap();
    let third = queue.claim("C", 2_004, LEASE_MS).await.unwrap().unwrap();
    assert_eq!(
        third
            .jobs
            .iter()
            .map(|j| j.payload.as_str())
            .collect::<Vec<_>>(),
        ["d"]
    );

    // A retried job comes back later, with its attempt counted.
    queue.retry(&third, "GitHub 502", 10_000).await.unwrap();
    assert!(queue.claim("C", 9_999, LEASE_MS).await.unwrap().is_none());
    let again = queue.claim("C", 10_000, LEASE_MS).await.unwrap().unwrap();
    assert_eq!(again.jobs[0].attempts, 1);

    // A holder that dies keeps its change until its lease runs out; then the jobs are reclaimed.
    assert!(queue.claim("D", 10_001, LEASE_MS).await.unwrap().is_none());
    // Both B (holding #2 since 2,002) and C (holding #1 since 10,000) "died": once their
    // leases end, their jobs are handed out again, oldest first.
    let later = 10_000 + LEASE_MS + 1;
    let first = queue.claim("D", later, LEASE_MS).await.unwrap().unwrap();
    let second = queue.claim("E", later, LEASE_MS).await.unwrap().unwrap();
    assert_eq!(
        (first.change_key.as_str(), first.jobs[0].payload.as_str()),
        ("github:acme/m#2", "c")
    );
    assert_eq!(
        (second.change_key.as_str(), second.jobs[0].payload.as_str()),
        ("github:acme/m#1", "d")
    );
}

/// 8 workers drain 40 changes × 5 jobs: every job once, never two holders of one change at
/// a time, and each change's jobs in order.
async fn concurrent(queue: JobQueue) {
    for n in 0..5 {
        for change in 0..40 {
            let delivery = format!("d-{change}-{n}");
            queue
                .enqueue(&delivery, &format!("c{change}"), &n.to_string(), n)
                .await
                .unwrap();
        }
    }
    let held: Arc<Mutex<HashSet<String>>> = Arc::default();
    let seen: Arc<Mutex<BTreeMap<String, Vec<String>>>> = Arc::default();
    let mut workers = Vec::new();
    for w in 0..8 {
        let (queue, held, seen) = (queue.clone(), Arc::clone(&held), Arc::clone(&seen));
        workers.push(tokio::spawn(async move {
            let holder = format!("w{w}");
            loop {
                let Some(claim) = queue.claim(&holder, 100, LEASE_MS).await.unwrap() else {
                    if queue.depth().await.unwrap() == 0 {
                        return;
                    }
                    tokio::task::yield_now().await;
                    continue;
                };
                assert!(
                    held.lock().unwrap().insert(claim.change_key.clone()),
                    "two holders of one change"
                );
                seen.lock()
                    .unwrap()
                    .entry(claim.change_key.clone())
                    .or_default()
                    .extend(claim.jobs.iter().map(|j| j.payload.clone()));
                tokio::task::yield_now().await;
                held.lock().unwrap().remove(&claim.change_key);
                queue.complete(&claim).await.unwrap();
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 40);
    for (change, payloads) in seen.iter() {
        assert_eq!(payloads, &["0", "1", "2", "3", "4"], "{change}");
    }
}

#[tokio::test]
async fn sqlite_queue_rules() {
    let (ledger, created, _dir) = open(false).await.unwrap();
    rules(&JobQueue::new(ledger.pool().clone())).await;
    close(ledger, created).await;
}

#[tokio::test]
async fn postgres_queue_rules() {
    let Some((ledger, created, _dir)) = open(true).await else {
        return;
    };
    rules(&JobQueue::new(ledger.pool().clone())).await;
    close(ledger, created).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_workers_process_each_job_once_in_order() {
    let (ledger, created, _dir) = open(false).await.unwrap();
    concurrent(JobQueue::new(ledger.pool().clone())).await;
    close(ledger, created).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_workers_process_each_job_once_in_order() {
    let Some((ledger, created, _dir)) = open(true).await else {
        return;
    };
    concurrent(JobQueue::new(ledger.pool().clone())).await;
    close(ledger, created).await;
}
