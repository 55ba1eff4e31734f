//! The playbook's worked examples 1 and 2, event by event, on both forges: one scenario per
//! example, written once against the small [`Forge`] trait below, run on GitHub (signed
//! webhooks, a fake GitHub, a check run and a sticky comment) and on GitLab (token webhooks, a
//! fake GitLab, a commit status and a sticky note), with the same expected outcomes.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use chrono::TimeDelta;
use secrecy::SecretString;
use serde_json::{Value, json};
use tollgate::config::JobSettings;
use tollgate::intake::{IntakeSecrets, IntakeState};
use tollgate::metrics::Metrics;
use tollgate::queue::JobQueue;
use tollgate::render::COMMENT_MARKER;

use common::fake_github::FakeGitHub;
use common::fake_gitlab::{DEVELOPER, FakeGitLab, REPORTER};
use common::{GITHUB_SECRET, GITLAB_TOKEN, TestApp};

const REPO: &str = "acme/fraud-model";
const BASE: &str = "base000000000000000000000000000000000000";
const CHECK: &str = "tollgate";
const IID: u64 = 7;

// ---------------------------------------------------------------------------------------------
// What a scenario sees: forge-neutral changes, people and outcomes
// ---------------------------------------------------------------------------------------------

/// One file changed by a commit.
#[derive(Clone, Copy)]
enum Change {
    Added(&'static str, &'static str),
    Modified(&'static str, &'static str),
}

/// The repository a worked example runs in: its policy and files at the base, its teams
/// (`@acme/x` on GitHub, the group `acme/x` on GitLab), who may write (GitHub `write`, GitLab
/// Developer) and who may only read (GitHub `read`, GitLab Reporter).
struct Setup {
    policy: &'static str,
    base_files: &'static [(&'static str, &'static str)],
    teams: &'static [(&'static str, &'static [&'static str])],
    writers: &'static [&'static str],
    readers: &'static [&'static str],
}

/// What the forge shows for the change's current head: whether tollgate lets it merge, and
/// the headline (the GitHub check title, the GitLab status description).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    passed: bool,
    headline: String,
}

fn waiting(headline: &str) -> Outcome {
    Outcome {
        passed: false,
        headline: headline.to_owned(),
    }
}

fn passed(headline: &str) -> Outcome {
    Outcome {
        passed: true,
        headline: headline.to_owned(),
    }
}

/// A change request on a forge, driven event by event: each method changes the forge and then
/// delivers the webhook the forge would send, waiting until tollgate is done with it.
trait Forge {
    /// Opens change !7 / #7 by `author` into `main` with one commit.
    async fn open(&mut self, author: &str, files: &[Change], body: &str);
    /// Pushes one more commit by the author.
    async fn push(&mut self, files: &[Change]);
    /// Replaces the description.
    async fn edit_body(&mut self, body: &str);
    /// `who` approves the current head.
    async fn approve(&mut self, who: &str);
    /// The outcome shown on the current head.
    fn outcome(&self) -> Outcome;
    /// How many times the current head was shown as passing.
    fn passes_on_head(&self) -> usize;
    /// tollgate's sticky comments / notes on the change.
    fn sticky(&self) -> Vec<String>;
}

fn head_sha(n: usize) -> String {
    format!("head{n:036}")
}

async fn ledger() -> (Arc<tollgate::ledger::Audit>, tempfile::TempDir) {
    let db = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", db.path().join("ledger.db").display());
    let audit = tollgate::ledger::Audit {
        ledger: tollgate::ledger::store::Ledger::open(&url).await.unwrap(),
        key: ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]),
    };
    (Arc::new(audit), db)
}

// ---------------------------------------------------------------------------------------------
// GitHub
// ---------------------------------------------------------------------------------------------

struct GithubForge {
    fake: FakeGitHub,
    app: TestApp,
    worker: Arc<tollgate::forge::github::worker::GithubWorker>,
    _db: tempfile::TempDir,
    deliveries: usize,
    pushes: usize,
    author: String,
    body: String,
}

