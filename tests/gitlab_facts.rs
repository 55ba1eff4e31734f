//! Facts of a GitLab merge request, gathered from the fake GitLab and judged by the policy
//! engine: approvals dated by GitLab, staleness by pushes (not by commit dates), access levels,
//! groups as roles, notes as commands.

mod common;

use chrono::TimeDelta;
use secrecy::SecretString;
use tollgate::forge::gitlab::api::GitlabApi;
use tollgate::forge::gitlab::facts::gather;
use tollgate::policy::decision::{IgnoreReason, Outcome};
use tollgate::policy::{RiskTier, evaluate, parse_policy};

use common::fake_gitlab::{CommitSpec, DEVELOPER, FakeGitLab, FileChange, MrSpec, REPORTER};

const PROJECT: &str = "acme/fraud-model";
const BASE: &str = "base000000000000000000000000000000000000";

const POLICY: &str = r#"
version = 1
[roles]
approver = ["@acme/ml-leads"]
[[classify]]
kind  = "model_artifact"
paths = ["models/**/*.onnx"]
[risk.high]
kinds = ["model_artifact"]
[tiers.high]
sign_offs = ["approver"]
[tiers.low]
sign_offs = []
"#;

#[tokio::test]
async fn approvals_count_only_from_developers_in_the_role_and_go_stale_on_a_governed_push() {
    let fake = FakeGitLab::start().await;
    let token = fake.set_bot("tollgate-bot");
    let project = fake.create_project(PROJECT);
    fake.add_project_member(PROJECT, "tollgate-bot", DEVELOPER);
    fake.set_file(PROJECT, BASE, ".governance.toml", POLICY);
    fake.add_group("acme/ml-leads");
    for lead in ["lena", "rita", "alice"] {
        fake.add_group_member("acme/ml-leads", lead, REPORTER);
    }
    // lena and alice (the author) may push; rita only reads.
    fake.add_project_member(PROJECT, "lena", DEVELOPER);
    fake.add_project_member(PROJECT, "alice", DEVELOPER);
    fake.add_project_member(PROJECT, "rita", REPORTER);
    fake.open_mr(
        PROJECT,
        MrSpec {
            iid: 7,
            author: "alice".to_owned(),
            base_sha: BASE.to_owned(),
            commits: vec![CommitSpec::new(
                "head1",
                "alice",
                vec![FileChange::added("models/fraud/v2/model.onnx", "w1")],
            )],
            ..MrSpec::default()
        },
    );
    let api = GitlabApi::new(&fake.url().parse().unwrap(), &SecretString::from(token)).unwrap();
    let bot = api.current_user().await.unwrap();
    let policy = parse_policy(POLICY).unwrap();

    fake.advance(TimeDelta::minutes(5));
    for who in ["alice", "rita", "lena"] {
        fake.approve(PROJECT, 7, who);
    }
    let mr = api.merge_request(project, 7).await.unwrap();
    let gathered = gather(&api, project, &mr, &policy, &bot, fake.now(), None)
        .await
        .unwrap();
    let facts = &gathered.facts;
    assert_eq!(facts.base_sha, BASE);
    assert_eq!(facts.files.len(), 1);
    assert_eq!(facts.reviews.len(), 3);
    assert!(facts.reviews.iter().all(|r| r.commit == facts.head_sha));
    assert!(facts.write_access.contains("lena"));
    assert!(!facts.write_access.contains("rita"));
    assert!(facts.teams["@acme/ml-leads"].contains("lena"));
    let decision = evaluate(&policy, facts);
    assert_eq!(decision.tier, Some(RiskTier::High));
    assert!(matches!(decision.outcome, Outcome::Passed), "{decision:#?}");
    let ignored: Vec<_> = decision
        .ignored_approvals
        .iter()
        .map(|i| (i.login.as_str(), &i.reason))
        .collect();
    assert!(
        ignored
            .iter()
            .any(|(who, reason)| *who == "alice" && matches!(reason, IgnoreReason::Author)),
        "{ignored:?}"
    );
    assert!(
        ignored
            .iter()
            .any(|(who, reason)| *who == "rita" && matches!(reason, IgnoreReason::NoWriteAccess)),
        "{ignored:?}"
    );

    // A push to a governed path after lena's approval: her approval goes stale, though the
    // new commit claims (by its date) to be older than the approval.
    fake.advance(TimeDelta::minutes(5));
    let backdated = fake.now() - TimeDelta::days(3);
    fake.push(
        PROJECT,
        7,
        CommitSpec::new(
            "head2",
            "alice",
            vec![FileChange::modified("models/fraud/v2/model.onnx", "w2")],
        )
        .dated(backdated),
    );
    let mr = api.merge_request(project, 7).await.unwrap();
    let gathered = gather(&api, project, &mr, &policy, &bot, fake.now(), None)
        .await
        .unwrap();
    let lena = gathered
        .facts
        .reviews
        .iter()
        .find(|r| r.reviewer == "lena")
        .unwrap();
    assert_ne!(lena.commit, gathered.facts.head_sha);
    assert_eq!(
        lena.changed_after.as_deref(),
        Some(&["models/fraud/v2/model.onnx".to_owned()][..])
    );
    let decision = evaluate(&policy, &gathered.facts);
    assert!(
        !matches!(decision.outcome, Outcome::Passed),
        "a stale approval must not pass: {decision:#?}"
    );
    assert!(decision.ignored_approvals.iter().any(|i| i.login == "lena"
        && matches!(&i.reason, IgnoreReason::Stale { changed } if !changed.is_empty())));

    // Notes are comments (commands), tollgate's own are not.
    fake.add_note(PROJECT, 7, "lena", "/tollgate recheck");
    api.create_note(project, 7, "<!-- tollgate -->")
        .await
        .unwrap();
    let gathered = gather(&api, project, &mr, &policy, &bot, fake.now(), None)
        .await
        .unwrap();
    let authors: Vec<&str> = gathered
        .facts
        .comments
        .iter()
        .map(|c| c.author.as_str())
        .collect();
    assert_eq!(authors, ["lena"]);
    assert_eq!(gathered.facts.comments[0].head_sha, gathered.facts.head_sha);
}

