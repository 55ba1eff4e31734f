//! Gathering the facts of one merge request from GitLab: the changed files, approvals (who,
//! when, and what was pushed after), notes, the files the policy reads, and who may sign off.
//!
//! Times come from GitLab, never from git: an approval's time is its system note's, and what
//! was pushed after it is judged by the merge request's diff versions (one per push, dated by
//! GitLab), since commit dates are whatever the committer wrote.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use super::api::{DEVELOPER, GitlabApi, GitlabError, MergeRequest, Note, UserRef, Version};
use crate::forge::plan;
use crate::policy::Policy;
use crate::policy::facts::{ChangeFacts, ChangedFile, Comment, FileStatus, Review, ReviewVerdict};

/// The most changed files read (GitLab itself stops listing diffs of huge merge requests).
pub const MAX_LISTED_FILES: usize = 3_000;
/// The most commits read.
pub const MAX_LISTED_COMMITS: usize = 250;
/// The system note GitLab writes when someone approves.
const APPROVED_NOTE: &str = "approved this merge request";

/// Why facts could not be gathered. Every variant ends in a non-success status.
#[derive(Debug, thiserror::Error)]
pub enum GatherError {
    /// GitLab could not be asked.
    #[error(transparent)]
    Api(#[from] GitlabError),
    /// GitLab has not computed the merge request's diff yet (it does so in the background).
    #[error("GitLab has not computed the merge request's diff yet")]
    DiffNotReady,
    /// More files than tollgate reads: it cannot judge a change it cannot see.
    #[error(
        "the merge request changes more than {MAX_LISTED_FILES} files; tollgate cannot judge a change it cannot see. Split the merge request."
    )]
    TooManyFiles,
    /// More commits than tollgate reads.
    #[error(
        "the merge request has more than {MAX_LISTED_COMMITS} commits; tollgate cannot tell what each approval saw. Squash or split it."
    )]
    TooManyCommits,
}

/// What [`gather`] found.
#[derive(Debug, Clone)]
pub struct Gathered {
    /// The facts for the engine.
    pub facts: ChangeFacts,
    /// Every note on the merge request, tollgate's own and GitLab's system notes included.
    pub notes: Vec<Note>,
}

/// Gathers the facts of `mr` (in `project`) under `policy`; `bot` is tollgate's own user,
/// whose notes are never read as commands. `granted` is a command tollgate holds on someone's
/// behalf (a rollback's bypass of its revert), read with theirs.
pub async fn gather(
    api: &GitlabApi,
    project: u64,
    mr: &MergeRequest,
    policy: &Policy,
    bot: &UserRef,
    now: DateTime<Utc>,
    granted: Option<Comment>,
) -> Result<Gathered, GatherError> {
    let refs = mr.diff_refs.as_ref().ok_or(GatherError::DiffNotReady)?;
    let iid = mr.iid;
    let diffs = api.diffs(project, iid, MAX_LISTED_FILES + 1).await?;
    if diffs.len() > MAX_LISTED_FILES {
        return Err(GatherError::TooManyFiles);
    }
    let commits = api.commits(project, iid, MAX_LISTED_COMMITS + 1).await?;
    if commits.len() > MAX_LISTED_COMMITS {
        return Err(GatherError::TooManyCommits);
    }
    let versions = api.versions(project, iid).await?;
    let notes = api.notes(project, iid).await?;
    let approvers = api.approvers(project, iid).await?;

    let files: Vec<ChangedFile> = diffs
        .iter()
        .map(|d| ChangedFile {
            path: d.new_path.clone(),
            status: if d.new_file {
                FileStatus::Added
            } else if d.deleted_file {
                FileStatus::Removed
            } else if d.renamed_file {
                FileStatus::Renamed
            } else {
                FileStatus::Modified
            },
            previous_path: d.renamed_file.then(|| d.old_path.clone()),
            additions: 0,
            deletions: 0,
        })
        .collect();
    let head = refs.head_sha.clone();
    let mut facts = ChangeFacts {
        author: mr.author.username.clone(),
        base_ref: mr.target_branch.clone(),
        base_sha: refs.base_sha.clone(),
        head_ref: mr.source_branch.clone(),
        head_sha: head.clone(),
        files,
        labels: mr.labels.clone(),
        body: mr.description.clone().unwrap_or_default(),
        base_contents: BTreeMap::new(),
        head_contents: BTreeMap::new(),
        head_paths: BTreeSet::new(),
        reviews: Vec::new(),
        comments: Vec::new(),
        commit_authors: contributors(mr, &notes),
        teams: BTreeMap::new(),
        write_access: BTreeSet::new(),
        now,
        merged: false,
        overdue_reviews: Vec::new(),
    };
    let in_change: BTreeSet<&str> = commits.iter().map(|c| c.id.as_str()).collect();
    facts.reviews = approvals(
        api, project, &approvers, &notes, &versions, &in_change, &head,
    )
    .await?;
    facts.comments = comments(&notes, &versions, &head, bot);
    contents(api, project, policy, &mut facts).await?;
    // Ids of everyone who wrote a note or approved, to look their access up.
    let mut ids: HashMap<String, u64> = approvers
        .iter()
        .map(|u| (u.username.clone(), u.id))
        .collect();
    ids.extend(
        notes
            .iter()
            .map(|n| (n.author.username.clone(), n.author.id)),
    );
    if let Some(granted) = granted {
        // Its author wrote on the rolled-back merge request, not this one: find their id.
        if !ids.contains_key(&granted.author)
            && let Some(user) = api.user_named(&granted.author).await?
        {
            ids.insert(user.username, user.id);
        }
        let at = facts.comments.partition_point(|c| c.at <= granted.at);
        facts.comments.insert(at, granted);
    }
    people(api, project, policy, &ids, &mut facts).await?;
    Ok(Gathered { facts, notes })
}

