//! Publishing on GitHub: one check run per head commit, updated in place (App mode), or a
//! commit status of the same name (token mode: GitHub lets only Apps create check runs); and
//! one sticky comment per pull request, found by marker *and* tollgate's own authorship.

use octocrab::Octocrab;
use serde::{Deserialize, Serialize};

use super::api::{self, ApiError, Identity};
use super::facts::ExistingComment;
use crate::policy::decision::{BlockReason, Decision, Outcome, Signal};
use crate::render::COMMENT_MARKER;

/// GitHub accepts at most this many annotations per check run request.
pub const ANNOTATIONS_PER_REQUEST: usize = 50;
/// GitHub's limit on a commit status description.
const STATUS_DESCRIPTION_MAX: usize = 140;

/// What the check says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Conclusion {
    /// The change may merge.
    Success,
    /// People must act: sign-offs or evidence are missing.
    ActionRequired,
    /// Blocked by a veto, an invalid policy, or tollgate could not evaluate.
    Failure,
}

impl Conclusion {
    /// For a decision. Never success unless the decision allows the merge.
    pub fn of(decision: &Decision) -> Conclusion {
        match &decision.outcome {
            Outcome::Passed | Outcome::Bypassed { .. } | Outcome::NotGoverned { .. } => {
                Conclusion::Success
            }
            Outcome::Waiting { .. } => Conclusion::ActionRequired,
            Outcome::Blocked { reasons }
                if reasons
                    .iter()
                    .any(|r| matches!(r, BlockReason::Veto { .. })) =>
            {
                Conclusion::Failure
            }
            Outcome::Blocked { .. } => Conclusion::ActionRequired,
        }
    }

    fn status_state(self) -> &'static str {
        match self {
            Conclusion::Success => "success",
            Conclusion::ActionRequired => "pending",
            Conclusion::Failure => "failure",
        }
    }
}

/// One line-level note on a file, shown in the PR's "Files changed" tab.
#[derive(Debug, Clone, Serialize)]
pub struct Annotation {
    path: String,
    start_line: u32,
    end_line: u32,
    annotation_level: &'static str,
    title: String,
    message: String,
}

/// Annotations on the files that raised the tier.
pub fn annotations(decision: &Decision) -> Vec<Annotation> {
    decision
        .reasons
        .iter()
        .filter_map(|r| {
            let (path, message) = match &r.signal {
                Signal::Kind { path, kind, .. } => {
                    (path, format!("{kind} change: {} risk", r.tier))
                }
                Signal::Key { path, detail, .. } => (path, format!("{detail}: {} risk", r.tier)),
                Signal::SensitivePath { path } => {
                    (path, format!("sensitive path: {} risk", r.tier))
                }
                _ => return None,
            };
            Some(Annotation {
                path: path.clone(),
                start_line: 1,
                end_line: 1,
                annotation_level: if r.tier == crate::policy::RiskTier::High {
                    "warning"
                } else {
                    "notice"
                },
                title: "tollgate: risk signal".to_owned(),
                message,
            })
        })
        .collect()
}

/// What to publish for one head commit.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// The conclusion; `None` publishes "in progress" (e.g. while re-evaluating after a retarget).
    pub conclusion: Option<Conclusion>,
    /// Title (the tier and what is missing).
    pub title: String,
    /// Markdown summary.
    pub summary: String,
    /// Annotations (sent in batches of 50).
    pub annotations: Vec<Annotation>,
    /// Where "Details" leads.
    pub details_url: Option<String>,
}

#[derive(Deserialize)]
struct CheckRuns {
    check_runs: Vec<CheckRun>,
}

#[derive(Deserialize)]
struct CheckRun {
    id: u64,
    app: Option<AppRef>,
}

#[derive(Deserialize)]
struct AppRef {
    id: u64,
}

#[derive(Serialize)]
struct Output<'a> {
    title: &'a str,
    summary: &'a str,
    annotations: &'a [Annotation],
}

