//! The durable job queue, on SQLite and on PostgreSQL (`TOLLGATE_TEST_POSTGRES_URL`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use sqlx::Connection as _;
use tollgate::ledger::store::Ledger;
use tollgate::metrics::Metrics;
use tollgate::queue::{GroupCommit, JobQueue, NewJob, QueueStats};

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

fn new_job(delivery: &str, change: &str, payload: &str) -> NewJob {
    NewJob {
        delivery_id: delivery.to_owned(),
        change_key: change.to_owned(),
        payload: payload.to_owned(),
    }
}

fn payloads(claim: &tollgate::queue::Claim) -> Vec<&str> {
    claim.jobs.iter().map(|j| j.payload.as_str()).collect()
}

/// One batch: a delivery repeated within it is queued once (the first copy), and so is one
/// already queued by an earlier batch; the same delivery for another change is another job.
async fn batch_dedupe(queue: &JobQueue) {
    let fresh = queue
        .enqueue_batch(
            &[
                new_job("d1", "c1", "a"),
                new_job("d1", "c1", "a-again"),
                new_job("d2", "c1", "b"),
                new_job("d1", "c2", "c"),
            ],
            1_000,
        )
        .await
        .unwrap();
    assert_eq!(fresh, [true, false, true, true]);
    let fresh = queue
        .enqueue_batch(
            &[
                new_job("d2", "c1", "b-redelivered"),
                new_job("d3", "c1", "d"),
                new_job("d3", "c1", "d-again"),
            ],
            1_001,
        )
        .await
        .unwrap();
    assert_eq!(fresh, [false, true, false]);
    assert!(queue.enqueue_batch(&[], 1_002).await.unwrap().is_empty());
    assert_eq!(queue.depth().await.unwrap(), 4);
    let c1 = queue.claim("A", 2_000, LEASE_MS).await.unwrap().unwrap();
    assert_eq!(c1.change_key, "c1");
    assert_eq!(payloads(&c1), ["a", "b", "d"]);
    let c2 = queue.claim("A", 2_000, LEASE_MS).await.unwrap().unwrap();
    assert_eq!(payloads(&c2), ["c"]);
}

/// A renewed lease keeps the change with its holder past the first lease's end; once even the
/// renewed lease has run out another holder takes over, and the first one's renewal says the
/// lease is lost (without touching the new holder's).
async fn leases(queue: &JobQueue) {
    queue.enqueue("d1", "c1", "a", 0).await.unwrap();
    let a = queue.claim("A", 1_000, LEASE_MS).await.unwrap().unwrap();
    assert!(queue.renew(&a, 1_000 + 3 * LEASE_MS).await.unwrap());
    assert!(
        queue
            .claim("B", 1_000 + LEASE_MS + 1, LEASE_MS)
            .await
            .unwrap()
            .is_none(),
        "a renewed lease is not taken over"
    );
    let later = 1_000 + 3 * LEASE_MS + 1;
    let b = queue.claim("B", later, LEASE_MS).await.unwrap().unwrap();
    assert_eq!(payloads(&b), ["a"]);
    assert!(!queue.renew(&a, later + LEASE_MS).await.unwrap(), "lost");
    assert!(
        queue
            .claim("C", later + 1, LEASE_MS)
            .await
            .unwrap()
            .is_none(),
        "B still holds it"
    );
    assert!(queue.renew(&b, later + LEASE_MS).await.unwrap());
    queue.complete(&b).await.unwrap();
    assert!(
        !queue.renew(&b, later + 2 * LEASE_MS).await.unwrap(),
        "a finished claim has no lease left"
    );
    assert_eq!(queue.depth().await.unwrap(), 0);
}

/// Handed-back jobs are claimable at once by another holder (no waiting for the lease), with
/// no attempt counted and no error recorded.
async fn hand_back(queue: &JobQueue) {
    queue.enqueue("d1", "c1", "a", 0).await.unwrap();
    queue.enqueue("d2", "c1", "b", 0).await.unwrap();
    let a = queue.claim("A", 1_000, LEASE_MS).await.unwrap().unwrap();
    assert!(queue.claim("B", 1_000, LEASE_MS).await.unwrap().is_none());
    queue.hand_back(&a).await.unwrap();
    let b = queue.claim("B", 1_000, LEASE_MS).await.unwrap().unwrap();
    assert_eq!(
        b.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        a.jobs.iter().map(|j| j.id).collect::<Vec<_>>()
    );
    assert_eq!((b.attempts(), b.failing_since_ms()), (0, None));
    for row in queue.list(true, 10).await.unwrap() {
        assert_eq!(
            (row.state.as_str(), row.attempts, row.last_error),
            ("running", 0, None)
        );
    }
    // The old holder's lease went with the hand-back: its renewal fails.
    assert!(!queue.renew(&a, 2_000).await.unwrap());
}

