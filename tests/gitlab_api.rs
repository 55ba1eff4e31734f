//! The GitLab API client against the in-process fake GitLab: every call tollgate makes, with
//! pagination, encoding, errors and rate limits as GitLab answers them.

mod common;

use chrono::TimeDelta;
use secrecy::SecretString;
use tollgate::forge::gitlab::api::{GitlabApi, GitlabError, StatusState};

use common::fake_gitlab::{CommitSpec, DEVELOPER, FakeGitLab, FileChange, MrSpec, REPORTER};

const PROJECT: &str = "ml/fraud-model";
const BASE: &str = "base000000000000000000000000000000000000";

async fn setup() -> (FakeGitLab, GitlabApi, u64) {
    let fake = FakeGitLab::start().await;
    let token = fake.set_bot("tollgate-bot");
    let project = fake.create_project(PROJECT);
    fake.add_project_member(PROJECT, "tollgate-bot", DEVELOPER);
    fake.set_file(PROJECT, BASE, ".governance.toml", "version = 1\n");
    let api = GitlabApi::new(&fake.url().parse().unwrap(), &SecretString::from(token)).unwrap();
    (fake, api, project)
}

fn files(n: usize) -> Vec<FileChange> {
    (0..n)
        .map(|i| FileChange::added(&format!("models/m{i:03}/model.onnx"), "w"))
        .collect()
}

#[tokio::test]
async fn a_merge_request_its_files_versions_and_notes_are_read_across_pages() {
    let (fake, api, project) = setup().await;
    assert_eq!(api.current_user().await.unwrap().username, "tollgate-bot");
    fake.open_mr(
        PROJECT,
        MrSpec {
            iid: 7,
            base_sha: BASE.to_owned(),
            labels: vec!["model".to_owned()],
            commits: vec![CommitSpec::new("head1", "alice", files(150))],
            ..MrSpec::default()
        },
    );
    let mr = api.merge_request(project, 7).await.unwrap();
    assert_eq!((mr.iid, mr.author.username.as_str()), (7, "alice"));
    assert_eq!(mr.state, "opened");
    assert_eq!(mr.labels, ["model"]);
    let refs = mr.diff_refs.expect("diff refs");
    assert_eq!(refs.base_sha, BASE);
    let head = refs.head_sha.clone();

    // 150 files: two pages of 100.
    let diffs = api.diffs(project, 7, 3_000).await.unwrap();
    assert_eq!(diffs.len(), 150);
    assert!(diffs.iter().all(|d| d.new_file && !d.deleted_file));
    // The cap stops reading early.
    assert_eq!(api.diffs(project, 7, 100).await.unwrap().len(), 100);

    // A push later is a second version, dated by GitLab when it happened.
    fake.advance(TimeDelta::hours(2));
    fake.push(
        PROJECT,
        7,
        CommitSpec::new("head2", "alice", vec![FileChange::added("README.md", "hi")]),
    );
    let versions = api.versions(project, 7).await.unwrap();
    assert_eq!(versions.len(), 2);
    assert!(versions[0].created_at > versions[1].created_at);
    assert_eq!(versions[1].head_commit_sha, head);
    let commits = api.commits(project, 7, 250).await.unwrap();
    assert_eq!(commits.len(), 2);

    // Notes: 120 of them, oldest first, over two pages; tollgate's own note is edited in place.
    for n in 0..120 {
        fake.add_note(PROJECT, 7, "bob", &format!("note {n}"));
    }
    let note = api
        .create_note(project, 7, "<!-- tollgate -->\nfirst")
        .await
        .unwrap();
    api.edit_note(project, 7, note.id, "<!-- tollgate -->\nsecond")
        .await
        .unwrap();
    let notes = api.notes(project, 7).await.unwrap();
    let mine: Vec<_> = notes
        .iter()
        .filter(|n| n.author.username == "tollgate-bot")
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].body, "<!-- tollgate -->\nsecond");
    assert!(mine[0].updated_at >= mine[0].created_at);
    let bobs: Vec<&str> = notes
        .iter()
        .filter(|n| n.author.username == "bob")
        .map(|n| n.body.as_str())
        .collect();
    assert_eq!(bobs.len(), 120);
    assert_eq!((bobs[0], bobs[119]), ("note 0", "note 119"));
}