#[tokio::test]
async fn whoever_pushed_to_the_merge_request_cannot_sign_it_off() {
    let fake = FakeGitLab::start().await;
    let token = fake.set_bot("tollgate-bot");
    let project = fake.create_project(PROJECT);
    fake.add_project_member(PROJECT, "tollgate-bot", DEVELOPER);
    fake.set_file(PROJECT, BASE, ".governance.toml", POLICY);
    fake.add_group("acme/ml-leads");
    fake.add_group_member("acme/ml-leads", "lena", DEVELOPER);
    fake.add_project_member(PROJECT, "lena", DEVELOPER);
    fake.add_project_member(PROJECT, "alice", DEVELOPER);
    fake.open_mr(
        PROJECT,
        MrSpec {
            iid: 7,
            author: "alice".to_owned(),
            base_sha: BASE.to_owned(),
            commits: vec![CommitSpec::new(
                "head1",
                "alice",
                vec![FileChange::added("models/fraud/v2/model.onnx", "w1")],
            )],
            ..MrSpec::default()
        },
    );
    // lena pushes a commit whose git metadata names alice, then approves: she built part of
    // the change, whatever git says.
    fake.advance(TimeDelta::minutes(1));
    fake.push_as(
        PROJECT,
        7,
        "lena",
        CommitSpec::new(
            "head2",
            "alice",
            vec![FileChange::modified("models/fraud/v2/model.onnx", "w2")],
        ),
    );
    fake.advance(TimeDelta::minutes(1));
    fake.approve(PROJECT, 7, "lena");
    let api = GitlabApi::new(&fake.url().parse().unwrap(), &SecretString::from(token)).unwrap();
    let bot = api.current_user().await.unwrap();
    let policy = parse_policy(POLICY).unwrap();
    let mr = api.merge_request(project, 7).await.unwrap();
    let gathered = gather(&api, project, &mr, &policy, &bot, fake.now(), None)
        .await
        .unwrap();
    assert!(gathered.facts.commit_authors.contains("lena"));
    let decision = evaluate(&policy, &gathered.facts);
    assert!(
        !matches!(decision.outcome, Outcome::Passed),
        "{decision:#?}"
    );
    assert!(
        decision
            .ignored_approvals
            .iter()
            .any(|i| i.login == "lena" && matches!(i.reason, IgnoreReason::Contributor)),
        "{:?}",
        decision.ignored_approvals
    );
}
