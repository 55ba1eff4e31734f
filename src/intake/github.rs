//! GitHub webhook payloads → [`Event`].
//!
//! Payloads are read into thin structs of our own holding only the fields tollgate uses
//! (octocrab's webhook models are incomplete and would tie intake to its release cycle).
//! The action is read first, so that an action tollgate ignores never fails on a field it
//! would not have used.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::ParseError;
use crate::event::{
    Author, ChangeAction, ChangeClosed, ChangeNumber, ChangeRef, ChangeUpdate, CheckRerequest,
    CommentEvent, CommitSha, DeploymentRequest, Event, Forge, InstallationId, IssueClosed, Login,
    Repo, RepoName, ReviewAction, ReviewEvent, ReviewState, User,
};

/// Turns one verified GitHub delivery into an [`Event`].
pub fn parse(event_name: &str, body: &[u8]) -> Result<Event, ParseError> {
    if event_name == "pull_request" {
        // The most frequent and largest payload (tens of KB): read in one pass.
        return pull_request_event(body);
    }
    let envelope: Envelope = super::parse_json(body)?;
    let action = envelope.action.as_deref().unwrap_or("");
    match event_name {
        "ping" => Ok(Event::Ping),
        "pull_request_review" => review(action, body),
        "issue_comment" => issue_comment(action, body),
        "issues" => issues(action, body),
        "deployment_protection_rule" => deployment_protection_rule(action, body),
        "check_run" | "check_suite" => check_rerequest(event_name, action, body),
        other => Ok(Event::ignored(format!(
            "`{other}` events are not used by tollgate"
        ))),
    }
}

fn shape<T: DeserializeOwned>(event_name: &str, body: &[u8]) -> Result<T, ParseError> {
    serde_json::from_slice(body).map_err(|error| ParseError::Shape {
        event: event_name.to_owned(),
        message: error.to_string(),
    })
}

#[derive(Deserialize)]
struct Envelope {
    action: Option<String>,
}

#[derive(Deserialize)]
struct Account {
    login: String,
    id: Option<u64>,
}

impl From<Account> for User {
    fn from(account: Account) -> Self {
        User {
            login: Login::new(account.login),
            id: account.id,
        }
    }
}

#[derive(Deserialize)]
struct Repository {
    id: u64,
    full_name: String,
}

#[derive(Deserialize)]
struct Installation {
    id: u64,
}

fn repo(repository: Repository, installation: Option<Installation>) -> Repo {
    Repo {
        forge: Forge::GitHub,
        name: RepoName::new(repository.full_name),
        id: repository.id,
        installation: installation.map(|i| InstallationId(i.id)),
    }
}

#[derive(Deserialize)]
struct BranchRef {
    #[serde(rename = "ref")]
    name: String,
    sha: String,
}

#[derive(Deserialize)]
struct Label {
    name: String,
}

#[derive(Deserialize)]
struct PullRequest {
    number: u64,
    user: Account,
    head: BranchRef,
    base: BranchRef,
    #[serde(default)]
    labels: Vec<Label>,
    title: String,
    body: Option<String>,
    #[serde(default)]
    draft: bool,
    #[serde(default)]
    merged: bool,
}

#[derive(Deserialize)]
struct PullRequestPayload {
    action: Option<String>,
    pull_request: PullRequest,
    repository: Repository,
    installation: Option<Installation>,
    changes: Option<PullRequestChanges>,
}

#[derive(Deserialize)]
struct PullRequestChanges {
    base: Option<BaseChange>,
}

#[derive(Deserialize)]
struct BaseChange {
    #[serde(rename = "ref")]
    name: ChangedFrom,
}

#[derive(Deserialize)]
struct ChangedFrom {
    from: String,
}

/// A `pull_request` delivery, read in one pass with its action in the common case. A payload
/// that does not have the shape is read again for its action alone, so that an action tollgate
/// ignores never fails on a field it would not have used.
fn pull_request_event(body: &[u8]) -> Result<Event, ParseError> {
    let payload: PullRequestPayload = match serde_json::from_slice(body) {
        Ok(payload) => payload,
        Err(error) => {
            let envelope: Envelope = super::parse_json(body)?;
            let action = envelope.action.as_deref().unwrap_or("");
            return match change_action(action) {
                Some(_) => Err(ParseError::Shape {
                    event: "pull_request".to_owned(),
                    message: error.to_string(),
                }),
                None => Ok(ignored_pull_request_action(action)),
            };
        }
    };
    let action = payload.action.as_deref().unwrap_or("");
    let Some(action) = change_action(action) else {
        return Ok(ignored_pull_request_action(action));
    };
    let pr = payload.pull_request;
    let repo = repo(payload.repository, payload.installation);
    let number = ChangeNumber(pr.number);
    let action = match (action, payload.changes.and_then(|c| c.base)) {
        (None, _) => {
            return Ok(Event::ChangeClosed(ChangeClosed {
                change: ChangeRef { repo, number },
                merged: pr.merged,
            }));
        }
        // An `edited` delivery whose changes name a new base is a retarget: the result
        // computed for the old base must not carry over, so it gets its own action.
        (Some(ChangeAction::Edited), Some(base)) => ChangeAction::Retargeted {
            from: base.name.from,
        },
        (Some(action), _) => action,
    };
    Ok(Event::ChangeUpdated(ChangeUpdate {
        change: ChangeRef { repo, number },
        action,
        head_ref: pr.head.name,
        head_sha: CommitSha::new(pr.head.sha),
        base_ref: pr.base.name,
        base_sha: Some(CommitSha::new(pr.base.sha)),
        author: Author::User(pr.user.into()),
        title: pr.title,
        body: pr.body.unwrap_or_default(),
        labels: pr.labels.into_iter().map(|l| l.name).collect(),
        draft: pr.draft,
    }))
}