#[tokio::test]
async fn approvals_files_membership_and_statuses() {
    let (fake, api, project) = setup().await;
    fake.open_mr(
        PROJECT,
        MrSpec {
            iid: 3,
            base_sha: BASE.to_owned(),
            commits: vec![CommitSpec::new(
                "head3",
                "alice",
                vec![FileChange::added("models/fraud card.md", "# Card\n")],
            )],
            ..MrSpec::default()
        },
    );
    let lena = fake.add_user("lena");
    let rita = fake.add_user("rita");
    fake.add_group("ml/reviewers");
    fake.add_group_member("ml/reviewers", "lena", DEVELOPER);
    fake.add_project_member(PROJECT, "rita", REPORTER);
    fake.share_project(PROJECT, "ml/reviewers", DEVELOPER);
    fake.approve(PROJECT, 3, "lena");
    let approvers = api.approvers(project, 3).await.unwrap();
    assert_eq!(approvers.len(), 1);
    assert_eq!(approvers[0].username, "lena");
    // The approval's time is on its system note.
    let notes = api.notes(project, 3).await.unwrap();
    assert!(notes.iter().any(|n| n.system
        && n.author.username == "lena"
        && n.body.contains("approved this merge request")));

    // Files at a commit, with a space and a slash in the path; a missing one is `None`.
    let head = api
        .merge_request(project, 3)
        .await
        .unwrap()
        .diff_refs
        .unwrap()
        .head_sha;
    assert_eq!(
        api.raw_file(project, "models/fraud card.md", &head)
            .await
            .unwrap()
            .as_deref(),
        Some("# Card\n")
    );
    assert_eq!(api.raw_file(project, "nope.md", &head).await.unwrap(), None);
    assert_eq!(
        api.raw_file(project, ".governance.toml", BASE)
            .await
            .unwrap()
            .as_deref(),
        Some("version = 1\n")
    );
    let tree = api.tree(project, &head, 1_000).await.unwrap();
    assert!(
        tree.iter()
            .any(|e| e.path == "models/fraud card.md" && e.kind == "blob")
    );

    // Access: a reporter cannot sign off; a developer through a shared group can; a stranger
    // is no member.
    let stranger = fake.add_user("mallory");
    assert_eq!(
        api.project_access(project, rita).await.unwrap(),
        Some(REPORTER)
    );
    assert_eq!(
        api.project_access(project, lena).await.unwrap(),
        Some(DEVELOPER)
    );
    assert_eq!(api.project_access(project, stranger).await.unwrap(), None);
    assert_eq!(
        api.group_access("ml/reviewers", lena).await.unwrap(),
        Some(DEVELOPER)
    );
    assert_eq!(api.group_access("ml/reviewers", rita).await.unwrap(), None);

    // Commit statuses: pending, then failed, under tollgate's name.
    api.set_status(
        project,
        &head,
        StatusState::Pending,
        "tollgate",
        "Evaluating",
        None,
    )
    .await
    .unwrap();
    api.set_status(
        project,
        &head,
        StatusState::Failed,
        "tollgate",
        &"x".repeat(400),
        Some("https://tollgate.example/pr/gitlab/ml/fraud-model/3"),
    )
    .await
    .unwrap();
    assert_eq!(
        fake.status_history(PROJECT, &head, "tollgate"),
        ["pending", "failed"]
    );
}