impl Drop for GithubForge {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.fake.assert_requests_match_openapi();
        }
    }
}

impl GithubForge {
    async fn start(setup: &Setup) -> GithubForge {
        use tollgate::forge::github::api::{Auth, GithubApi};
        use tollgate::forge::github::worker::{GithubSink, GithubWorker, WorkerOptions};

        let fake = FakeGitHub::start().await;
        fake.set_app("tollgate-test", 4242);
        let pem = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/github-app-test-key.pem"
        ))
        .unwrap();
        let auth = Auth::App {
            app_id: 4242,
            private_key_pem: SecretString::from(pem),
        };
        let api = GithubApi::new(&fake.url().parse().unwrap(), auth).unwrap();
        let (audit, db) = ledger().await;
        let metrics = Metrics::new();
        let worker = GithubWorker::start(
            api,
            WorkerOptions {
                audit: Some(audit.clone()),
                metrics: metrics.clone(),
                jobs: JobSettings::default(),
                ..WorkerOptions::new(CHECK, JobQueue::new(audit.ledger.pool().clone()))
            },
        );
        let secrets = IntakeSecrets {
            github: vec![SecretString::from(GITHUB_SECRET)],
            gitlab: vec![],
        };
        let state = IntakeState::new(
            secrets,
            metrics.clone(),
            Arc::new(GithubSink(worker.clone())),
        );
        let app = TestApp {
            router: tollgate::server::router(state, metrics.clone()),
            sink: Arc::default(),
            metrics,
        };

        fake.set_file(REPO, BASE, ".governance.toml", setup.policy);
        for (path, contents) in setup.base_files {
            fake.set_file(REPO, BASE, path, contents);
        }
        for (team, members) in setup.teams {
            fake.set_team("acme", team, members);
        }
        for user in setup.writers {
            fake.set_permission(REPO, user, "write");
        }
        for user in setup.readers {
            fake.set_permission(REPO, user, "read");
        }
        GithubForge {
            fake,
            app,
            worker,
            _db: db,
            deliveries: 0,
            pushes: 0,
            author: String::new(),
            body: String::new(),
        }
    }

    fn files(files: &[Change]) -> Vec<common::fake_github::FileChange> {
        use common::fake_github::FileChange;
        files
            .iter()
            .map(|c| match *c {
                Change::Added(path, contents) => FileChange::added(path, contents),
                Change::Modified(path, contents) => FileChange::modified(path, contents),
            })
            .collect()
    }

    fn head(&self) -> String {
        head_sha(self.pushes)
    }

    fn installation(&self) -> Value {
        json!({ "id": self.fake.installation_id() })
    }

    fn pr_payload(&self, action: &str) -> Value {
        json!({
            "action": action,
            "number": IID,
            "pull_request": {
                "number": IID, "user": {"login": self.author, "id": 1},
                "head": {"ref": "feature", "sha": self.head()},
                "base": {"ref": "main", "sha": BASE},
                "labels": [], "title": "A governed change", "body": self.body
            },
            "repository": {"id": 99, "full_name": REPO},
            "installation": self.installation(),
        })
    }

    async fn deliver(&mut self, event: &str, payload: &Value) {
        self.deliveries += 1;
        let request = common::github_request(
            event,
            &format!("d-{}", self.deliveries),
            serde_json::to_vec(payload).unwrap(),
            GITHUB_SECRET,
        );
        let (status, text) = self.app.send(request).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{text}");
        tokio::time::timeout(std::time::Duration::from_secs(20), self.worker.settle())
            .await
            .expect("the worker settles");
    }

    fn check(&self) -> common::fake_github::CheckRunView {
        let head = self.head();
        let runs: Vec<_> = self
            .fake
            .check_runs(REPO)
            .into_iter()
            .filter(|r| r.head_sha == head && r.name == CHECK)
            .collect();
        assert_eq!(runs.len(), 1, "one check run per head: {runs:#?}");
        runs.into_iter().next().unwrap()
    }
}

