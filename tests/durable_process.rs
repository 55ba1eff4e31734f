//! Crash safety and graceful drain of the durable job queue, through the real binary:
//! `tollgate serve` runs as a child process against a slow fake GitHub (every answer delayed,
//! so evaluations are in flight for a while), is killed with SIGKILL or stopped with SIGTERM
//! in the middle of its work, and is started again on the same store. Whatever it accepted
//! (answered 202) must be evaluated after all, exactly once as far as GitHub can see: one
//! sticky comment per pull request and one check run per head, with the right conclusion.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use serde_json::{Value, json};
use tollgate::ledger::store::Ledger;
use tollgate::queue::{JobQueue, JobRow};
use tollgate::render::COMMENT_MARKER;

use common::fake_github::{CheckRunView, CommitSpec, FakeGitHub, FileChange, PrSpec};
use common::serve::{Serve, deliver};

use common::fraud_repo::{BASE, REPO};

const APP_SLUG: &str = "tollgate-durable";
/// How the fake shows the App's comments' author.
const BOT: &str = "tollgate-durable[bot]";
const APP_ID: u64 = 4242;
const CHECK: &str = "tollgate";

const CARD: &str = "# Fraud\n## Intended use\nScoring card payments.\n## Metrics\nAUC 0.93\n## Limitations\nNot for loans.\n";
const BODY: &str =
    "New fraud model.\n\n## Rollback plan\nRevert this PR; v1 stays in the registry.\n";
/// The four sign-offs of the fraud policy's high tier, one reviewer per role.
const SIGNERS: [&str; 4] = ["dana", "rita", "omar", "lena"];

// ---------------------------------------------------------------------------------------------
// The repository and its pull requests
// ---------------------------------------------------------------------------------------------

/// The pull request's first head (the one `opened` names).
fn first_head(n: u64) -> String {
    format!("a{n:0>39}")
}

/// Its head after one push (what `synchronize` names, and what it is judged on).
fn final_head(n: u64) -> String {
    format!("b{n:0>39}")
}

/// Odd pull requests get all four sign-offs on their final head; even ones get none.
fn signed_off(n: u64) -> bool {
    n % 2 == 1
}

/// The conclusion a pull request's check must end with.
fn expected_conclusion(n: u64) -> &'static str {
    if signed_off(n) {
        "success"
    } else {
        "action_required"
    }
}

