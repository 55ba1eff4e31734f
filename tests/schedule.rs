//! Deadlines in the store: scheduled once, acted on once across replicas, not lost or doubled
//! by a restart — on SQLite and on PostgreSQL (`TOLLGATE_TEST_POSTGRES_URL`).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tollgate::ledger::store::Ledger;
use tollgate::schedule::Schedule;

const LEASE: i64 = 60_000;

async fn rules(url: &str) {
    let schedule = Schedule::new(Ledger::open(url).await.unwrap().pool().clone());
    assert!(
        schedule
            .schedule("review:acme/m#7", "review_reminder", 1_000, "{}")
            .await
            .unwrap()
    );
    // A redelivered event schedules nothing new and moves nothing.
    assert!(
        !schedule
            .schedule("review:acme/m#7", "review_reminder", 9_000, "{}")
            .await
            .unwrap()
    );
    assert!(
        schedule
            .schedule("bypass:acme/m#8", "bypass_expiry", 2_000, "{}")
            .await
            .unwrap()
    );
    assert_eq!(
        schedule.pending("review_reminder").await.unwrap(),
        [("review:acme/m#7".to_owned(), 1_000)]
    );

    // Nothing before it is due.
    assert!(
        schedule
            .claim_due("A", 999, LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let due = schedule.claim_due("A", 1_500, LEASE, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].key, "review:acme/m#7");
    // Held by A: nobody else gets it, not even a restarted A under a new name, until the lease ends.
    assert!(
        schedule
            .claim_due("B", 1_600, LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A "dies" before acting; after the lease another replica takes it, once.
    let later = 1_500 + LEASE + 1;
    let due = schedule.claim_due("B", later, LEASE, 10).await.unwrap();
    let keys: Vec<&str> = due.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(keys, ["review:acme/m#7", "bypass:acme/m#8"]);
    // The dead holder cannot complete what it lost; the new one can.
    assert!(
        !schedule
            .complete("review:acme/m#7", "A", later)
            .await
            .unwrap()
    );
    assert!(
        schedule
            .complete("review:acme/m#7", "B", later)
            .await
            .unwrap()
    );
    assert!(schedule.cancel("bypass:acme/m#8", later).await.unwrap());
    assert!(
        schedule
            .pending("review_reminder")
            .await
            .unwrap()
            .is_empty()
    );
    // Done is done: it never falls due again, and scheduling it again keeps it done.
    assert!(
        !schedule
            .schedule("review:acme/m#7", "review_reminder", 1, "{}")
            .await
            .unwrap()
    );
    let much_later = later + 10 * LEASE;
    assert!(
        schedule
            .claim_due("C", much_later, LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A restart: a fresh handle on the same store still sees what is pending.
    assert!(
        schedule
            .schedule("review:acme/m#9", "review_reminder", 5, "{\"n\":9}")
            .await
            .unwrap()
    );
    let reopened = Schedule::new(Ledger::open(url).await.unwrap().pool().clone());
    let due = reopened
        .claim_due("D", much_later, LEASE, 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].payload, "{\"n\":9}");
}

/// Eight replicas polling at once: each of 40 deadlines is acted on exactly once.
async fn replicas(url: &str) {
    let schedule = Schedule::new(Ledger::open(url).await.unwrap().pool().clone());
    for n in 0..40 {
        schedule
            .schedule(&format!("d{n}"), "review_reminder", n, "{}")
            .await
            .unwrap();
    }
    let acted: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let mut tasks = Vec::new();
    for r in 0..8 {
        let (schedule, acted) = (schedule.clone(), Arc::clone(&acted));
        tasks.push(tokio::spawn(async move {
            let holder = format!("replica-{r}");
            for _ in 0..20 {
                for due in schedule.claim_due(&holder, 1_000, LEASE, 5).await.unwrap() {
                    *acted.lock().unwrap().entry(due.key.clone()).or_default() += 1;
                    assert!(schedule.complete(&due.key, &holder, 1_000).await.unwrap());
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let acted = acted.lock().unwrap();
    assert_eq!(acted.len(), 40);
    assert!(acted.values().all(|n| *n == 1), "{acted:?}");
}

/// A replica claims only the kinds it can act on (its forges): the others stay for a replica
/// that can, instead of being claimed and handed back on every poll.
async fn kinds(url: &str) {
    let schedule = Schedule::new(Ledger::open(url).await.unwrap().pool().clone());
    for (key, kind) in [("a", "github:review_due"), ("b", "gitlab:review_due")] {
        schedule.schedule(key, kind, 1_000, "{}").await.unwrap();
    }
    let github = schedule
        .claim_due_of("G", 2_000, LEASE, 10, &["github:".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        github.iter().map(|d| d.key.as_str()).collect::<Vec<_>>(),
        ["a"]
    );
    let gitlab = schedule
        .claim_due_of("L", 2_000, LEASE, 10, &["gitlab:".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        gitlab.iter().map(|d| d.key.as_str()).collect::<Vec<_>>(),
        ["b"]
    );
    assert!(
        schedule
            .claim_due("X", 2_000, LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn sqlite_deadlines_survive_restarts_and_fall_due_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    rules(&url).await;
    let url = format!("sqlite://{}", dir.path().join("r.db").display());
    replicas(&url).await;
    let url = format!("sqlite://{}", dir.path().join("k.db").display());
    kinds(&url).await;
}

#[tokio::test]
async fn postgres_deadlines_survive_restarts_and_fall_due_once() {
    let Some(db) =
        common::serve::PgDatabase::create("the PostgreSQL half of the schedule suite").await
    else {
        return;
    };
    rules(&db.url).await;
    let Some(db2) =
        common::serve::PgDatabase::create("the PostgreSQL half of the schedule suite").await
    else {
        return;
    };
    replicas(&db2.url).await;
    let Some(db3) =
        common::serve::PgDatabase::create("the PostgreSQL half of the schedule suite").await
    else {
        return;
    };
    kinds(&db3.url).await;
    db.drop_now().await;
    db2.drop_now().await;
    db3.drop_now().await;
}
