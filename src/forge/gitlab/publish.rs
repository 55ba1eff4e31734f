//! Publishing on GitLab: a commit status named by `TOLLGATE_CHECK_NAME` on the merge request's
//! head (so "pipelines must succeed" blocks the merge until it is `success`), and one sticky
//! note per merge request, found by marker *and* tollgate's own authorship, edited in place.

use super::api::{GitlabApi, GitlabError, Note, StatusState, UserRef};
use crate::forge::github::publish::Conclusion;
use crate::render::COMMENT_MARKER;

/// The status for a check conclusion. Anything but a pass is `failed`: a `pending` status
/// cannot be updated in place with another `pending` one (GitLab refuses the transition), and
/// a blocked merge request is not "still running".
pub fn status_state(conclusion: Conclusion) -> StatusState {
    match conclusion {
        Conclusion::Success => StatusState::Success,
        Conclusion::ActionRequired | Conclusion::Failure => StatusState::Failed,
    }
}

/// Sets tollgate's status on `sha`. "Evaluating" (`pending`) over a `pending` one is already
/// what it asks for: GitLab's refusal of that transition is not an error.
pub async fn publish_status(
    api: &GitlabApi,
    project: u64,
    sha: &str,
    state: StatusState,
    name: &str,
    description: &str,
    target_url: Option<&str>,
) -> Result<(), GitlabError> {
    match api
        .set_status(project, sha, state, name, description, target_url)
        .await
    {
        Err(GitlabError::Status {
            status: 400,
            message,
            ..
        }) if state == StatusState::Pending && message.contains("Cannot transition status") => {
            Ok(())
        }
        other => other,
    }
}

/// What happened to the sticky note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteAction {
    /// Written for the first time.
    Created,
    /// Edited in place.
    Updated,
    /// Already said the same; nothing sent.
    Unchanged,
}

/// Writes tollgate's note on a merge request: edits the one tollgate wrote (marker *and* its
/// own authorship: a copy of the marker by anyone else is ignored, never edited), or creates
/// it. The body is made inert first (see [`inert`]).
pub async fn upsert_note(
    api: &GitlabApi,
    project: u64,
    iid: u64,
    bot: &UserRef,
    body: &str,
    existing: &[Note],
) -> Result<NoteAction, GitlabError> {
    let body = inert(body);
    let ours = existing
        .iter()
        .find(|n| !n.system && n.author.id == bot.id && n.body.contains(COMMENT_MARKER));
    match ours {
        Some(note) if note.body == body => Ok(NoteAction::Unchanged),
        Some(note) => {
            api.edit_note(project, iid, note.id, &body).await?;
            Ok(NoteAction::Updated)
        }
        None => {
            api.create_note(project, iid, &body).await?;
            Ok(NoteAction::Created)
        }
    }
}

/// Replies to every refused command that has no reply yet, saying why (and so who may), as
/// on GitHub.
pub async fn reply_to_refused_commands(
    api: &GitlabApi,
    project: u64,
    iid: u64,
    bot: &UserRef,
    commands: &[crate::policy::decision::CommandRecord],
    existing: &[Note],
) -> Result<(), GitlabError> {
    let posted: Vec<crate::render::Posted<'_>> = existing
        .iter()
        .filter(|n| !n.system)
        .map(|n| crate::render::Posted {
            id: n.id,
            author: &n.author.username,
            body: &n.body,
            at: n.created_at,
        })
        .collect();
    let own = |author: &str| author == bot.username;
    for body in crate::render::refusal_replies(commands, &posted, own) {
        api.create_note(project, iid, &inert(&body)).await?;
    }
    Ok(())
}

/// Makes a note inert: GitLab runs a line that starts with `/` as a quick action (`/approve`,
/// `/merge`) *as the note's author* — tollgate — and the note quotes text others wrote (the
/// description's sections, commands, reasons). Such lines get a Markdown escape, which renders
/// the same and is no quick action.
pub fn inert(body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 16);
    for line in body.split_inclusive('\n') {
        let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
        if line[indent..].starts_with('/') {
            out.push_str(&line[..indent]);
            out.push('\\');
            out.push_str(&line[indent..]);
        } else {
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_line_of_a_note_can_be_a_quick_action() {
        let body =
            "<!-- tollgate -->\n/approve\n  /merge now\ntext with /merge inside\n\t/unassign @x";
        let made = inert(body);
        assert_eq!(
            made,
            "<!-- tollgate -->\n\\/approve\n  \\/merge now\ntext with /merge inside\n\t\\/unassign @x"
        );
        assert!(
            made.lines()
                .all(|l| !l.trim_start_matches([' ', '\t']).starts_with('/'))
        );
        // Idempotent: an escaped line is not escaped again.
        assert_eq!(inert(&made), made);
    }

    #[test]
    fn only_a_pass_is_success() {
        assert_eq!(status_state(Conclusion::Success), StatusState::Success);
        assert_eq!(
            status_state(Conclusion::ActionRequired),
            StatusState::Failed
        );
        assert_eq!(status_state(Conclusion::Failure), StatusState::Failed);
    }
}
