//! The deployment gate (issue 9), end to end in one process: tollgate answers GitHub's
//! `deployment_protection_rule` requests through the callback, approving a deployment to a
//! gated environment only for a commit whose change passed its review and, when its tier has an
//! observation window, only that long after the commit went live on canary. Every answer is a
//! signed ledger record. Time is the fake GitHub's clock.

mod common;

use chrono::TimeDelta;
use serde_json::{Value, json};
use tollgate::ledger::record::RecordKind;

use common::fake_github::{CommitSpec, FileChange};
use common::github_world::{REPO, World};

const POLICY: &str = r#"
version = 1
governed_branches = ["main"]
[roles]
approver = ["@acme/ml-leads"]
on_call = ["@acme/ml-oncall"]
[[classify]]
kind = "model_artifact"
paths = ["models/**/*.onnx"]
[risk.high]
kinds = ["model_artifact"]
[tiers.high]
sign_offs = ["approver"]
observation_hours = 24
[emergency]
approvers = ["on_call"]
ticket = "INC-[0-9]+"
[deployment]
environments = ["production"]
canary = "canary"
"#;

/// A model change, PR `number` by alice; approved by lena when `approve`; merged. Returns the
/// merge commit.
async fn merged_change(w: &World, number: u64, approve: bool) -> String {
    let head = w.open_pr(
        number,
        "alice",
        "Fraud model v2",
        vec![FileChange::modified(
            "models/fraud/v1/model.onnx",
            "weights v2",
        )],
    );
    w.deliver("pull_request", &w.pr_payload(number, "opened"))
        .await;
    if approve {
        w.advance(TimeDelta::minutes(5));
        w.fake
            .add_review(REPO, number, "lena", "APPROVED", &head, w.fake.now());
        let review = json!({
            "action": "submitted",
            "review": {"user": {"login": "lena", "id": 2}, "state": "approved", "commit_id": head,
                       "submitted_at": w.fake.now().to_rfc3339()},
            "pull_request": {"number": number},
            "repository": w.repository(),
            "installation": w.installation(),
        });
        w.deliver("pull_request_review", &review).await;
        assert_eq!(w.conclusion(&head).as_deref(), Some("success"));
    } else {
        assert_ne!(w.conclusion(&head).as_deref(), Some("success"));
    }
    w.merge(number, "lena").await;
    w.fake
        .pulls(REPO)
        .into_iter()
        .find(|p| p.number == number)
        .and_then(|p| p.merge_commit_sha)
        .expect("merged")
}

/// Deploys `sha` to canary, successfully.
fn on_canary(w: &World, sha: &str) {
    let id = w.fake.add_deployment(REPO, "canary", sha, "main");
    w.fake.add_deployment_status(REPO, id, "in_progress");
    w.fake.add_deployment_status(REPO, id, "success");
}

/// GitHub asks tollgate about deploying `sha` to `environment` (workflow run `run`).
fn request(w: &World, environment: &str, sha: &str, run: u64) -> Value {
    let deployment = w.fake.add_deployment(REPO, environment, sha, "main");
    json!({
        "action": "requested",
        "environment": environment,
        "event": "push",
        "deployment_callback_url": w.fake.deployment_callback_url(REPO, run),
        "deployment": {"id": deployment, "sha": sha, "ref": "main", "environment": environment},
        "repository": w.repository(),
        "installation": w.installation(),
        "sender": {"login": "lena", "id": 2},
    })
}

/// The answer to run `run`.
fn answer(w: &World, run: u64) -> (String, String) {
    let answers: Vec<_> = w
        .fake
        .protection_answers(REPO)
        .into_iter()
        .filter(|a| a.run_id == run)
        .collect();
    assert_eq!(answers.len(), 1, "one answer per request: {answers:#?}");
    (answers[0].state.clone(), answers[0].comment.clone())
}

