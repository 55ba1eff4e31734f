//! GitLab webhook payloads → [`Event`].
//!
//! The event comes from `X-Gitlab-Event` (`Merge Request Hook`, `Note Hook`, …). GitLab's
//! payloads have changed shape over the years (the 2017 approval payloads lack `user.id`,
//! `event_type` and `reviewers`); only fields present in every version are required.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::ParseError;
use crate::event::{
    Author, ChangeAction, ChangeClosed, ChangeNumber, ChangeRef, ChangeUpdate, CommentEvent,
    CommitSha, Event, Forge, IssueClosed, Login, Repo, RepoName, ReviewAction, ReviewEvent,
    ReviewState, User,
};

/// Turns one verified GitLab delivery into an [`Event`].
pub fn parse(event_name: &str, body: &[u8]) -> Result<Event, ParseError> {
    // Parse once as JSON so that malformed bodies are refused whatever the event.
    let _: serde_json::Value = super::parse_json(body)?;
    match event_name {
        "Merge Request Hook" => merge_request(body),
        "Note Hook" => note(body),
        "Issue Hook" => issue(body),
        "System Hook" => Ok(Event::ignored(
            "system hooks are not supported: add tollgate as a project or group webhook",
        )),
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
struct Project {
    id: u64,
    path_with_namespace: String,
}

fn repo(project: Project) -> Repo {
    Repo {
        forge: Forge::GitLab,
        name: RepoName::new(project.path_with_namespace),
        id: project.id,
        installation: None,
    }
}

#[derive(Deserialize)]
struct Account {
    username: String,
    id: Option<u64>,
}

impl From<Account> for User {
    fn from(account: Account) -> Self {
        User {
            login: Login::new(account.username),
            id: account.id,
        }
    }
}

#[derive(Deserialize)]
struct Commit {
    id: String,
}

#[derive(Deserialize)]
struct DiffRefs {
    base_sha: Option<String>,
}

#[derive(Deserialize)]
struct Label {
    title: String,
}

#[derive(Deserialize)]
struct ActionOnly {
    object_attributes: ActionAttributes,
}

#[derive(Deserialize)]
struct ActionAttributes {
    action: Option<String>,
    iid: Option<u64>,
}

#[derive(Deserialize)]
struct MergeRequestAttributes {
    iid: u64,
    source_branch: String,
    target_branch: String,
    author_id: u64,
    title: String,
    description: Option<String>,
    last_commit: Commit,
    oldrev: Option<String>,
    diff_refs: Option<DiffRefs>,
    #[serde(default)]
    draft: Option<bool>,
    #[serde(default)]
    work_in_progress: Option<bool>,
    updated_at: Option<String>,
}

#[derive(Deserialize)]
struct MergeRequestPayload {
    user: Account,
    project: Project,
    object_attributes: MergeRequestAttributes,
    #[serde(default)]
    labels: Vec<Label>,
    #[serde(default)]
    changes: Option<MergeRequestChanges>,
}

#[derive(Deserialize)]
struct MergeRequestChanges {
    target_branch: Option<Previous>,
}

#[derive(Deserialize)]
struct Previous {
    previous: Option<String>,
}

fn merge_request(body: &[u8]) -> Result<Event, ParseError> {
    let head: ActionOnly = shape("Merge Request Hook", body)?;
    let Some(action) = head.object_attributes.action else {
        return Ok(Event::ignored("merge request hook without an action"));
    };
    match action.as_str() {
        "open" | "reopen" | "update" => merge_request_update(&action, body),
        "approved" | "approval" => merge_request_approval(ReviewAction::Submitted, body),
        "unapproved" | "unapproval" => merge_request_approval(ReviewAction::Dismissed, body),
        "merge" | "close" => merge_request_closed(&action, head.object_attributes.iid, body),
        other => Ok(Event::ignored(format!(
            "merge request action `{other}` does not affect governance"
        ))),
    }
}

fn merge_request_update(action: &str, body: &[u8]) -> Result<Event, ParseError> {
    let payload: MergeRequestPayload = shape("Merge Request Hook", body)?;
    let mr = payload.object_attributes;
    let retargeted_from = payload
        .changes
        .and_then(|c| c.target_branch)
        .and_then(|t| t.previous);
    let action = match (action, retargeted_from) {
        ("open", _) => ChangeAction::Opened,
        ("reopen", _) => ChangeAction::Reopened,
        (_, Some(from)) => ChangeAction::Retargeted { from },
        // `oldrev` is present exactly when the update pushed new commits.
        _ if mr.oldrev.is_some() => ChangeAction::Synchronized,
        _ => ChangeAction::Edited,
    };
    Ok(Event::ChangeUpdated(ChangeUpdate {
        change: ChangeRef {
            repo: repo(payload.project),
            number: ChangeNumber(mr.iid),
        },
        action,
        head_ref: mr.source_branch,
        head_sha: CommitSha::new(mr.last_commit.id),
        base_ref: mr.target_branch,
        base_sha: mr.diff_refs.and_then(|d| d.base_sha).map(CommitSha::new),
        author: Author::GitLabUserId(mr.author_id),
        title: mr.title,
        body: mr.description.unwrap_or_default(),
        labels: payload.labels.into_iter().map(|l| l.title).collect(),
        draft: mr.draft.or(mr.work_in_progress).unwrap_or(false),
    }))
}

fn merge_request_approval(action: ReviewAction, body: &[u8]) -> Result<Event, ParseError> {
    let payload: MergeRequestPayload = shape("Merge Request Hook", body)?;
    let mr = payload.object_attributes;
    let state = match action {
        ReviewAction::Submitted => ReviewState::Approved,
        ReviewAction::Edited | ReviewAction::Dismissed => ReviewState::Dismissed,
    };
    Ok(Event::Review(ReviewEvent {
        change: ChangeRef {
            repo: repo(payload.project),
            number: ChangeNumber(mr.iid),
        },
        action,
        reviewer: payload.user.into(),
        state,
        commit: Some(CommitSha::new(mr.last_commit.id)),
        submitted_at: mr.updated_at,
    }))
}

#[derive(Deserialize)]
struct ClosedPayload {
    project: Project,
}

fn merge_request_closed(action: &str, iid: Option<u64>, body: &[u8]) -> Result<Event, ParseError> {
    // Closing changes no gate: a payload that does not say which merge request closed is
    // ignored rather than refused (one real capture has keys with trailing spaces).
    let Some(iid) = iid else {
        return Ok(Event::ignored(format!(
            "merge request `{action}` event without an iid: nothing to act on"
        )));
    };
    let payload: ClosedPayload = shape("Merge Request Hook", body)?;
    Ok(Event::ChangeClosed(ChangeClosed {
        change: ChangeRef {
            repo: repo(payload.project),
            number: ChangeNumber(iid),
        },
        merged: action == "merge",
    }))
}

#[derive(Deserialize)]
struct NoteAttributes {
    id: u64,
    note: String,
    noteable_type: String,
    action: Option<String>,
    #[serde(default)]
    system: bool,
}

#[derive(Deserialize)]
struct NotedMergeRequest {
    iid: u64,
}

#[derive(Deserialize)]
struct NotePayload {
    user: Account,
    project: Project,
    object_attributes: NoteAttributes,
    merge_request: Option<NotedMergeRequest>,
}

fn note(body: &[u8]) -> Result<Event, ParseError> {
    let payload: NotePayload = shape("Note Hook", body)?;
    let note = payload.object_attributes;
    if note.noteable_type != "MergeRequest" {
        return Ok(Event::ignored(format!(
            "note on a {}, not on a merge request",
            note.noteable_type
        )));
    }
    // Older GitLab sent note hooks only on creation and without an action; newer ones send
    // `update` too, and an edited note never carries a command.
    if let Some(action) = note.action.as_deref().filter(|a| *a != "create") {
        return Ok(Event::ignored(format!(
            "note action `{action}`: only newly created notes carry commands"
        )));
    }
    if note.system {
        return Ok(Event::ignored("system note written by GitLab itself"));
    }
    let Some(mr) = payload.merge_request else {
        return Err(ParseError::Shape {
            event: "Note Hook".to_owned(),
            message: "note on a merge request without a `merge_request` object".to_owned(),
        });
    };
    Ok(Event::CommentCreated(CommentEvent {
        change: ChangeRef {
            repo: repo(payload.project),
            number: ChangeNumber(mr.iid),
        },
        comment_id: note.id,
        author: payload.user.into(),
        body: note.note,
    }))
}

#[derive(Deserialize)]
struct IssueAttributes {
    iid: u64,
    action: Option<String>,
}

#[derive(Deserialize)]
struct IssuePayload {
    object_attributes: IssueAttributes,
    user: Account,
    project: Project,
}

/// An `Issue Hook` delivery: a closed issue may be a post-incident review being done.
fn issue(body: &[u8]) -> Result<Event, ParseError> {
    let payload: IssuePayload = shape("Issue Hook", body)?;
    match payload.object_attributes.action.as_deref() {
        Some("close") => Ok(Event::IssueClosed(IssueClosed {
            repo: repo(payload.project),
            number: payload.object_attributes.iid,
            closed_by: payload.user.into(),
        })),
        other => Ok(Event::ignored(format!(
            "issue action `{}`: only closing an issue is acted on",
            other.unwrap_or("none")
        ))),
    }
}

#[cfg(test)]
mod issue_tests {
    use super::*;

    fn payload(action: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "object_kind": "issue", "event_type": "issue",
            "user": {"id": 7, "username": "lena", "name": "Lena"},
            "project": {"id": 15, "path_with_namespace": "acme/fraud-model"},
            "object_attributes": {"iid": 23, "action": action, "state": "closed"},
        }))
        .unwrap()
    }

    #[test]
    fn a_closed_issue_names_the_project_the_issue_and_who_closed_it() {
        let event = parse("Issue Hook", &payload("close")).unwrap();
        let Event::IssueClosed(closed) = event else {
            panic!("{event:?}");
        };
        assert_eq!(closed.number, 23);
        assert_eq!(closed.repo.id, 15);
        assert_eq!(closed.repo.name.as_str(), "acme/fraud-model");
        assert_eq!(closed.closed_by.login.as_str(), "lena");
    }

    #[test]
    fn other_issue_actions_are_ignored() {
        for action in ["open", "update", "reopen"] {
            let event = parse("Issue Hook", &payload(action)).unwrap();
            assert!(
                matches!(event, Event::Ignored { .. }),
                "{action}: {event:?}"
            );
        }
    }
}