/// Who built the change: the merge request's author and everyone who pushed to it (GitLab's
/// "added N commits" system note is the pusher's). Git's author and committer names are
/// whatever the committer wrote, so they are not taken as anyone's identity.
fn contributors(mr: &MergeRequest, notes: &[Note]) -> BTreeSet<String> {
    let mut people = BTreeSet::from([mr.author.username.clone()]);
    people.extend(
        notes
            .iter()
            .filter(|n| n.system && is_push_note(&n.body))
            .map(|n| n.author.username.clone()),
    );
    people
}

/// GitLab's note for a push: "added 1 commit", "added 3 commits", followed by the list.
fn is_push_note(body: &str) -> bool {
    let first = body.lines().next().unwrap_or("");
    let mut words = first.split_whitespace();
    words.next() == Some("added")
        && words.next().is_some_and(|n| n.parse::<u64>().is_ok())
        && words
            .next()
            .is_some_and(|w| w == "commit" || w == "commits")
}

/// The head a push had made current at `at`: the newest version created by then.
fn head_at(versions: &[Version], at: DateTime<Utc>) -> Option<&Version> {
    versions
        .iter()
        .filter(|v| v.created_at <= at)
        .max_by_key(|v| v.created_at)
}

/// Current approvals, each dated by its (latest) "approved" system note, given on the head of
/// that time, with the files pushed since. No note, or a head no longer in the change (a force
/// push), means nothing can be said about what it saw: `changed_after` is unknown (stale unless
/// given on the current head).
async fn approvals(
    api: &GitlabApi,
    project: u64,
    approvers: &[UserRef],
    notes: &[Note],
    versions: &[Version],
    in_change: &BTreeSet<&str>,
    head: &str,
) -> Result<Vec<Review>, GitlabError> {
    let mut reviews = Vec::new();
    for approver in approvers {
        let Some(note) = notes
            .iter()
            .filter(|n| n.system && n.author.id == approver.id && n.body.trim() == APPROVED_NOTE)
            .max_by_key(|n| n.created_at)
        else {
            continue;
        };
        let commit = head_at(versions, note.created_at)
            .map(|v| v.head_commit_sha.clone())
            .unwrap_or_default();
        let changed_after = if commit == head {
            Some(Vec::new())
        } else if !commit.is_empty() && in_change.contains(commit.as_str()) {
            Some(api.changed_between(project, &commit, head).await?)
        } else {
            None
        };
        reviews.push(Review {
            reviewer: approver.username.clone(),
            state: ReviewVerdict::Approved,
            commit,
            at: note.created_at,
            changed_after,
        });
    }
    reviews.sort_by_key(|r| r.at);
    Ok(reviews)
}

/// Notes people wrote (not GitLab's system notes, not tollgate's own), with the head current
/// when each was written.
fn comments(notes: &[Note], versions: &[Version], head: &str, bot: &UserRef) -> Vec<Comment> {
    notes
        .iter()
        .filter(|n| !n.system && n.author.id != bot.id)
        .map(|n| Comment {
            author: n.author.username.clone(),
            body: n.body.clone(),
            at: n.created_at,
            head_sha: match head_at(versions, n.created_at) {
                Some(version) if version.head_commit_sha == head => head.to_owned(),
                Some(version) => version.head_commit_sha.clone(),
                None => format!("before {head}"),
            },
            edited: n.updated_at > n.created_at,
        })
        .collect()
}

/// Reads the files the policy looks into (see [`plan::read_plan`]).
async fn contents(
    api: &GitlabApi,
    project: u64,
    policy: &Policy,
    facts: &mut ChangeFacts,
) -> Result<(), GitlabError> {
    let read = plan::read_plan(policy, &facts.files);
    if read.needs_base_tree {
        let tree: Vec<String> = api
            .tree(project, &facts.base_sha, usize::MAX)
            .await?
            .into_iter()
            .filter(|e| e.kind == "blob")
            .map(|e| e.path)
            .collect();
        let found = plan::untouched_evidence(policy, &facts.files, &tree);
        facts.head_paths.extend(found.paths);
        for path in found.documents {
            if let Some(text) = api.raw_file(project, &path, &facts.base_sha).await? {
                facts.head_contents.insert(path, text);
            }
        }
    }
    for path in read.base {
        if let Some(text) = api.raw_file(project, &path, &facts.base_sha).await? {
            facts.base_contents.insert(path, text);
        }
    }
    for path in read.head {
        if let Some(text) = api.raw_file(project, &path, &facts.head_sha).await? {
            facts.head_contents.insert(path, text);
        }
    }
    Ok(())
}

/// Who may sign off (Developer or above in the project, inherited membership included), and
/// who of the people involved belongs to the policy's groups (`@group/subgroup`).
async fn people(
    api: &GitlabApi,
    project: u64,
    policy: &Policy,
    ids: &HashMap<String, u64>,
    facts: &mut ChangeFacts,
) -> Result<(), GitlabError> {
    let teams = plan::policy_teams(policy);
    for login in plan::people_involved(facts) {
        let Some(&id) = ids.get(&login) else {
            continue;
        };
        if api
            .project_access(project, id)
            .await?
            .is_some_and(|level| level >= DEVELOPER)
        {
            facts.write_access.insert(login.clone());
        }
        for team in &teams {
            let group = team.trim_start_matches('@');
            if api.group_access(group, id).await?.is_some() {
                facts
                    .teams
                    .entry((*team).to_owned())
                    .or_default()
                    .insert(login.clone());
            }
        }
    }
    Ok(())
}