/// What a `pull_request` action means: `Some(Some(action))` for a change update,
/// `Some(None)` for `closed`, `None` for an action tollgate ignores.
fn change_action(action: &str) -> Option<Option<ChangeAction>> {
    Some(Some(match action {
        "opened" => ChangeAction::Opened,
        "reopened" => ChangeAction::Reopened,
        "synchronize" => ChangeAction::Synchronized,
        "edited" => ChangeAction::Edited,
        "labeled" => ChangeAction::Labeled,
        "unlabeled" => ChangeAction::Unlabeled,
        "ready_for_review" => ChangeAction::ReadyForReview,
        "closed" => return Some(None),
        _ => return None,
    }))
}

fn ignored_pull_request_action(action: &str) -> Event {
    Event::ignored(format!(
        "pull_request action `{action}` does not affect governance"
    ))
}

#[derive(Deserialize)]
struct Review {
    user: Account,
    state: String,
    commit_id: Option<String>,
    submitted_at: Option<String>,
}

#[derive(Deserialize)]
struct ReviewedPullRequest {
    number: u64,
}

#[derive(Deserialize)]
struct ReviewPayload {
    review: Review,
    pull_request: ReviewedPullRequest,
    repository: Repository,
    installation: Option<Installation>,
}

fn review(action: &str, body: &[u8]) -> Result<Event, ParseError> {
    let action = match action {
        "submitted" => ReviewAction::Submitted,
        "edited" => ReviewAction::Edited,
        "dismissed" => ReviewAction::Dismissed,
        other => {
            return Ok(Event::ignored(format!(
                "pull_request_review action `{other}` does not affect governance"
            )));
        }
    };
    let payload: ReviewPayload = shape("pull_request_review", body)?;
    // Webhooks spell states in lower case, the REST API in upper case; accept both.
    let state = match payload.review.state.to_ascii_lowercase().as_str() {
        "approved" => ReviewState::Approved,
        "changes_requested" => ReviewState::ChangesRequested,
        "commented" => ReviewState::Commented,
        "dismissed" => ReviewState::Dismissed,
        other => {
            return Ok(Event::ignored(format!(
                "review state `{other}` does not affect governance"
            )));
        }
    };
    Ok(Event::Review(ReviewEvent {
        change: ChangeRef {
            repo: repo(payload.repository, payload.installation),
            number: ChangeNumber(payload.pull_request.number),
        },
        action,
        reviewer: payload.review.user.into(),
        state,
        commit: payload.review.commit_id.map(CommitSha::new),
        submitted_at: payload.review.submitted_at,
    }))
}

