//! Acceptance: 1,000 deliveries across 50 pull requests, sent concurrently to three
//! `tollgate serve` processes sharing one PostgreSQL database (`TOLLGATE_TEST_POSTGRES_URL`;
//! skipped without it): each delivery is processed once-effective, the events of one pull
//! request are applied in order, and each pull request gets one sticky comment. Duplicate
//! delivery ids, within one process and across processes, while the queue is busy and after it
//! drained, are processed once.
//!
//! Every pull request gets 20 deliveries, sent in order (each answered before the next is sent)
//! while the 50 sequences run concurrently, round-robin over the three processes. Most steps
//! push a new head commit first and announce it (`synchronize`), so the order in which the
//! processes apply a pull request's events is visible in the heads (and deliveries) its ledger
//! records were decided for: they must never go back. The last step is an approval on the final
//! head, so the final check run says whether the last event was applied.
//!
//! What breaks it: without per-change leases across processes, pull requests get several
//! sticky comments, several check runs per head and out-of-order records; without the
//! deduplicated enqueue, the jobs table holds more rows than deliveries and redeliveries are
//! evaluated again; with the in-memory queue of each process, redeliveries are evaluated again.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use serde_json::{Value, json};
use tollgate::ledger::record::DecisionRecord;
use tollgate::queue::JobQueue;
use tollgate::render::COMMENT_MARKER;

use common::fake_github::{CheckRunView, CommitSpec, FakeGitHub, FileChange, PrSpec};
use common::serve::{PgDatabase, Serve, deliver};

const REPO: &str = "acme/fraud-model";
const BASE: &str = "base0000000000000000000000000000000000000";
const CHECK: &str = "tollgate";
const BOT: &str = "tollgate-e2e[bot]";
/// Pull requests.
const PRS: u64 = 50;
/// Deliveries per pull request.
const STEPS: usize = 20;
/// Server processes.
const SERVERS: usize = 3;
/// The approver (`@acme/ml-leads`, write access).
const LEAD: &str = "lena";
/// Longest wait for the queue to drain.
const DRAIN_WITHIN: Duration = Duration::from_secs(120);

/// What step `k` of a pull request's sequence does.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    /// `pull_request.opened` (step 0).
    Opened,
    /// Push a new head, then `pull_request.synchronize` for it.
    Push,
    /// A `/tollgate recheck` comment (`issue_comment.created`).
    Recheck,
    /// The approver approves the current head (`pull_request_review.submitted`).
    Approve,
}

fn step(k: usize) -> Step {
    match k {
        0 => Step::Opened,
        5 | 10 | 15 => Step::Recheck,
        7 | 14 | 19 => Step::Approve,
        _ => Step::Push,
    }
}

/// Steps whose delivery is also sent, at the same time, to the next process.
const DUPLICATED_ACROSS: [usize; 2] = [3, 11];
/// Steps whose delivery is sent twice at the same time to the same process.
const DUPLICATED_WITHIN: [usize; 1] = [6];

/// High-risk pull requests (a model artifact) wait on three more sign-offs after the
/// approval; low-risk ones (a serving config, no threshold) pass with it.
fn high_risk(n: u64) -> bool {
    n.is_multiple_of(2)
}

fn governed_path(n: u64) -> String {
    if high_risk(n) {
        format!("models/m{n}/model.onnx")
    } else {
        format!("configs/serving/pr{n}.yaml")
    }
}

/// The governed file's contents at the `push`-th head.
fn contents(push: usize) -> String {
    format!("replicas: {}\n", push + 1)
}

/// The sha of the `push`-th head of pull request `n` (0: the one it was opened with).
fn head_sha(n: u64, push: usize) -> String {
    format!("{n:04}{push:04}{}", "c".repeat(32))
}

fn delivery_id(n: u64, k: usize) -> String {
    format!("scale-{n:02}-{k:02}")
}

/// The process step `k` of pull request `n` goes to first (round-robin over the global
/// delivery index).
fn server_of(n: u64, k: usize) -> usize {
    ((n as usize - 1) * STEPS + k) % SERVERS
}

/// One delivery as sent.
#[derive(Clone)]
struct Sent {
    n: u64,
    k: usize,
    event: &'static str,
    payload: Value,
    /// The pull request's head when it was sent (its index in push order).
    head: usize,
}