/// Given-up jobs are parked: not claimable, not in the depth, counted as failed, with their
/// attempts and last error; `retry_now` (`tollgate jobs retry`) queues them again with the
/// give-up clock reset, one by id or all, and leaves done jobs alone.
async fn give_up_and_retry_now(queue: &JobQueue) {
    queue.enqueue("d1", "c1", "a", 0).await.unwrap();
    queue.enqueue("d2", "c2", "b", 0).await.unwrap();
    let first = queue.claim("A", 1_000, LEASE_MS).await.unwrap().unwrap();
    assert_eq!(first.change_key, "c1");
    queue.retry(&first, "GitHub 502", 2_000).await.unwrap();
    let again = queue.claim("A", 2_000, LEASE_MS).await.unwrap().unwrap();
    assert_eq!(again.change_key, "c1");
    assert_eq!(again.attempts(), 1);
    let failing_since = again.failing_since_ms().expect("failing since the retry");
    assert!(failing_since <= 2_000, "{failing_since}");
    queue
        .give_up(&again, "GitHub 502 again", 3_000)
        .await
        .unwrap();

    // c2 is still there; c1 is not handed out any more, however late.
    let c2 = queue.claim("B", 3_000, LEASE_MS).await.unwrap().unwrap();
    assert_eq!(c2.change_key, "c2");
    queue.give_up(&c2, "GitHub 500", 3_000).await.unwrap();
    assert!(
        queue
            .claim("B", 100 * LEASE_MS, LEASE_MS)
            .await
            .unwrap()
            .is_none(),
        "failed jobs are parked"
    );
    assert_eq!(queue.depth().await.unwrap(), 0);
    let stats = queue.stats().await.unwrap();
    assert_eq!(
        stats,
        QueueStats {
            queued: 0,
            running: 0,
            failed: 2,
            oldest_pending_ms: None
        }
    );
    let rows = queue.list(false, 10).await.unwrap();
    let c1 = rows.iter().find(|r| r.change_key == "c1").unwrap();
    assert_eq!(
        (c1.state.as_str(), c1.attempts, c1.last_error.as_deref()),
        ("failed", 2, Some("GitHub 502 again"))
    );

    // One by id: only that one comes back, available from the given time.
    assert_eq!(queue.retry_now(Some(c1.id), 5_000).await.unwrap(), 1);
    assert_eq!(queue.depth().await.unwrap(), 1);
    assert!(queue.claim("C", 4_999, LEASE_MS).await.unwrap().is_none());
    let back = queue.claim("C", 5_000, LEASE_MS).await.unwrap().unwrap();
    assert_eq!(back.change_key, "c1");
    assert_eq!(back.attempts(), 2, "attempts are kept");
    assert_eq!(
        back.failing_since_ms(),
        None,
        "the give-up clock starts again"
    );
    queue.complete(&back).await.unwrap();

    // All of them: c2 comes back; the done c1 is left alone.
    assert_eq!(queue.retry_now(None, 6_000).await.unwrap(), 1);
    let back = queue.claim("C", 6_000, LEASE_MS).await.unwrap().unwrap();
    assert_eq!(
        (back.change_key.as_str(), back.failing_since_ms()),
        ("c2", None)
    );
    queue.complete(&back).await.unwrap();
    assert_eq!(queue.retry_now(None, 7_000).await.unwrap(), 0);
    assert!(
        queue
            .list(true, 10)
            .await
            .unwrap()
            .iter()
            .all(|r| r.state == "done")
    );
}

/// A later event's successful evaluation of a change also settles the change's parked jobs
/// (it read the latest state, which is what they asked for); other changes' stay parked.
async fn complete_settles_failed_jobs_of_the_change(queue: &JobQueue) {
    queue.enqueue("d1", "c1", "a", 0).await.unwrap();
    queue.enqueue("d2", "c2", "b", 0).await.unwrap();
    for _ in 0..2 {
        let claim = queue.claim("A", 1_000, LEASE_MS).await.unwrap().unwrap();
        queue.give_up(&claim, "boom", 1_000).await.unwrap();
    }
    queue.enqueue("d3", "c1", "c", 2_000).await.unwrap();
    let claim = queue.claim("B", 2_000, LEASE_MS).await.unwrap().unwrap();
    assert_eq!(
        payloads(&claim),
        ["c"],
        "parked jobs are not handed out with it"
    );
    queue.complete(&claim).await.unwrap();
    let states: BTreeMap<String, String> = queue
        .list(true, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.delivery_id, r.state))
        .collect();
    assert_eq!(
        states,
        BTreeMap::from([
            ("d1".to_owned(), "done".to_owned()),
            ("d2".to_owned(), "failed".to_owned()),
            ("d3".to_owned(), "done".to_owned()),
        ])
    );
    assert_eq!(queue.stats().await.unwrap().failed, 1);
}