#[tokio::test]
async fn a_passed_change_is_rejected_before_its_window_on_canary_ends_and_approved_after() {
    let w = World::sqlite_with_policy(POLICY).await;
    let sha = merged_change(&w, 1, true).await;
    on_canary(&w, &sha);
    let live = w.fake.now();

    // Straight to production: the 24 h window on canary has not run.
    w.advance(TimeDelta::hours(1));
    w.deliver(
        "deployment_protection_rule",
        &request(&w, "production", &sha, 101),
    )
    .await;
    let (state, comment) = answer(&w, 101);
    assert_eq!(state, "rejected", "{comment}");
    assert!(
        comment.contains("#1 passed its review (high risk)"),
        "{comment}"
    );
    assert!(
        comment.contains("24 h observation on `canary`"),
        "{comment}"
    );
    let allowed = (live + TimeDelta::hours(24)).format("%Y-%m-%d %H:%M UTC");
    assert!(
        comment.contains(&format!("Deploy again after {allowed}")),
        "{comment}"
    );

    // After the window: approved.
    w.advance(TimeDelta::hours(24));
    w.deliver(
        "deployment_protection_rule",
        &request(&w, "production", &sha, 102),
    )
    .await;
    let (state, comment) = answer(&w, 102);
    assert_eq!(state, "approved", "{comment}");
    assert!(comment.contains("observed 24 h on `canary`"), "{comment}");

    // A redelivered request is answered once (GitHub would refuse a second answer).
    w.deliver(
        "deployment_protection_rule",
        &request(&w, "production", &sha, 102),
    )
    .await;
    answer(&w, 102);

    // Each answer is a signed record of the change.
    let kinds = w.record_kinds(1).await;
    let deployments: Vec<_> = kinds
        .iter()
        .filter(|(k, _, _)| {
            matches!(
                k,
                RecordKind::DeploymentApproved | RecordKind::DeploymentRejected
            )
        })
        .collect();
    assert_eq!(deployments.len(), 2, "{kinds:#?}");
    assert_eq!(deployments[0].0, RecordKind::DeploymentRejected);
    assert_eq!(deployments[1].0, RecordKind::DeploymentApproved);
    assert!(
        deployments[1].2.contains("to `production`"),
        "{}",
        deployments[1].2
    );

    // The change's decision page lists the gate's answers, each record verified.
    let audit = &w.first().audit;
    let entry = tollgate::pages::Pages::new(audit.ledger.pool().clone())
        .get("github", REPO, 1)
        .await
        .unwrap()
        .expect("a page for the change");
    let records = audit.ledger.change_records(REPO, 1).await.unwrap();
    let html = tollgate::pages::render_page(&entry, &records, &audit.key.verifying_key()).unwrap();
    let gate = &html[html
        .find("<ul id=\"deployments\">")
        .expect("a deployment gate section")..];
    let gate = &gate[..gate.find("</ul>").unwrap()];
    assert_eq!(gate.matches("<li>").count(), 2, "{gate}");
    assert!(
        gate.contains(">rejected</span>") && gate.contains(">approved</span>"),
        "{gate}"
    );
}

#[tokio::test]
async fn a_change_whose_review_is_missing_is_never_released() {
    let w = World::sqlite_with_policy(POLICY).await;
    let sha = merged_change(&w, 2, false).await;
    on_canary(&w, &sha);
    w.advance(TimeDelta::hours(48));
    w.deliver(
        "deployment_protection_rule",
        &request(&w, "production", &sha, 201),
    )
    .await;
    let (state, comment) = answer(&w, 201);
    assert_eq!(state, "rejected");
    assert!(
        comment.contains("the review of #2 did not pass (its last decision: waiting)"),
        "{comment}"
    );
    let kinds = w.record_kinds(2).await;
    assert!(
        kinds
            .iter()
            .any(|(k, _, _)| *k == RecordKind::DeploymentRejected),
        "{kinds:#?}"
    );
}

#[tokio::test]
async fn a_commit_no_change_brought_is_rejected_and_ungated_environments_pass() {
    let w = World::sqlite_with_policy(POLICY).await;
    let sha = merged_change(&w, 3, false).await;
    // Pushed straight to main, past any review.
    let stray = w.fake.commit_to_branch(
        REPO,
        "main",
        CommitSpec::new(
            "5555555555555555555555555555555555555555",
            "alice",
            vec![FileChange::modified(
                "models/fraud/v1/model.onnx",
                "unreviewed",
            )],
        ),
    );
    let stray = stray.as_str();
    w.deliver(
        "deployment_protection_rule",
        &request(&w, "production", stray, 301),
    )
    .await;
    let (state, comment) = answer(&w, 301);
    assert_eq!(state, "rejected");
    assert!(
        comment.contains("not brought by a merged pull request"),
        "{comment}"
    );

    w.deliver(
        "deployment_protection_rule",
        &request(&w, "staging", &sha, 302),
    )
    .await;
    let (state, comment) = answer(&w, 302);
    assert_eq!(state, "approved");
    assert!(comment.contains("not gated"), "{comment}");
}

#[tokio::test]
async fn a_callback_outside_the_configured_api_is_never_called() {
    let w = World::sqlite_with_policy(POLICY).await;
    let sha = merged_change(&w, 4, true).await;
    let mut payload = request(&w, "production", &sha, 401);
    payload["deployment_callback_url"] = json!(
        "https://evil.example/repos/acme/fraud-model/actions/runs/401/deployment_protection_rule"
    );
    w.deliver("deployment_protection_rule", &payload).await;
    assert!(w.fake.protection_answers(REPO).is_empty());
    assert!(
        w.fake
            .requests()
            .iter()
            .all(|r| !r.path.contains("deployment_protection_rule")),
        "the token never goes to another host, and nothing is answered on the fake either"
    );
}