impl Forge for GithubForge {
    async fn open(&mut self, author: &str, files: &[Change], body: &str) {
        use common::fake_github::{CommitSpec, PrSpec};
        self.author = author.to_owned();
        self.body = body.to_owned();
        self.pushes = 1;
        self.fake.open_pr(
            REPO,
            PrSpec {
                number: IID,
                author: author.to_owned(),
                title: "A governed change".to_owned(),
                body: body.to_owned(),
                base_sha: BASE.to_owned(),
                commits: vec![CommitSpec::new(&self.head(), author, Self::files(files))],
                ..PrSpec::default()
            },
        );
        self.deliver("pull_request", &self.pr_payload("opened"))
            .await;
    }

    async fn push(&mut self, files: &[Change]) {
        use common::fake_github::CommitSpec;
        self.fake.advance(TimeDelta::minutes(5));
        self.pushes += 1;
        self.fake.push(
            REPO,
            IID,
            CommitSpec::new(&self.head(), &self.author, Self::files(files)),
        );
        self.deliver("pull_request", &self.pr_payload("synchronize"))
            .await;
    }

    async fn edit_body(&mut self, body: &str) {
        self.fake.advance(TimeDelta::minutes(5));
        self.body = body.to_owned();
        self.fake.set_body(REPO, IID, body);
        self.deliver("pull_request", &self.pr_payload("edited"))
            .await;
    }

    async fn approve(&mut self, who: &str) {
        self.fake.advance(TimeDelta::minutes(5));
        let head = self.head();
        let now = self.fake.now();
        self.fake.add_review(REPO, IID, who, "APPROVED", &head, now);
        let payload = json!({
            "action": "submitted",
            "review": {"user": {"login": who, "id": 2}, "state": "approved", "commit_id": head,
                       "submitted_at": now.to_rfc3339()},
            "pull_request": {"number": IID},
            "repository": {"id": 99, "full_name": REPO},
            "installation": self.installation(),
        });
        self.deliver("pull_request_review", &payload).await;
    }

    fn outcome(&self) -> Outcome {
        let run = self.check();
        Outcome {
            passed: run.conclusion.as_deref() == Some("success"),
            headline: run.title.unwrap_or_default(),
        }
    }

    fn passes_on_head(&self) -> usize {
        self.check()
            .history
            .iter()
            .filter(|(_, c)| c.as_deref() == Some("success"))
            .count()
    }