#[derive(Deserialize)]
struct Issue {
    number: u64,
    /// Present only when the issue is a pull request.
    pull_request: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Comment {
    id: u64,
    user: Account,
    body: Option<String>,
}

#[derive(Deserialize)]
struct IssueCommentPayload {
    issue: Issue,
    comment: Comment,
    repository: Repository,
    installation: Option<Installation>,
}

fn issue_comment(action: &str, body: &[u8]) -> Result<Event, ParseError> {
    if action != "created" {
        // An edited comment may have been edited by someone other than its author: it never
        // carries a command.
        return Ok(Event::ignored(format!(
            "issue_comment action `{action}`: only newly created comments carry commands"
        )));
    }
    let payload: IssueCommentPayload = shape("issue_comment", body)?;
    if payload.issue.pull_request.is_none() {
        return Ok(Event::ignored("comment on an issue, not on a pull request"));
    }
    Ok(Event::CommentCreated(CommentEvent {
        change: ChangeRef {
            repo: repo(payload.repository, payload.installation),
            number: ChangeNumber(payload.issue.number),
        },
        comment_id: payload.comment.id,
        author: payload.comment.user.into(),
        body: payload.comment.body.unwrap_or_default(),
    }))
}

#[derive(Deserialize)]
struct IssuesPayload {
    issue: Issue,
    sender: Account,
    repository: Repository,
    installation: Option<Installation>,
}

/// An `issues` delivery: a closed issue may be a post-incident review being done.
fn issues(action: &str, body: &[u8]) -> Result<Event, ParseError> {
    if action != "closed" {
        return Ok(Event::ignored(format!(
            "issues action `{action}`: only closing an issue is acted on"
        )));
    }
    let payload: IssuesPayload = shape("issues", body)?;
    if payload.issue.pull_request.is_some() {
        return Ok(Event::ignored("a pull request, not an issue"));
    }
    Ok(Event::IssueClosed(IssueClosed {
        repo: repo(payload.repository, payload.installation),
        number: payload.issue.number,
        closed_by: payload.sender.into(),
    }))
}

#[derive(Deserialize)]
struct Deployment {
    id: u64,
    sha: String,
}

#[derive(Deserialize)]
struct DeploymentProtectionPayload {
    environment: String,
    deployment_callback_url: String,
    deployment: Option<Deployment>,
    repository: Repository,
    installation: Option<Installation>,
}

/// A `deployment_protection_rule` delivery: a deployment waits for tollgate's answer.
fn deployment_protection_rule(action: &str, body: &[u8]) -> Result<Event, ParseError> {
    if action != "requested" {
        return Ok(Event::ignored(format!(
            "deployment_protection_rule action `{action}`: only requests are answered"
        )));
    }
    let payload: DeploymentProtectionPayload = shape("deployment_protection_rule", body)?;
    Ok(Event::DeploymentRequested(DeploymentRequest {
        repo: repo(payload.repository, payload.installation),
        environment: payload.environment,
        deployment: payload.deployment.as_ref().map(|d| d.id),
        sha: payload.deployment.map(|d| CommitSha::new(d.sha)),
        callback_url: payload.deployment_callback_url,
    }))
}

#[derive(Deserialize)]
struct CheckPullRequest {
    number: u64,
}

#[derive(Deserialize)]
struct CheckRunOrSuite {
    head_sha: String,
    name: Option<String>,
    #[serde(default)]
    pull_requests: Vec<CheckPullRequest>,
}

#[derive(Deserialize)]
struct CheckPayload {
    #[serde(alias = "check_suite")]
    check_run: CheckRunOrSuite,
    repository: Repository,
    installation: Option<Installation>,
}

fn check_rerequest(event_name: &str, action: &str, body: &[u8]) -> Result<Event, ParseError> {
    if action != "rerequested" {
        return Ok(Event::ignored(format!(
            "{event_name} action `{action}`: only re-requests are acted on"
        )));
    }
    let payload: CheckPayload = shape(event_name, body)?;
    let check = payload.check_run;
    Ok(Event::CheckRerequested(CheckRerequest {
        repo: repo(payload.repository, payload.installation),
        head_sha: CommitSha::new(check.head_sha),
        // A suite re-request covers every check in it; only a run names one.
        check_name: if event_name == "check_run" {
            check.name
        } else {
            None
        },
        changes: check
            .pull_requests
            .into_iter()
            .map(|pr| ChangeNumber(pr.number))
            .collect(),
    }))
}

#[cfg(test)]
mod deployment_tests {
    use super::*;

    fn payload(action: &str, deployment: bool) -> Vec<u8> {
        let mut json = serde_json::json!({
            "action": action,
            "environment": "production",
            "event": "deployment",
            "deployment_callback_url": "https://api.github.com/repos/acme/ml/actions/runs/42/deployment_protection_rule",
            "repository": {"id": 9, "full_name": "acme/ml"},
            "installation": {"id": 77},
            "sender": {"login": "octocat", "id": 1},
        });
        if deployment {
            json["deployment"] = serde_json::json!({"id": 5, "sha": "abc123", "ref": "main"});
        }
        serde_json::to_vec(&json).unwrap()
    }

    #[test]
    fn a_protection_rule_request_names_the_environment_commit_and_callback() {
        let event = parse("deployment_protection_rule", &payload("requested", true)).unwrap();
        let Event::DeploymentRequested(request) = event else {
            panic!("{event:?}");
        };
        assert_eq!(request.environment, "production");
        assert_eq!(request.deployment, Some(5));
        assert_eq!(request.sha.as_ref().map(|s| s.as_str()), Some("abc123"));
        assert_eq!(request.repo.installation, Some(InstallationId(77)));
        assert!(
            request
                .callback_url
                .ends_with("/runs/42/deployment_protection_rule")
        );
        // The deployment is optional in GitHub's schema: the gate then rejects, naming why.
        let event = parse("deployment_protection_rule", &payload("requested", false)).unwrap();
        let Event::DeploymentRequested(request) = event else {
            panic!("{event:?}");
        };
        assert_eq!(request.sha, None);
    }

    #[test]
    fn other_protection_rule_actions_are_ignored() {
        let event = parse("deployment_protection_rule", &payload("answered", true)).unwrap();
        assert!(matches!(event, Event::Ignored { .. }), "{event:?}");
    }
}