/// Counts by state, and the acceptance time of the oldest job neither done nor failed.
async fn stats(queue: &JobQueue) {
    assert_eq!(queue.stats().await.unwrap(), QueueStats::default());
    queue.enqueue("d0", "c0", "x", 100).await.unwrap();
    queue.enqueue("d1", "c1", "a", 1_000).await.unwrap();
    queue.enqueue("d2", "c2", "b", 2_000).await.unwrap();
    queue.enqueue("d3", "c3", "c", 3_000).await.unwrap();
    queue.enqueue("d4", "c3", "d", 4_000).await.unwrap();
    let c0 = queue.claim("A", 5_000, LEASE_MS).await.unwrap().unwrap();
    queue.give_up(&c0, "boom", 5_000).await.unwrap();
    let c1 = queue.claim("A", 5_000, LEASE_MS).await.unwrap().unwrap();
    assert_eq!(c1.change_key, "c1");
    assert_eq!(
        queue.stats().await.unwrap(),
        QueueStats {
            queued: 3,
            running: 1,
            failed: 1,
            oldest_pending_ms: Some(1_000)
        }
    );
    queue.complete(&c1).await.unwrap();
    // A job waiting out a backoff is still pending.
    let c2 = queue.claim("A", 5_000, LEASE_MS).await.unwrap().unwrap();
    queue.retry(&c2, "GitHub 502", 60_000).await.unwrap();
    assert_eq!(
        queue.stats().await.unwrap(),
        QueueStats {
            queued: 3,
            running: 0,
            failed: 1,
            oldest_pending_ms: Some(2_000)
        }
    );
}