fn pr_payload(fake: &FakeGitHub, action: &str, n: u64, head: &str) -> Value {
    json!({
        "action": action,
        "number": n,
        "pull_request": {
            "number": n, "user": {"login": "alice", "id": 1},
            "head": {"ref": format!("feature-{n}"), "sha": head},
            "base": {"ref": "main", "sha": BASE},
            "labels": [], "title": format!("Change {n}"), "body": ""
        },
        "repository": {"id": 99, "full_name": REPO},
        "installation": {"id": fake.installation_id()},
    })
}

fn review_payload(fake: &FakeGitHub, n: u64, commit: &str) -> Value {
    json!({
        "action": "submitted",
        "review": {"user": {"login": LEAD, "id": 2}, "state": "approved", "commit_id": commit,
                   "submitted_at": fake.now().to_rfc3339()},
        "pull_request": {"number": n},
        "repository": {"id": 99, "full_name": REPO},
        "installation": {"id": fake.installation_id()},
    })
}

fn comment_payload(fake: &FakeGitHub, n: u64, id: u64, body: &str) -> Value {
    json!({
        "action": "created",
        "issue": {"number": n,
                  "pull_request": {"url": format!("{}/repos/{REPO}/pulls/{n}", fake.url())}},
        "comment": {"id": id, "user": {"login": "dana", "id": 3}, "body": body},
        "repository": {"id": 99, "full_name": REPO},
        "installation": {"id": fake.installation_id()},
    })
}

/// The fraud-model policy at the base, the approver, and the 50 pull requests at their
/// first head.
fn seed(fake: &FakeGitHub) {
    fake.set_app("tollgate-e2e", 4242);
    let policy = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/examples/fraud-model.governance.toml"
    ))
    .unwrap();
    fake.set_file(REPO, BASE, ".governance.toml", &policy);
    fake.set_team("acme", "ml-leads", &[LEAD]);
    for user in [LEAD, "alice", "dana"] {
        fake.set_permission(REPO, user, "write");
    }
    for n in 1..=PRS {
        fake.open_pr(
            REPO,
            PrSpec {
                number: n,
                title: format!("Change {n}"),
                base_sha: BASE.to_owned(),
                head_ref: format!("feature-{n}"),
                commits: vec![CommitSpec::new(
                    &head_sha(n, 0),
                    "alice",
                    vec![FileChange::added(&governed_path(n), &contents(0))],
                )],
                ..PrSpec::default()
            },
        );
    }
}

/// Plays pull request `n`'s sequence: changes the fake's state, then sends the delivery that
/// announces it and waits for its answer before the next step. Returns what was sent.
async fn play(fake: &FakeGitHub, client: &reqwest::Client, urls: &[String], n: u64) -> Vec<Sent> {
    let mut sent = Vec::with_capacity(STEPS);
    let mut head = 0;
    for k in 0..STEPS {
        let (event, payload) = match step(k) {
            Step::Opened => (
                "pull_request",
                pr_payload(fake, "opened", n, &head_sha(n, 0)),
            ),
            Step::Push => {
                head += 1;
                fake.push(
                    REPO,
                    n,
                    CommitSpec::new(
                        &head_sha(n, head),
                        "alice",
                        vec![FileChange::modified(&governed_path(n), &contents(head))],
                    ),
                );
                (
                    "pull_request",
                    pr_payload(fake, "synchronize", n, &head_sha(n, head)),
                )
            }
            Step::Recheck => {
                let body = "/tollgate recheck";
                let id = fake.add_comment(REPO, n, "dana", body);
                ("issue_comment", comment_payload(fake, n, id, body))
            }
            Step::Approve => {
                let payload = review_payload(fake, n, &head_sha(n, head));
                let at = fake.now();
                fake.add_review(REPO, n, LEAD, "APPROVED", &head_sha(n, head), at);
                ("pull_request_review", payload)
            }
        };
        let id = delivery_id(n, k);
        let first = server_of(n, k);
        let mut targets = vec![first];
        if DUPLICATED_ACROSS.contains(&k) {
            targets.push((first + 1) % SERVERS);
        }
        if DUPLICATED_WITHIN.contains(&k) {
            targets.push(first);
        }
        let statuses = futures_util::future::join_all(
            targets
                .iter()
                .map(|&s| deliver(client, &urls[s], event, &id, &payload)),
        )
        .await;
        assert!(
            statuses.iter().all(|&s| s == 202),
            "delivery {id} to processes {targets:?} answered {statuses:?}"
        );
        sent.push(Sent {
            n,
            k,
            event,
            payload,
            head,
        });
    }
    sent
}