    fn sticky(&self) -> Vec<String> {
        self.fake
            .comments(REPO, IID)
            .into_iter()
            .filter(|c| c.body.contains(COMMENT_MARKER))
            .inspect(|c| assert_eq!(c.author, "tollgate-test[bot]"))
            .map(|c| c.body)
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// GitLab
// ---------------------------------------------------------------------------------------------

struct GitlabForge {
    fake: FakeGitLab,
    app: TestApp,
    worker: Arc<tollgate::forge::gitlab::worker::GitlabWorker>,
    _db: tempfile::TempDir,
    project: u64,
    deliveries: usize,
    pushes: usize,
    author: String,
    body: String,
}

impl GitlabForge {
    async fn start(setup: &Setup) -> GitlabForge {
        use tollgate::forge::gitlab::api::GitlabApi;
        use tollgate::forge::gitlab::worker::{GitlabSink, GitlabWorker, WorkerOptions};

        let fake = FakeGitLab::start().await;
        let token = fake.set_bot("tollgate-bot");
        let project = fake.create_project(REPO);
        fake.add_project_member(REPO, "tollgate-bot", DEVELOPER);
        let (audit, db) = ledger().await;
        let api = GitlabApi::new(&fake.url().parse().unwrap(), &SecretString::from(token)).unwrap();
        let metrics = Metrics::new();
        let worker = GitlabWorker::start(
            api,
            WorkerOptions {
                check_name: CHECK.to_owned(),
                default_policy: None,
                audit: Some(Arc::clone(&audit)),
                queue: JobQueue::new(audit.ledger.pool().clone()),
                jobs: JobSettings::default(),
                metrics: metrics.clone(),
                clock: tollgate::clock::system(),
                public_url: None,
            },
        );
        let secrets = IntakeSecrets {
            github: vec![],
            gitlab: vec![SecretString::from(GITLAB_TOKEN)],
        };
        let state = IntakeState::new(
            secrets,
            metrics.clone(),
            Arc::new(GitlabSink(Arc::clone(&worker))),
        );
        let app = TestApp {
            router: tollgate::server::router(state, metrics.clone()),
            sink: Arc::default(),
            metrics,
        };

        fake.set_file(REPO, BASE, ".governance.toml", setup.policy);
        for (path, contents) in setup.base_files {
            fake.set_file(REPO, BASE, path, contents);
        }
        for (team, members) in setup.teams {
            let group = format!("acme/{team}");
            fake.add_group(&group);
            for member in *members {
                fake.add_group_member(&group, member, DEVELOPER);
            }
        }
        for user in setup.writers {
            fake.add_project_member(REPO, user, DEVELOPER);
        }
        for user in setup.readers {
            fake.add_project_member(REPO, user, REPORTER);
        }
        GitlabForge {
            fake,
            app,
            worker,
            _db: db,
            project,
            deliveries: 0,
            pushes: 0,
            author: String::new(),
            body: String::new(),
        }
    }

    fn files(files: &[Change]) -> Vec<common::fake_gitlab::FileChange> {
        use common::fake_gitlab::FileChange;
        files
            .iter()
            .map(|c| match *c {
                Change::Added(path, contents) => FileChange::added(path, contents),
                Change::Modified(path, contents) => FileChange::modified(path, contents),
            })
            .collect()
    }

    /// The head of the newest diff version (`versions()` is oldest first).
    fn head(&self) -> String {
        let versions = self.fake.versions(REPO, IID);
        let head = versions.last().expect("a version").head_commit_sha.clone();
        assert_eq!(head, head_sha(self.pushes));
        head
    }

    fn mr_hook(&self, action: &str, user: &str) -> Value {
        json!({
            "object_kind": "merge_request",
            "event_type": "merge_request",
            "user": {"id": 1, "username": user, "name": user},
            "project": {"id": self.project, "path_with_namespace": REPO},
            "object_attributes": {
                "iid": IID, "action": action, "source_branch": "feature", "target_branch": "main",
                "author_id": 1, "title": "A governed change", "description": self.body,
                "last_commit": {"id": head_sha(self.pushes)}, "diff_refs": {"base_sha": BASE},
            },
            "labels": [],
        })
    }

    async fn deliver(&mut self, event: &str, payload: &Value) {
        self.deliveries += 1;
        let body = serde_json::to_vec(payload).unwrap();
        let request =
            common::gitlab_request(event, &format!("u-{}", self.deliveries), body, GITLAB_TOKEN);
        let (status, text) = self.app.send(request).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{text}");
        tokio::time::timeout(std::time::Duration::from_secs(20), self.worker.settle())
            .await
            .expect("the worker settles");
    }

    fn status(&self) -> common::fake_gitlab::StatusView {
        let statuses: Vec<_> = self
            .fake
            .statuses(REPO, &self.head())
            .into_iter()
            .filter(|s| s.name == CHECK)
            .collect();
        statuses
            .into_iter()
            .last()
            .expect("a tollgate status on the head")
    }
}

impl Forge for GitlabForge {
    async fn open(&mut self, author: &str, files: &[Change], body: &str) {
        use common::fake_gitlab::{CommitSpec, MrSpec};
        self.author = author.to_owned();
        self.body = body.to_owned();
        self.pushes = 1;
        self.fake.open_mr(
            REPO,
            MrSpec {
                iid: IID,
                author: author.to_owned(),
                title: "A governed change".to_owned(),
                description: body.to_owned(),
                base_sha: BASE.to_owned(),
                commits: vec![CommitSpec::new(
                    &head_sha(self.pushes),
                    author,
                    Self::files(files),
                )],
                ..MrSpec::default()
            },
        );
        let hook = self.mr_hook("open", author);
        self.deliver("Merge Request Hook", &hook).await;
    }

    async fn push(&mut self, files: &[Change]) {
        use common::fake_gitlab::CommitSpec;
        self.fake.advance(TimeDelta::minutes(5));
        self.pushes += 1;
        self.fake.push(
            REPO,
            IID,
            CommitSpec::new(&head_sha(self.pushes), &self.author, Self::files(files)),
        );
        let hook = self.mr_hook("update", &self.author.clone());
        self.deliver("Merge Request Hook", &hook).await;
    }

    async fn edit_body(&mut self, body: &str) {
        self.fake.advance(TimeDelta::minutes(5));
        self.body = body.to_owned();
        self.fake.set_description(REPO, IID, body);
        let hook = self.mr_hook("update", &self.author.clone());
        self.deliver("Merge Request Hook", &hook).await;
    }

    async fn approve(&mut self, who: &str) {
        self.fake.advance(TimeDelta::minutes(5));
        // GitLab keeps an approval across pushes; approving the new head again means
        // withdrawing the approval and giving it anew.
        if self.fake.approvals(REPO, IID).iter().any(|a| a.user == who) {
            self.fake.unapprove(REPO, IID, who);
            self.fake.advance(TimeDelta::minutes(1));
        }
        self.fake.approve(REPO, IID, who);
        let hook = self.mr_hook("approved", who);
        self.deliver("Merge Request Hook", &hook).await;
    }

    fn outcome(&self) -> Outcome {
        let status = self.status();
        Outcome {
            passed: status.state == "success",
            headline: status.description.unwrap_or_default(),
        }
    }

    fn passes_on_head(&self) -> usize {
        self.fake
            .status_history(REPO, &self.head(), CHECK)
            .iter()
            .filter(|s| *s == "success")
            .count()
    }

    fn sticky(&self) -> Vec<String> {
        self.fake
            .notes(REPO, IID)
            .into_iter()
            .filter(|n| n.body.contains(COMMENT_MARKER))
            .inspect(|n| assert_eq!(n.author, "tollgate-bot"))
            .map(|n| n.body)
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Worked example 1: a new fraud model to production
// ---------------------------------------------------------------------------------------------

const FRAUD_CARD: &str = "# Fraud v2\n## Intended use\nScoring card payments.\n## Metrics\nAUC 0.93\n## Limitations\nNot for loans.\n";
const FRAUD_BODY: &str =
    "New fraud model.\n\n## Rollback plan\nRevert this change; v1 stays in the registry.\n";
const FRAUD_BODY_WITHOUT_ROLLBACK: &str = "New fraud model.\n";

const FRAUD: Setup = Setup {
    policy: include_str!("../config/examples/fraud-model.governance.toml"),
    base_files: &[
        ("data/transactions/DATASHEET.md", "# Transactions\n"),
        ("eval/metrics.json", r#"{"auc": 0.91}"#),
    ],
    teams: &[
        ("ml-engineers", &["alice"]),
        ("data-platform", &["dana"]),
        ("model-risk", &["rita", "rhea"]),
        ("ml-ops", &["omar"]),
        ("ml-leads", &["lena", "alice"]),
        ("ml-oncall", &["olga"]),
    ],
    writers: &["alice", "dana", "rita", "omar", "lena", "olga"],
    readers: &["rhea"],
};

async fn example_1<F: Forge>(forge: &mut F) {
    // The requester submits the model with its card, validation and risk reports and metrics,
    // but forgets the rollback plan: the missing evidence is named and blocks.
    forge
        .open(
            "alice",
            &[
                Change::Added("models/fraud/v2/model.onnx", "weights"),
                Change::Modified("models/fraud/MODEL_CARD.md", FRAUD_CARD),
                Change::Added("reports/validation/fraud-v2.html", "<html>ok</html>"),
                Change::Added("reports/risk/fraud-v2.md", "# Risk\nLow.\n"),
                Change::Modified("eval/metrics.json", r#"{"auc": 0.93}"#),
            ],
            FRAUD_BODY_WITHOUT_ROLLBACK,
        )
        .await;
    assert_eq!(
        forge.outcome(),
        waiting("High risk — 0 of 4 sign-offs, rollback plan missing")
    );
    let sticky = forge.sticky();
    assert_eq!(sticky.len(), 1);
    for role in ["data_reviewer", "risk_reviewer", "ops_reviewer", "approver"] {
        assert!(sticky[0].contains(role), "{role} missing:\n{}", sticky[0]);
    }

    // With the rollback plan added to the description, only the four sign-offs are missing.
    forge.edit_body(FRAUD_BODY).await;
    assert_eq!(forge.outcome(), waiting("High risk — 0 of 4 sign-offs"));

    // The author's approval never counts, although she is an ml-lead.
    forge.approve("alice").await;
    assert_eq!(forge.outcome(), waiting("High risk — 0 of 4 sign-offs"));
    let sticky = forge.sticky();
    assert!(
        sticky[0].contains("alice: the author cannot approve their own change"),
        "{}",
        sticky[0]
    );

    // A read-only member of a required team does not count either.
    forge.approve("rhea").await;
    assert_eq!(forge.outcome(), waiting("High risk — 0 of 4 sign-offs"));

    // Data, risk and ops reviewers each move it; the product owner's makes it pass.
    for (i, reviewer) in ["dana", "rita", "omar"].into_iter().enumerate() {
        forge.approve(reviewer).await;
        assert_eq!(
            forge.outcome(),
            waiting(&format!("High risk — {} of 4 sign-offs", i + 1))
        );
    }
    assert_eq!(
        forge.passes_on_head(),
        0,
        "never passed before the approver"
    );
    forge.approve("lena").await;
    assert_eq!(forge.outcome(), passed("High risk — passed"));
    assert_eq!(forge.passes_on_head(), 1);

    // A later push of new weights makes every earlier approval stale: no longer passing.
    forge
        .push(&[Change::Modified(
            "models/fraud/v2/model.onnx",
            "new weights",
        )])
        .await;
    assert_eq!(forge.outcome(), waiting("High risk — 0 of 4 sign-offs"));
    assert_eq!(forge.passes_on_head(), 0);

    // The four sign off again on the new head: it passes again.
    for reviewer in ["dana", "rita", "omar"] {
        forge.approve(reviewer).await;
    }
    assert_eq!(forge.outcome(), waiting("High risk — 3 of 4 sign-offs"));
    forge.approve("lena").await;
    assert_eq!(forge.outcome(), passed("High risk — passed"));

    // One sticky comment / note through it all.
    assert_eq!(forge.sticky().len(), 1);
}

#[tokio::test]
async fn worked_example_1_on_github() {
    let mut forge = GithubForge::start(&FRAUD).await;
    example_1(&mut forge).await;
}

#[tokio::test]
async fn worked_example_1_on_gitlab() {
    let mut forge = GitlabForge::start(&FRAUD).await;
    example_1(&mut forge).await;
}

// ---------------------------------------------------------------------------------------------
// Worked example 2: a feature store schema change
// ---------------------------------------------------------------------------------------------

const SCHEMA_BASE: &str = "features:\n  - name: days_since_signup\n    type: int\n  - name: avg_basket_30d\n    type: float\n  - name: country\n    type: string\n";
const SCHEMA_HEAD: &str = "features:\n  - name: avg_basket_30d\n    type: float\n  - name: country\n    type: string\n  - name: txn_velocity_1h\n    type: float\n  - name: merchant_risk_score\n    type: float\n";
const FEATURES_BODY_EMPTY_BACKFILL: &str = "Drop `days_since_signup` and add two engineered features.\n\n## Backfill plan\n\n## Impact analysis\nConsumers: fraud-model (retrained), churn-model (does not read the dropped feature).\n";
const FEATURES_BODY: &str = "Drop `days_since_signup` and add two engineered features.\n\n## Backfill plan\n1. Backfill both new features for the last 400 days.\n2. Dual-write for one week, then stop writing `days_since_signup`.\n\n## Impact analysis\nConsumers: fraud-model (retrained), churn-model (does not read the dropped feature).\n";

const FEATURES: Setup = Setup {
    policy: include_str!("../config/examples/feature-store.governance.toml"),
    base_files: &[("features/schemas/transactions.yaml", SCHEMA_BASE)],
    teams: &[
        ("data-platform", &["fiona", "pablo"]),
        ("fraud-model-owners", &["mona"]),
        ("tech-leads", &["theo"]),
    ],
    writers: &["fiona", "pablo", "mona", "theo"],
    readers: &[],
};

async fn example_2<F: Forge>(forge: &mut F) {
    // The requester drops a feature and adds two, with an impact analysis but an empty
    // backfill plan: medium risk, the three roles, and the plan is missing.
    forge
        .open(
            "fiona",
            &[
                Change::Modified("features/schemas/transactions.yaml", SCHEMA_HEAD),
                Change::Added(
                    "features/definitions/txn_velocity_1h.sql",
                    "select count(*) from txns\n",
                ),
                Change::Added(
                    "features/definitions/merchant_risk_score.sql",
                    "select avg(chargebacks) from merchants\n",
                ),
            ],
            FEATURES_BODY_EMPTY_BACKFILL,
        )
        .await;
    assert_eq!(
        forge.outcome(),
        waiting("Medium risk — 0 of 3 sign-offs, backfill and migration plan missing")
    );
    assert_eq!(forge.sticky().len(), 1);

    forge.edit_body(FEATURES_BODY).await;
    assert_eq!(forge.outcome(), waiting("Medium risk — 0 of 3 sign-offs"));

    // The requester is in the data platform team, but cannot sign her own change.
    forge.approve("fiona").await;
    assert_eq!(forge.outcome(), waiting("Medium risk — 0 of 3 sign-offs"));

    // The data platform reviewer and the model owner sign.
    forge.approve("pablo").await;
    assert_eq!(forge.outcome(), waiting("Medium risk — 1 of 3 sign-offs"));
    forge.approve("mona").await;
    assert_eq!(forge.outcome(), waiting("Medium risk — 2 of 3 sign-offs"));

    // A changed feature definition is a governed change: both sign-offs are stale.
    forge
        .push(&[Change::Modified(
            "features/definitions/txn_velocity_1h.sql",
            "select count(*) from txns where ts > now() - interval '1 hour'\n",
        )])
        .await;
    assert_eq!(forge.outcome(), waiting("Medium risk — 0 of 3 sign-offs"));

    // All three sign the new head, the tech lead last: passed.
    forge.approve("pablo").await;
    forge.approve("mona").await;
    assert_eq!(forge.outcome(), waiting("Medium risk — 2 of 3 sign-offs"));
    assert_eq!(forge.passes_on_head(), 0);
    forge.approve("theo").await;
    assert_eq!(forge.outcome(), passed("Medium risk — passed"));

    // A docs-only push neither governs nor makes the approvals stale.
    forge
        .push(&[Change::Added(
            "features/README.md",
            "# Features\nSee the schema.\n",
        )])
        .await;
    assert_eq!(forge.outcome(), passed("Medium risk — passed"));

    assert_eq!(forge.sticky().len(), 1);
}

#[tokio::test]
async fn worked_example_2_on_github() {
    let mut forge = GithubForge::start(&FEATURES).await;
    example_2(&mut forge).await;
}

#[tokio::test]
async fn worked_example_2_on_gitlab() {
    let mut forge = GitlabForge::start(&FEATURES).await;
    example_2(&mut forge).await;
}