/// A fake GitHub App with the fraud-model repository of worked example 1 (its policy, teams
/// and permissions) and pull requests `1..=prs`, each a high-risk model change with all its
/// evidence, pushed to once; odd ones also approved by every role on their final head.
async fn fake_with_prs(prs: u64) -> FakeGitHub {
    let fake = FakeGitHub::start().await;
    fake.set_app(APP_SLUG, APP_ID);
    common::fraud_repo::seed_example(&fake, &["lena", "alice"]);
    for n in 1..=prs {
        fake.open_pr(
            REPO,
            PrSpec {
                number: n,
                title: format!("Fraud model v{n}"),
                body: BODY.to_owned(),
                base_sha: BASE.to_owned(),
                head_ref: format!("feature-{n}"),
                commits: vec![CommitSpec::new(
                    &first_head(n),
                    "alice",
                    vec![
                        FileChange::added(&format!("models/fraud/v{n}/model.onnx"), "weights"),
                        FileChange::modified("models/fraud/MODEL_CARD.md", CARD),
                        FileChange::added(
                            &format!("reports/validation/fraud-v{n}.html"),
                            "<html>ok</html>",
                        ),
                        FileChange::added(&format!("reports/risk/fraud-v{n}.md"), "# Risk\n"),
                        FileChange::modified("eval/metrics.json", r#"{"auc": 0.93}"#),
                    ],
                )],
                ..PrSpec::default()
            },
        );
        fake.push(
            REPO,
            n,
            CommitSpec::new(
                &final_head(n),
                "alice",
                vec![FileChange::added(&format!("docs/fraud-v{n}.md"), "notes\n")],
            ),
        );
        fake.advance(TimeDelta::minutes(1));
        let reviewers: &[&str] = if signed_off(n) { &SIGNERS } else { &["omar"] };
        let state = if signed_off(n) {
            "APPROVED"
        } else {
            "COMMENTED"
        };
        for reviewer in reviewers {
            fake.add_review(REPO, n, reviewer, state, &final_head(n), fake.now());
        }
    }
    fake
}

/// The deliveries GitHub sends for pull request `n` (event, delivery id, payload): opened,
/// synchronize after the push, and one `pull_request_review` per review.
fn deliveries_for(fake: &FakeGitHub, n: u64, tag: &str) -> Vec<(&'static str, String, Value)> {
    let installation = json!({ "id": fake.installation_id() });
    let pull = |action: &str, head: String| {
        json!({
            "action": action, "number": n,
            "pull_request": {"number": n, "user": {"login": "alice", "id": 1},
                "head": {"ref": format!("feature-{n}"), "sha": head},
                "base": {"ref": "main", "sha": BASE},
                "labels": [], "title": format!("Fraud model v{n}"), "body": BODY},
            "repository": {"id": 99, "full_name": REPO},
            "installation": installation,
        })
    };
    let mut deliveries = vec![
        (
            "pull_request",
            format!("{tag}-{n}-opened"),
            pull("opened", first_head(n)),
        ),
        (
            "pull_request",
            format!("{tag}-{n}-synchronize"),
            pull("synchronize", final_head(n)),
        ),
    ];
    let reviewers: &[&str] = if signed_off(n) { &SIGNERS } else { &["omar"] };
    let state = if signed_off(n) {
        "approved"
    } else {
        "commented"
    };
    for reviewer in reviewers {
        deliveries.push((
            "pull_request_review",
            format!("{tag}-{n}-review-{reviewer}"),
            json!({
                "action": "submitted",
                "review": {"user": {"login": reviewer, "id": 2}, "state": state,
                           "commit_id": final_head(n), "submitted_at": "2026-11-26T10:00:00Z"},
                "pull_request": {"number": n},
                "repository": {"id": 99, "full_name": REPO},
                "installation": installation,
            }),
        ));
    }
    deliveries
}

/// Sends every delivery of pull requests `numbers` to `url`, asserting each is accepted (202).
/// Returns how many were sent.
async fn send_all(
    url: &str,
    fake: &FakeGitHub,
    numbers: impl IntoIterator<Item = u64>,
    tag: &str,
) -> usize {
    let client = reqwest::Client::new();
    let mut sent = 0;
    for n in numbers {
        for (event, id, payload) in deliveries_for(fake, n, tag) {
            let status = deliver(&client, url, event, &id, &payload).await;
            assert_eq!(status, 202, "delivery {id} was not accepted");
            sent += 1;
        }
    }
    sent
}

// ---------------------------------------------------------------------------------------------
// What GitHub shows
// ---------------------------------------------------------------------------------------------

/// tollgate's check runs on `sha`.
fn runs_on(fake: &FakeGitHub, sha: &str) -> Vec<CheckRunView> {
    fake.check_runs(REPO)
        .into_iter()
        .filter(|r| r.head_sha == sha && r.name == CHECK && r.app_id == APP_ID)
        .collect()
}

/// tollgate's sticky comments on pull request `n`.
fn sticky_comments(fake: &FakeGitHub, n: u64) -> usize {
    fake.comments(REPO, n)
        .iter()
        .filter(|c| c.author == BOT && c.body.contains(COMMENT_MARKER))
        .count()
}

/// Whether pull request `n` shows its final result: a completed check on its final head with
/// the expected conclusion, and the sticky comment.
fn finished(fake: &FakeGitHub, n: u64) -> bool {
    let concluded = runs_on(fake, &final_head(n))
        .iter()
        .any(|r| r.conclusion.as_deref() == Some(expected_conclusion(n)));
    concluded && sticky_comments(fake, n) > 0
}

fn finished_count(fake: &FakeGitHub, prs: u64) -> usize {
    (1..=prs).filter(|&n| finished(fake, n)).count()
}

/// What "exactly once" means on GitHub: for each pull request exactly one comment by
/// tollgate (the sticky one) and exactly one check run on its final head, whose conclusion is
/// the expected one and never was `success` for a pull request without its sign-offs; and no
/// check run on a head it was never judged on.
fn assert_published_exactly_once(fake: &FakeGitHub, prs: u64) {
    for n in 1..=prs {
        let ours: Vec<_> = fake
            .comments(REPO, n)
            .into_iter()
            .filter(|c| c.author == BOT)
            .collect();
        assert_eq!(
            ours.len(),
            1,
            "PR #{n}: exactly one comment by tollgate: {ours:#?}"
        );
        assert!(ours[0].body.contains(COMMENT_MARKER), "PR #{n}: {ours:#?}");
        let runs = runs_on(fake, &final_head(n));
        assert_eq!(runs.len(), 1, "PR #{n}: exactly one check run: {runs:#?}");
        let run = &runs[0];
        assert_eq!(
            run.conclusion.as_deref(),
            Some(expected_conclusion(n)),
            "PR #{n}: {run:#?}"
        );
        if !signed_off(n) {
            assert!(
                run.history
                    .iter()
                    .all(|(_, c)| c.as_deref() != Some("success")),
                "PR #{n} was never green: {:?}",
                run.history
            );
        }
        assert!(
            runs_on(fake, &first_head(n)).is_empty(),
            "PR #{n}: nothing is published for a head it no longer has"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------------

/// The served process's store, opened beside it (SQLite in WAL mode, or PostgreSQL: reading
/// never blocks it).
struct Store(Ledger);

/// The default SQLite store of a process working in `dir`.
fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("tollgate.db").display())
}

impl Store {
    async fn open(url: &str) -> Store {
        Store(Ledger::open(url).await.expect("open the served store"))
    }

    async fn jobs(&self) -> Vec<JobRow> {
        JobQueue::new(self.0.pool().clone())
            .list(true, 10_000)
            .await
            .unwrap()
    }

    /// Job counts by state.
    async fn states(&self) -> BTreeMap<String, usize> {
        let mut states = BTreeMap::new();
        for job in self.jobs().await {
            *states.entry(job.state).or_default() += 1;
        }
        states
    }

    /// The ledger is intact: every chain verifies against the server's key, kept in `dir`.
    async fn assert_ledger_intact(&self, dir: &Path) {
        let (key, created) = tollgate::ledger::keys::load_or_create(None, dir).unwrap();
        assert!(!created, "the server's signing key is in {dir:?}");
        let report = self.0.verify(&key.verifying_key()).await.unwrap();
        assert!(report.broken.is_empty(), "{report:?}");
        assert!(report.records > 0, "{report:?}");
    }

    async fn close(self) {
        self.0.pool().close().await;
    }
}

fn count(states: &BTreeMap<String, usize>, state: &str) -> usize {
    states.get(state).copied().unwrap_or(0)
}

/// Nothing went wrong that the process noticed: no error logged, no lease lost to another
/// holder while evaluating (two evaluations of one change at once).
fn assert_no_errors(serve: &Serve) {
    let log = serve.log.lock().unwrap();
    let bad: Vec<&String> = log
        .iter()
        .filter(|line| {
            let json: Value = serde_json::from_str(line).unwrap_or(Value::Null);
            json["level"] == "ERROR"
                || json["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("lost the lease"))
        })
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
}

/// Polls `done` every 50 ms until it holds, panicking with `what` (and the log) after `limit`.
async fn wait_for<F, Fut>(limit: Duration, serve: Option<&Serve>, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !done().await {
        if Instant::now() > deadline {
            let log = serve.map_or_else(String::new, |s| s.log.lock().unwrap().join("\n"));
            panic!("not within {limit:?}: {what}\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every pull request shows its final result and every job in the store is done.
async fn wait_until_all_done(
    fake: &FakeGitHub,
    store: &Store,
    serve: &Serve,
    prs: u64,
    jobs: usize,
    limit: Duration,
) {
    wait_for(
        limit,
        Some(serve),
        "every accepted delivery processed",
        || async {
            let states = store.states().await;
            finished_count(fake, prs) == prs as usize && count(&states, "done") == jobs
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// SIGKILL in the middle of the work: nothing accepted is lost. The dead process's claims are
/// taken over once their lease runs out, the evaluations it had not finished (or had half
/// published) are done again, and GitHub ends up with one comment and one check run per pull
/// request, as if nothing had happened.
#[tokio::test]
async fn a_server_killed_mid_processing_loses_nothing_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    killed_mid_processing(dir.path(), &sqlite_url(dir.path()), &[]).await;
}

/// The same on PostgreSQL, where claims, leases and group commit run on other SQL.
#[tokio::test]
async fn a_server_killed_mid_processing_loses_nothing_after_restart_on_postgres() {
    let Some(db) = common::serve::PgDatabase::create("killed mid-processing").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = tollgate::ledger::keys::generate();
    let (private, _) = tollgate::ledger::keys::write_pair(dir.path(), &key).unwrap();
    let env = [
        ("TOLLGATE_DATABASE_URL", db.url.as_str()),
        ("TOLLGATE_SIGNING_KEY_FILE", private.to_str().unwrap()),
    ];
    killed_mid_processing(dir.path(), &db.url, &env).await;
    db.drop_now().await;
}

/// Runs `tollgate serve` in `dir` on the store at `url`, kills it with SIGKILL while it
/// evaluates, starts it again on the same store and checks that everything gets done once.
async fn killed_mid_processing(dir: &Path, url: &str, store_env: &[(&str, &str)]) {
    const PRS: u64 = 8;
    let started = Instant::now();
    let fake = fake_with_prs(PRS).await;
    fake.set_latency(Duration::from_millis(60));
    // Both processes lease for 2 s: the dead one's claims are free again soon after the kill.
    let mut env = vec![("TOLLGATE_JOB_LEASE_SECS", "2"), ("TOLLGATE_WORKERS", "4")];
    env.extend_from_slice(store_env);
    let mut serve = Serve::start(dir, &fake.url(), &env);
    let store = Store::open(url).await;

    let jobs = send_all(&serve.webhook_url(), &fake, 1..=PRS, "kill").await;
    // Killed once the first pull request shows its result: the others are in flight or queued.
    wait_for(
        Duration::from_secs(30),
        Some(&serve),
        "a first result",
        || async { finished_count(&fake, PRS) >= 1 },
    )
    .await;
    serve.kill9();
    assert_no_errors(&serve);

    // The test proves something only if the process died with work unfinished, some of it
    // claimed (running under a lease nobody will renew).
    let at_kill = finished_count(&fake, PRS);
    let states = store.states().await;
    eprintln!(
        "killed after {:?}: {at_kill} of {PRS} pull requests finished, jobs {states:?}",
        started.elapsed()
    );
    assert!(
        at_kill < PRS as usize,
        "everything was done before the kill"
    );
    assert_eq!(
        states.values().sum::<usize>(),
        jobs,
        "every accepted delivery is queued"
    );
    assert!(
        count(&states, "running") > 0,
        "some jobs were claimed by the killed process: {states:?}"
    );
    assert!(count(&states, "done") < jobs, "{states:?}");

    let restarted = Instant::now();
    let serve = Serve::start(dir, &fake.url(), &env);
    wait_until_all_done(&fake, &store, &serve, PRS, jobs, Duration::from_secs(40)).await;
    eprintln!("finished {:?} after the restart", restarted.elapsed());

    assert_published_exactly_once(&fake, PRS);
    for job in store.jobs().await {
        assert_eq!(job.state, "done", "{job:?}");
        // Being taken over from a dead holder is not a failure of the change.
        assert_eq!(job.attempts, 0, "{job:?}");
    }
    store.assert_ledger_intact(dir).await;
    assert_no_errors(&serve);
    drop(serve);
    store.close().await;
    fake.assert_requests_match_openapi();
    eprintln!("took {:?}", started.elapsed());
}

/// Whether `GET /healthz` at `addr` gets any answer (a fresh connection each time).
async fn answers(addr: &str) -> bool {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .is_ok()
}

/// SIGTERM in the middle of the work: intake closes at once (a delivery sent afterwards is
/// refused, so GitHub keeps it and redelivers), the evaluations in flight are finished rather
/// than abandoned, no new ones are started, and the process exits 0 well within the drain
/// timeout. What was accepted but not started waits in the store; after a restart (with the
/// default 30 s lease, which a claim abandoned in flight would have to wait out) it is done,
/// and everything accepted is published exactly once.
#[tokio::test]
async fn sigterm_drains_in_flight_evaluations_then_exits() {
    const PRS: u64 = 8;
    /// Opened on GitHub, but its delivery only comes after SIGTERM.
    const LATE: u64 = PRS + 1;
    const DRAIN: Duration = Duration::from_secs(20);
    let started = Instant::now();
    let fake = fake_with_prs(LATE).await;
    fake.set_latency(Duration::from_millis(60));
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("TOLLGATE_WORKERS", "4"),
        ("TOLLGATE_DRAIN_TIMEOUT_SECS", "20"),
    ];
    let serve = Serve::start(dir.path(), &fake.url(), &env);
    let store = Store::open(&sqlite_url(dir.path())).await;
    let (addr, url, log) = (serve.addr.clone(), serve.webhook_url(), serve.log.clone());
    let logged = |message: &str| {
        log.lock()
            .unwrap()
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|json| json["fields"]["message"] == message)
            .count()
    };

    let jobs = send_all(&url, &fake, 1..=PRS, "term").await;
    wait_for(
        Duration::from_secs(30),
        Some(&serve),
        "a first result",
        || async { finished_count(&fake, PRS) >= 1 },
    )
    .await;
    let at_sigterm = finished_count(&fake, PRS);
    let sigterm = Instant::now();
    let stopping = tokio::task::spawn_blocking(move || {
        let mut serve = serve;
        let status = serve.terminate(DRAIN + Duration::from_secs(10));
        (serve, status, sigterm.elapsed())
    });

    // Intake closes first, while evaluations are still finishing.
    wait_for(
        Duration::from_secs(5),
        None,
        "the shutdown starts",
        || async { logged("shutting down: no new connections, draining in-flight requests") == 1 },
    )
    .await;
    wait_for(
        Duration::from_secs(5),
        None,
        "the listener closes",
        || async { !answers(&addr).await },
    )
    .await;
    assert_eq!(
        logged("evaluations in flight finished"),
        0,
        "intake closed only once the evaluations were done"
    );
    let late = &deliveries_for(&fake, LATE, "term")[0];
    let status = deliver(&reqwest::Client::new(), &url, late.0, &late.1, &late.2).await;
    assert_ne!(status, 202, "a delivery after SIGTERM must not be accepted");

    let (serve, status, took) = stopping.await.unwrap();
    let status = status.expect("tollgate serve exits after SIGTERM");
    eprintln!("exited {took:?} after SIGTERM with {status}");
    assert!(status.success(), "{status}");
    assert!(
        took < DRAIN,
        "it exits once the evaluations are done, not at the drain timeout"
    );
    assert_eq!(serve.logged("evaluations in flight finished"), 1);
    assert_eq!(
        serve.logged("drain timeout reached; unfinished evaluations were handed back to the queue"),
        0
    );
    assert_eq!(serve.logged("stopped"), 1);
    assert_no_errors(&serve);

    // The claims in flight were finished, not abandoned, and nothing new was started.
    let after = finished_count(&fake, PRS);
    let states = store.states().await;
    eprintln!("{at_sigterm} finished at SIGTERM, {after} at exit; jobs {states:?}");
    assert_eq!(count(&states, "running"), 0, "{states:?}");
    assert!(after > at_sigterm, "the evaluations in flight finished");
    assert!(
        after < PRS as usize,
        "no new evaluation started while draining"
    );
    assert!(count(&states, "queued") > 0, "{states:?}");
    assert_eq!(states.values().sum::<usize>(), jobs, "{states:?}");

    let restarted = Instant::now();
    let serve = Serve::start(dir.path(), &fake.url(), &[]);
    wait_until_all_done(&fake, &store, &serve, PRS, jobs, Duration::from_secs(20)).await;
    eprintln!("finished {:?} after the restart", restarted.elapsed());
    assert_published_exactly_once(&fake, PRS);
    assert!(
        fake.comments(REPO, LATE).is_empty() && runs_on(&fake, &final_head(LATE)).is_empty(),
        "the refused delivery was never processed"
    );
    for job in store.jobs().await {
        assert_eq!(job.state, "done", "{job:?}");
        assert_eq!(job.attempts, 0, "{job:?}");
    }
    assert_no_errors(&serve);
    drop(serve);
    store.close().await;
    fake.assert_requests_match_openapi();
    eprintln!("took {:?}", started.elapsed());
}

/// A drain that runs out of time hands the evaluations still running back to the queue (no
/// attempt counted) instead of leaving them claimed: after a restart they are taken at once,
/// not after the 30 s lease of the process that stopped.
#[tokio::test]
async fn a_drain_that_runs_out_of_time_hands_the_work_back() {
    const PRS: u64 = 4;
    let started = Instant::now();
    let fake = fake_with_prs(PRS).await;
    fake.set_latency(Duration::from_millis(400));
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("TOLLGATE_WORKERS", "4"),
        ("TOLLGATE_DRAIN_TIMEOUT_SECS", "1"),
        ("TOLLGATE_JOB_LEASE_SECS", "30"),
    ];
    let mut serve = Serve::start(dir.path(), &fake.url(), &env);
    let store = Store::open(&sqlite_url(dir.path())).await;

    let jobs = send_all(&serve.webhook_url(), &fake, 1..=PRS, "slow").await;
    // Evaluations are under way: changes are claimed and their pull requests being read.
    wait_for(
        Duration::from_secs(30),
        Some(&serve),
        "evaluations in flight",
        || async {
            let reading = fake
                .requests()
                .iter()
                .any(|r| r.path.starts_with(&format!("/repos/{REPO}/pulls/")));
            reading && count(&store.states().await, "running") > 0
        },
    )
    .await;

    let sigterm = Instant::now();
    let status = serve
        .terminate(Duration::from_secs(15))
        .expect("tollgate serve exits after SIGTERM");
    let took = sigterm.elapsed();
    eprintln!("exited {took:?} after SIGTERM with {status}");
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(
        serve.logged("drain timeout reached; unfinished evaluations were handed back to the queue"),
        1
    );
    assert_eq!(serve.logged("evaluations in flight finished"), 0);
    let handed_back =
        serve.logged("drain timeout: handed an unfinished evaluation back to the queue");
    assert!(handed_back >= 1, "{handed_back}");
    assert_no_errors(&serve);

    let states = store.states().await;
    eprintln!("handed back {handed_back} changes; jobs {states:?}");
    assert_eq!(count(&states, "running"), 0, "{states:?}");
    assert_eq!(states.values().sum::<usize>(), jobs, "{states:?}");
    assert_eq!(finished_count(&fake, PRS), 0, "nothing finished in time");
    for job in store.jobs().await {
        assert_eq!(
            job.attempts, 0,
            "handing back is no failed attempt: {job:?}"
        );
    }

    fake.set_latency(Duration::from_millis(10));
    let restarted = Instant::now();
    let serve = Serve::start(dir.path(), &fake.url(), &env);
    wait_until_all_done(&fake, &store, &serve, PRS, jobs, Duration::from_secs(15)).await;
    eprintln!("finished {:?} after the restart", restarted.elapsed());
    assert_published_exactly_once(&fake, PRS);
    assert_no_errors(&serve);
    drop(serve);
    store.close().await;
    fake.assert_requests_match_openapi();
    eprintln!("took {:?}", started.elapsed());
}