/// The jobs table, all of it.
async fn jobs(queue: &JobQueue) -> Vec<tollgate::queue::JobRow> {
    queue.list(true, 100_000).await.unwrap()
}

/// `GET /repos/{REPO}/pulls/{n}` requests per pull request: one per evaluation.
fn evaluations_per_pr(fake: &FakeGitHub) -> BTreeMap<u64, usize> {
    let prefix = format!("/repos/{REPO}/pulls/");
    let mut counts = BTreeMap::new();
    for request in fake.requests() {
        if request.method != "GET" {
            continue;
        }
        if let Some(n) = request
            .path
            .strip_prefix(&prefix)
            .and_then(|rest| rest.parse::<u64>().ok())
        {
            *counts.entry(n).or_default() += 1;
        }
    }
    counts
}

/// Per process: evaluations that decided, and the deliveries they covered together.
fn decided(serve: &Serve) -> (usize, u64) {
    let log = serve.log.lock().unwrap();
    let mut evaluations = 0;
    let mut deliveries = 0;
    for line in log.iter() {
        let Ok(json) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if json["fields"]["message"] == "decided" {
            evaluations += 1;
            deliveries += json["span"]["deliveries"].as_u64().unwrap_or(0);
        }
    }
    (evaluations, deliveries)
}