#[tokio::test]
async fn errors_say_what_gitlab_answered_and_rate_limits_how_long_to_wait() {
    let (fake, api, project) = setup().await;
    let missing = api.merge_request(project, 99).await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    assert!(missing.to_string().contains("404"), "{missing}");
    assert_eq!(missing.rate_limit_wait(), None);

    fake.fail_next("GET", "/projects", 429, 1, Some(12));
    let limited = api.merge_request(project, 99).await.unwrap_err();
    assert_eq!(
        limited.rate_limit_wait(),
        Some(std::time::Duration::from_secs(12)),
        "{limited}"
    );

    fake.fail_next("GET", "/projects", 502, 1, None);
    let failed = api.merge_request(project, 99).await.unwrap_err();
    assert!(
        matches!(failed, GitlabError::Status { status: 502, .. }),
        "{failed}"
    );
    assert_eq!(failed.rate_limit_wait(), None);

    // A revoked token is refused, and the token never appears in the error.
    fake.revoke_tokens("tollgate-bot");
    let refused = api.current_user().await.unwrap_err();
    assert!(
        matches!(refused, GitlabError::Status { status: 401, .. }),
        "{refused}"
    );
}

#[tokio::test]
async fn one_sticky_note_by_marker_and_author_and_statuses_that_never_lie() {
    use tollgate::forge::gitlab::publish::{NoteAction, publish_status, upsert_note};
    use tollgate::render::COMMENT_MARKER;

    let (fake, api, project) = setup().await;
    fake.open_mr(
        PROJECT,
        MrSpec {
            iid: 5,
            base_sha: BASE.to_owned(),
            commits: vec![CommitSpec::new("head5", "alice", files(1))],
            ..MrSpec::default()
        },
    );
    let bot = api.current_user().await.unwrap();
    // Someone copies the marker into their own note: it is neither edited nor taken as ours.
    fake.add_note(
        PROJECT,
        5,
        "mallory",
        &format!("{COMMENT_MARKER}\nAll approved!"),
    );
    let body = format!("{COMMENT_MARKER}\n## tollgate\nWaiting for sign-offs.\n/approve\n");
    let notes = api.notes(project, 5).await.unwrap();
    assert_eq!(
        upsert_note(&api, project, 5, &bot, &body, &notes)
            .await
            .unwrap(),
        NoteAction::Created
    );
    let notes = api.notes(project, 5).await.unwrap();
    assert_eq!(
        upsert_note(&api, project, 5, &bot, &body, &notes)
            .await
            .unwrap(),
        NoteAction::Unchanged
    );
    let updated = body.replace("Waiting", "Still waiting");
    assert_eq!(
        upsert_note(&api, project, 5, &bot, &updated, &notes)
            .await
            .unwrap(),
        NoteAction::Updated
    );
    let notes = fake.notes(PROJECT, 5);
    let ours: Vec<_> = notes
        .iter()
        .filter(|n| n.author == "tollgate-bot")
        .collect();
    assert_eq!(ours.len(), 1, "{notes:#?}");
    assert!(ours[0].body.contains("Still waiting"));
    // The quoted `/approve` is escaped: no quick action runs as tollgate.
    assert!(ours[0].body.contains("\\/approve"));
    assert!(fake.approvals(PROJECT, 5).is_empty());
    let mallory = notes.iter().find(|n| n.author == "mallory").unwrap();
    assert!(mallory.body.ends_with("All approved!"));

    // "Evaluating" twice is fine (GitLab refuses pending over pending; that is not an error).
    let head = api
        .merge_request(project, 5)
        .await
        .unwrap()
        .diff_refs
        .unwrap()
        .head_sha;
    for _ in 0..2 {
        publish_status(
            &api,
            project,
            &head,
            StatusState::Pending,
            "tollgate",
            "Evaluating",
            None,
        )
        .await
        .unwrap();
    }
    publish_status(
        &api,
        project,
        &head,
        StatusState::Failed,
        "tollgate",
        "High risk",
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        fake.status_history(PROJECT, &head, "tollgate"),
        ["pending", "failed"]
    );
}