/// 300 deliveries submitted at once through group commit (the last 50 redeliveries of the
/// first 50): every submission is answered, each delivery is queued exactly once and answered
/// "new" exactly once, and commits were shared. Returns the commit-size histogram's
/// (count, sum).
async fn group_commit(queue: JobQueue, writers: usize) -> (f64, f64) {
    const SUBMITS: usize = 300;
    const DISTINCT: usize = 250;
    let metrics = Metrics::new();
    let intake = GroupCommit::start(queue.clone(), writers, metrics.clone());
    let mut tasks = Vec::new();
    for i in 0..SUBMITS {
        let intake = intake.clone();
        let d = i % DISTINCT;
        tasks.push(tokio::spawn(async move {
            let job = new_job(&format!("d{d}"), &format!("github:acme/m#{}", d % 40), "p");
            (d, intake.submit(vec![job]).await)
        }));
    }
    let mut new_answers: HashMap<usize, usize> = HashMap::new();
    for task in tasks {
        let (d, answer) = task.await.unwrap();
        let answer = answer.expect("every submission is committed");
        assert_eq!(answer.len(), 1);
        *new_answers.entry(d).or_default() += usize::from(answer[0]);
    }
    assert_eq!(new_answers.len(), DISTINCT);
    assert!(
        new_answers.values().all(|&n| n == 1),
        "each delivery is new exactly once: {new_answers:?}"
    );
    let rows = queue.list(true, 1_000).await.unwrap();
    assert_eq!(rows.len(), DISTINCT);
    let keys: HashSet<(String, String)> = rows
        .into_iter()
        .map(|r| (r.delivery_id, r.change_key))
        .collect();
    assert_eq!(keys.len(), DISTINCT);
    assert_eq!(queue.depth().await.unwrap(), DISTINCT as i64);

    let rendered = metrics.render();
    let value = |series: &str| {
        rendered
            .lines()
            .find_map(|l| {
                l.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or_else(|| panic!("{series} missing:\n{rendered}"))
    };
    let count = value("tollgate_queue_commit_batch_deliveries_count");
    let sum = value("tollgate_queue_commit_batch_deliveries_sum");
    assert_eq!(
        sum, SUBMITS as f64,
        "every submission is in exactly one commit"
    );
    (count, sum)
}

/// The scenarios above, each on a fresh SQLite store.
macro_rules! on_sqlite {
    ($($scenario:ident => $test:ident;)*) => {$(
        #[tokio::test]
        async fn $test() {
            let (ledger, created, _dir) = open(false).await.unwrap();
            $scenario(&JobQueue::new(ledger.pool().clone())).await;
            close(ledger, created).await;
        }
    )*};
}

on_sqlite! {
    batch_dedupe => sqlite_enqueue_batch_dedupes_within_and_across_batches;
    leases => sqlite_renew_extends_a_lease_and_reports_a_lost_one;
    hand_back => sqlite_hand_back_makes_jobs_claimable_at_once_without_an_attempt;
    give_up_and_retry_now => sqlite_given_up_jobs_are_parked_until_retry_now;
    complete_settles_failed_jobs_of_the_change => sqlite_complete_settles_parked_jobs_of_the_change;
    stats => sqlite_stats_count_by_state_and_date_the_oldest_pending;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_group_commit_of_300_concurrent_deliveries_shares_commits() {
    let (ledger, created, _dir) = open(false).await.unwrap();
    let (commits, submits) = group_commit(JobQueue::new(ledger.pool().clone()), 1).await;
    println!("{submits} submissions in {commits} commits");
    assert!(
        commits < submits,
        "{submits} submissions took {commits} commits: none was shared"
    );
    close(ledger, created).await;
}

/// The same scenarios on PostgreSQL, in one database emptied between them (a database each
/// would cost a second or so apiece), and group commit with four writers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_queue_scenarios() {
    let Some((ledger, created, _dir)) = open(true).await else {
        return;
    };
    let queue = JobQueue::new(ledger.pool().clone());
    let empty = || async {
        for table in ["jobs", "change_leases"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
                .execute(ledger.pool())
                .await
                .unwrap();
        }
    };
    eprintln!("postgres: enqueue_batch dedupes within and across batches");
    batch_dedupe(&queue).await;
    empty().await;
    eprintln!("postgres: renew extends a lease and reports a lost one");
    leases(&queue).await;
    empty().await;
    eprintln!("postgres: hand_back makes jobs claimable at once without an attempt");
    hand_back(&queue).await;
    empty().await;
    eprintln!("postgres: given-up jobs are parked until retry_now");
    give_up_and_retry_now(&queue).await;
    empty().await;
    eprintln!("postgres: complete settles parked jobs of the change");
    complete_settles_failed_jobs_of_the_change(&queue).await;
    empty().await;
    eprintln!("postgres: stats count by state and date the oldest pending");
    stats(&queue).await;
    empty().await;
    eprintln!("postgres: group commit of 300 concurrent deliveries with four writers");
    let (commits, submits) = group_commit(queue, 4).await;
    println!("{submits} submissions in {commits} commits");
    close(ledger, created).await;
}

/// Two batches holding the same redelivered jobs in opposite orders (two writers, or two
/// processes) must not deadlock: PostgreSQL would abort one of them after a second.
#[tokio::test]
async fn postgres_batches_with_the_same_jobs_in_opposite_orders_do_not_deadlock() {
    let Some((ledger, created, _dir)) = open(true).await else {
        return;
    };
    let queue = JobQueue::new(ledger.pool().clone());
    let job = |d: &str| NewJob {
        delivery_id: d.to_owned(),
        change_key: "github:acme/m#1".to_owned(),
        payload: "{}".to_owned(),
    };
    // Batches big enough for the two statements to overlap.
    for round in 0..20 {
        let first: Vec<NewJob> = (0..300).map(|n| job(&format!("r{round}-{n:03}"))).collect();
        let second: Vec<NewJob> = first.iter().rev().cloned().collect();
        let started = std::time::Instant::now();
        let (one, two) = tokio::join!(
            queue.enqueue_batch(&first, round),
            queue.enqueue_batch(&second, round),
        );
        let (one, two) = (one.unwrap(), two.unwrap());
        // Each job was new to exactly one of the two batches.
        for n in 0..300 {
            assert!(one[n] ^ two[299 - n], "round {round}, job {n}");
        }
        assert!(
            started.elapsed() < std::time::Duration::from_millis(900),
            "round {round} waited for a deadlock to be detected"
        );
    }
    assert_eq!(queue.depth().await.unwrap(), 6_000);
    close(ledger, created).await;
}

/// A process claims only the changes it can evaluate: one without GitLab credentials leaves
/// GitLab's changes to another.
#[tokio::test]
async fn sqlite_a_claim_can_be_limited_to_the_forges_a_process_evaluates() {
    let (ledger, created, _dir) = open(false).await.unwrap();
    let queue = JobQueue::new(ledger.pool().clone());
    queue
        .enqueue("d1", "gitlab:acme/m#1", "a", 1)
        .await
        .unwrap();
    queue
        .enqueue("d2", "github:acme/m#2", "b", 2)
        .await
        .unwrap();
    let github = ["github:".to_owned()];
    let claim = queue
        .claim_matching("A", 10, LEASE_MS, &github)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.change_key, "github:acme/m#2");
    assert!(
        queue
            .claim_matching("A", 10, LEASE_MS, &github)
            .await
            .unwrap()
            .is_none()
    );
    let both = ["github:".to_owned(), "gitlab:".to_owned()];
    let claim = queue
        .claim_matching("B", 10, LEASE_MS, &both)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.change_key, "gitlab:acme/m#1");
    close(ledger, created).await;
}