/// Log lines at WARN or ERROR, for the failure message and the report.
fn warnings(serve: &Serve) -> Vec<String> {
    serve
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|line| line.contains("\"level\":\"WARN\"") || line.contains("\"level\":\"ERROR\""))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_deliveries_on_three_processes_are_each_applied_once_and_in_order() {
    let Some(db) = PgDatabase::create("durable_scale").await else {
        return;
    };
    let url = db.url.clone();
    let outcome = std::panic::AssertUnwindSafe(scenario(&url))
        .catch_unwind()
        .await;
    db.drop_now().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn scenario(url: &str) {
    let started = Instant::now();
    let keys = tempfile::tempdir().unwrap();
    let key = tollgate::ledger::keys::generate();
    let (private, _) = tollgate::ledger::keys::write_pair(keys.path(), &key).unwrap();

    let fake = FakeGitHub::start().await;
    seed(&fake);

    let env = [
        ("TOLLGATE_DATABASE_URL", url),
        ("TOLLGATE_SIGNING_KEY_FILE", private.to_str().unwrap()),
    ];
    let dirs: Vec<_> = (0..SERVERS).map(|_| tempfile::tempdir().unwrap()).collect();
    // All three start together on the empty database: the schema is set up once.
    let api_url = fake.url();
    let servers: Vec<Serve> = std::thread::scope(|scope| {
        let handles: Vec<_> = dirs
            .iter()
            .map(|dir| scope.spawn(|| Serve::start(dir.path(), &api_url, &env)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let urls: Vec<String> = servers.iter().map(Serve::webhook_url).collect();
    let client = reqwest::Client::new();

    // 50 sequences of 20 deliveries, concurrently.
    let sent: Vec<Sent> =
        futures_util::future::join_all((1..=PRS).map(|n| play(&fake, &client, &urls, n)))
            .await
            .into_iter()
            .flatten()
            .collect();
    assert_eq!(sent.len(), PRS as usize * STEPS);
    let sent_in = started.elapsed();

    // Every delivery was queued before its 202; wait until all are done.
    let ledger = tollgate::ledger::store::Ledger::open(url).await.unwrap();
    let queue = JobQueue::new(ledger.pool().clone());
    let deadline = Instant::now() + DRAIN_WITHIN;
    loop {
        let stats = queue.stats().await.unwrap();
        assert_eq!(stats.failed, 0, "jobs were given up on: {stats:?}");
        if queue.depth().await.unwrap() == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the queue did not drain within {DRAIN_WITHIN:?}: {stats:?}\n{}",
            servers
                .iter()
                .flat_map(warnings)
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained_in = started.elapsed();

    // (a) one job per distinct (delivery, pull request), all done: the duplicates sent while
    // the queue was busy added nothing.
    let rows = jobs(&queue).await;
    let expected: HashSet<(String, String)> = sent
        .iter()
        .map(|s| (delivery_id(s.n, s.k), format!("github:{REPO}#{}", s.n)))
        .collect();
    let found: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.delivery_id.clone(), r.change_key.clone()))
        .collect();
    assert_eq!(found.len(), PRS as usize * STEPS, "one row per delivery");
    assert_eq!(
        found.iter().cloned().collect::<HashSet<_>>(),
        expected,
        "the rows are exactly the deliveries sent"
    );
    let not_done: Vec<_> = rows.iter().filter(|r| r.state != "done").collect();
    assert!(not_done.is_empty(), "{not_done:#?}");
    let retried = rows.iter().filter(|r| r.attempts > 0).count();
    let evaluations_before = evaluations_per_pr(&fake);

    // Redeliveries of finished deliveries: 50 to another process than the first time, 50 to
    // the same one (25) or the third (25). All are acknowledged; none is processed again.
    let mut again = Vec::new();
    for s in sent.iter().filter(|s| s.k == 0 || s.k == 9) {
        let first = server_of(s.n, s.k);
        let target = match (s.k, s.n % 2) {
            (0, _) => (first + 1) % SERVERS,
            (_, 0) => first,
            _ => (first + 2) % SERVERS,
        };
        again.push((target, s));
    }
    assert_eq!(again.len(), 100);
    let ids: Vec<String> = again.iter().map(|(_, s)| delivery_id(s.n, s.k)).collect();
    let statuses = futures_util::future::join_all(
        again
            .iter()
            .zip(&ids)
            .map(|((target, s), id)| deliver(&client, &urls[*target], s.event, id, &s.payload)),
    )
    .await;
    assert!(statuses.iter().all(|&s| s == 202), "{statuses:?}");
    // Several poll intervals (250 ms) for anything that was queued to be claimed.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        jobs(&queue).await.len(),
        PRS as usize * STEPS,
        "redeliveries added jobs"
    );
    assert_eq!(queue.depth().await.unwrap(), 0);
    assert_eq!(
        evaluations_per_pr(&fake),
        evaluations_before,
        "redeliveries were evaluated again"
    );

    let per_process: Vec<(usize, u64)> = servers.iter().map(decided).collect();
    let warned: Vec<String> = servers.iter().flat_map(warnings).collect();
    drop(servers);

    let records = ledger.records(Some(REPO)).await.unwrap();
    let mut by_pr: BTreeMap<u64, Vec<DecisionRecord>> = BTreeMap::new();
    for stored in &records {
        let record = stored.signed().expect("a record parses").record;
        by_pr.entry(record.number).or_default().push(record);
    }
    let runs = fake.check_runs(REPO);
    let evaluations = evaluations_per_pr(&fake);
    // Every pull request is checked and every problem listed, so a failure shows its extent.
    let mut problems = Vec::new();
    for n in 1..=PRS {
        let mine: Vec<&Sent> = sent.iter().filter(|s| s.n == n).collect();
        let chain = by_pr.get(&n).map(Vec::as_slice).unwrap_or_default();
        let evaluated = evaluations.get(&n).copied().unwrap_or(0);
        problems.extend(
            check_pr(&fake, &runs, n, &mine, chain, evaluated)
                .into_iter()
                .map(|p| format!("PR #{n}: {p}")),
        );
    }
    let per_pr_records: Vec<usize> = by_pr.values().map(Vec::len).collect();
    let total: usize = evaluations.values().sum();
    eprintln!(
        "durable_scale: {} deliveries ({} duplicates while busy, 100 redeliveries after), \
         sent in {sent_in:.1?}, drained in {drained_in:.1?}, total {:.1?}\n\
         evaluations: {total} (per PR {}..={}); per process (evaluations, deliveries covered): \
         {per_process:?}; jobs retried: {retried}\n\
         ledger records: {} (per PR {}..={}); GitHub API requests: {}; warnings/errors \
         logged: {}",
        sent.len(),
        PRS as usize * (DUPLICATED_ACROSS.len() + DUPLICATED_WITHIN.len()),
        started.elapsed(),
        evaluations.values().min().unwrap_or(&0),
        evaluations.values().max().unwrap_or(&0),
        records.len(),
        per_pr_records.iter().min().unwrap_or(&0),
        per_pr_records.iter().max().unwrap_or(&0),
        fake.requests().len(),
        warned.len(),
    );
    for line in warned.iter().take(20) {
        eprintln!("  {line}");
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );

    // (e) the ledger verifies, as one gap-free chain.
    let report = ledger.verify(&key.verifying_key()).await.unwrap();
    assert!(report.broken.is_empty(), "{report:?}");
    assert_eq!(report.repos, 1);
    assert_eq!(
        records.iter().map(|r| r.repo_seq).collect::<Vec<_>>(),
        (1..=records.len() as i64).collect::<Vec<_>>()
    );
    ledger.pool().close().await;

    // The work was shared: at least two processes evaluated something.
    let working = per_process.iter().filter(|(e, _)| *e > 0).count();
    assert!(working >= 2, "evaluations per process: {per_process:?}");
    // Once-effective: every delivery was covered by exactly one evaluation that decided (by
    // at least one when an evaluation failed and its jobs were retried).
    let covered: u64 = per_process.iter().map(|(_, d)| d).sum();
    if retried == 0 {
        assert_eq!(
            covered,
            PRS * STEPS as u64,
            "deliveries covered by evaluations: {per_process:?}"
        );
    } else {
        assert!(
            covered >= PRS * STEPS as u64,
            "deliveries covered by evaluations: {per_process:?}"
        );
    }
    fake.assert_requests_match_openapi();
}

/// What is wrong with pull request `n`: its records (`chain`, in chain order), its sticky
/// comment, its check runs, and how often it was evaluated.
fn check_pr(
    fake: &FakeGitHub,
    runs: &[CheckRunView],
    n: u64,
    mine: &[&Sent],
    chain: &[DecisionRecord],
    evaluated: usize,
) -> Vec<String> {
    let mut problems = Vec::new();
    let final_head = mine.last().map_or(0, |s| s.head);
    let position: HashMap<String, usize> = (0..=final_head)
        .map(|push| (head_sha(n, push), push))
        .collect();

    // (c) Applied in order: the heads the records were decided for never go back, nor do the
    // deliveries they were decided for, and each record's head is at least the head its
    // delivery announced. Two processes evaluating the pull request at once break this.
    if chain.is_empty() {
        problems.push("no ledger record".to_owned());
    }
    let mut last = (0, 0);
    for record in chain {
        let Some(&head) = position.get(&record.head_sha) else {
            problems.push(format!("a record for unknown head {}", record.head_sha));
            continue;
        };
        let delivery = record.delivery.as_deref().unwrap_or_default();
        let Some(k) = mine
            .iter()
            .find(|s| delivery_id(n, s.k) == delivery)
            .map(|s| s.k)
        else {
            problems.push(format!(
                "a record for delivery {delivery:?}, not one of its own"
            ));
            continue;
        };
        if head < last.0 || k < last.1 {
            problems.push(format!(
                "out of order: a record for head {head} (delivery {k}) follows one for head {} \
                 (delivery {})",
                last.0, last.1
            ));
        }
        if head < mine[k].head {
            problems.push(format!(
                "delivery {k} announced head {} but was decided for head {head}",
                mine[k].head
            ));
        }
        last = (last.0.max(head), last.1.max(k));
    }
    if !chain.is_empty() && last.0 != final_head {
        problems.push(format!(
            "the last record is for head {}, not the final head {final_head}",
            last.0
        ));
    }

    // (b) One sticky comment, by the App.
    let sticky: Vec<String> = fake
        .comments(REPO, n)
        .into_iter()
        .filter(|c| c.body.contains(COMMENT_MARKER))
        .map(|c| c.author)
        .collect();
    if sticky != [BOT] {
        problems.push(format!(
            "sticky comments by {sticky:?}, expected one by {BOT}"
        ));
    }

    // (d) One check run per head it was published on; the final head's says what the last
    // event (the approval) makes of it.
    for push in 0..=final_head {
        let sha = head_sha(n, push);
        let count = runs
            .iter()
            .filter(|r| r.name == CHECK && r.head_sha == sha)
            .count();
        if count > 1 {
            problems.push(format!("{count} check runs on head {push}"));
        }
    }
    let (conclusion, title) = if high_risk(n) {
        ("action_required", "High risk — 1 of 4 sign-offs,")
    } else {
        ("success", "Low risk — passed")
    };
    match runs
        .iter()
        .find(|r| r.name == CHECK && r.head_sha == head_sha(n, final_head))
    {
        None => problems.push("no check run on the final head".to_owned()),
        Some(run) => {
            let title_ok = run.title.as_deref().unwrap_or_default().starts_with(title);
            if run.status != "completed"
                || run.conclusion.as_deref() != Some(conclusion)
                || !title_ok
            {
                problems.push(format!(
                    "final check run {} / {:?} / {:?}, expected completed / {conclusion} / {title}…",
                    run.status, run.conclusion, run.title
                ));
            }
        }
    }

    // Never more evaluations than deliveries, nor none.
    if !(1..=STEPS).contains(&evaluated) {
        problems.push(format!("{evaluated} evaluations for {STEPS} deliveries"));
    }
    problems
}