/// Publishes the report on `head_sha` under `name`: updates tollgate's existing check run for
/// that commit, or creates it (App mode); posts a commit status (token mode).
///
/// `known_run` is the id of tollgate's run for this commit when the caller remembers it (saves
/// listing the commit's runs); the id of the run written is returned (None for a status).
pub async fn publish_check(
    client: &Octocrab,
    repo: &str,
    identity: &Identity,
    name: &str,
    head_sha: &str,
    report: &CheckReport,
    known_run: Option<u64>,
) -> Result<Option<u64>, ApiError> {
    let Some(app_id) = identity.app_id else {
        post_status(client, repo, name, head_sha, report).await?;
        return Ok(None);
    };
    let ours = match known_run {
        Some(id) => Some(id),
        None => find_run(client, repo, app_id, name, head_sha).await?,
    };
    let mut batches = report.annotations.chunks(ANNOTATIONS_PER_REQUEST);
    let first = batches.next().unwrap_or(&[]);
    let mut body = serde_json::json!({
        "name": name,
        "output": Output { title: &report.title, summary: &report.summary, annotations: first },
    });
    match report.conclusion {
        Some(conclusion) => {
            body["status"] = "completed".into();
            body["conclusion"] = serde_json::to_value(conclusion).unwrap_or_default();
        }
        None => body["status"] = "in_progress".into(),
    }
    if let Some(url) = &report.details_url {
        body["details_url"] = url.clone().into();
    }
    let id = match ours {
        Some(id) => {
            let _: serde_json::Value = client
                .patch(format!("/repos/{repo}/check-runs/{id}"), Some(&body))
                .await?;
            id
        }
        None => {
            body["head_sha"] = head_sha.into();
            let created: CheckRun = client
                .post(format!("/repos/{repo}/check-runs"), Some(&body))
                .await?;
            created.id
        }
    };
    for batch in batches {
        let more = serde_json::json!({
            "output": Output { title: &report.title, summary: &report.summary, annotations: batch },
        });
        let _: serde_json::Value = client
            .patch(format!("/repos/{repo}/check-runs/{id}"), Some(&more))
            .await?;
    }
    Ok(Some(id))
}

/// tollgate's run for a commit, if there is one. Only a run created by this App is ours:
/// anyone can name a check run `tollgate`.
async fn find_run(
    client: &Octocrab,
    repo: &str,
    app_id: u64,
    name: &str,
    head_sha: &str,
) -> Result<Option<u64>, ApiError> {
    let existing: CheckRuns = client
        .get(
            format!(
                "/repos/{repo}/commits/{head_sha}/check-runs?check_name={}&app_id={app_id}",
                api::encode_component(name)
            ),
            None::<&()>,
        )
        .await?;
    Ok(existing
        .check_runs
        .iter()
        .find(|r| r.app.as_ref().is_some_and(|a| a.id == app_id))
        .map(|r| r.id))
}

async fn post_status(
    client: &Octocrab,
    repo: &str,
    name: &str,
    head_sha: &str,
    report: &CheckReport,
) -> Result<(), ApiError> {
    let state = report
        .conclusion
        .map_or("pending", Conclusion::status_state);
    let description: String = report.title.chars().take(STATUS_DESCRIPTION_MAX).collect();
    let mut body =
        serde_json::json!({ "state": state, "context": name, "description": description });
    if let Some(url) = &report.details_url {
        body["target_url"] = url.clone().into();
    }
    let _: serde_json::Value = client
        .post(format!("/repos/{repo}/statuses/{head_sha}"), Some(&body))
        .await?;
    Ok(())
}

/// What happened to the sticky comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommentAction {
    /// Posted for the first time.
    Created,
    /// Edited in place.
    Updated,
    /// Already said exactly this.
    Unchanged,
}

/// Creates or edits the sticky comment. Only a comment carrying the marker *and* written by
/// tollgate's own identity is tollgate's: a copy of the marker by anyone else is ignored.
pub async fn upsert_comment(
    client: &Octocrab,
    repo: &str,
    number: u64,
    identity: &Identity,
    body: &str,
    existing: &[ExistingComment],
) -> Result<CommentAction, ApiError> {
    let ours = existing.iter().find(|c| {
        c.author.eq_ignore_ascii_case(&identity.login) && c.body.contains(COMMENT_MARKER)
    });
    let payload = serde_json::json!({ "body": body });
    match ours {
        Some(comment) if comment.body == body => Ok(CommentAction::Unchanged),
        Some(comment) => {
            let _: serde_json::Value = client
                .patch(
                    format!("/repos/{repo}/issues/comments/{}", comment.id),
                    Some(&payload),
                )
                .await?;
            Ok(CommentAction::Updated)
        }
        None => {
            let _: serde_json::Value = client
                .post(
                    format!("/repos/{repo}/issues/{number}/comments"),
                    Some(&payload),
                )
                .await?;
            Ok(CommentAction::Created)
        }
    }
}

/// Replies to every refused command that has no reply yet, saying why (and so who may).
pub async fn reply_to_refused_commands(
    client: &Octocrab,
    repo: &str,
    number: u64,
    identity: &Identity,
    commands: &[crate::policy::decision::CommandRecord],
    existing: &[ExistingComment],
) -> Result<(), ApiError> {
    let posted: Vec<crate::render::Posted<'_>> = existing
        .iter()
        .map(|c| crate::render::Posted {
            id: c.id,
            author: &c.author,
            body: &c.body,
            at: c.at,
        })
        .collect();
    let own = |author: &str| author.eq_ignore_ascii_case(&identity.login);
    for body in crate::render::refusal_replies(commands, &posted, own) {
        let _: serde_json::Value = client
            .post(
                format!("/repos/{repo}/issues/{number}/comments"),
                Some(&serde_json::json!({ "body": body })),
            )
            .await?;
    }
    Ok(())
}
