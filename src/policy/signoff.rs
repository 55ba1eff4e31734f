//! Sign-offs and segregation of duties: whose approvals count, for which role, and who still
//! has to sign.
//!
//! Rules: a reviewer's latest approve / request-changes / dismiss is their state (a later
//! comment changes nothing); the author and anyone who authored or committed a commit of the
//! change never count; only people with write access count; with stale-on-push, an approval
//! given before governed files changed no longer counts; one person fills at most one slot.
//! Slots are assigned by maximum bipartite matching, so a person holding two roles is placed
//! where they let the most slots be filled (a greedy pass can strand a role).

use std::collections::{BTreeMap, BTreeSet};

use super::decision::{IgnoreReason, IgnoredApproval, MissingRole, SignOff, Slot, Veto};
use super::facts::{ChangeFacts, Review, ReviewVerdict};
use super::model::{Member, Policy, RoleName, TierPolicy};

/// The sign-off part of a decision.
#[derive(Debug, Clone, Default)]
pub struct SignOffs {
    /// Every required slot, filled or not.
    pub slots: Vec<Slot>,
    /// Roles still short.
    pub missing: Vec<MissingRole>,
    /// Approvals that do not count.
    pub ignored: Vec<IgnoredApproval>,
    /// Vetoes in force.
    pub vetoes: Vec<Veto>,
}

/// Logins compare case-insensitively, as on the forges.
fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn contains(set: &BTreeSet<String>, login: &str) -> bool {
    set.iter().any(|x| same(x, login))
}

/// The roles `login` holds under the policy, given the team memberships in the facts.
pub fn roles_of<'p>(policy: &'p Policy, facts: &ChangeFacts, login: &str) -> Vec<&'p RoleName> {
    policy
        .roles
        .iter()
        .filter(|(_, members)| members.iter().any(|m| is_member(m, facts, login)))
        .map(|(role, _)| role)
        .collect()
}

fn is_member(member: &Member, facts: &ChangeFacts, login: &str) -> bool {
    match member {
        Member::User(user) => same(user, login),
        Member::Team(team) => facts
            .teams
            .get(team)
            .is_some_and(|members| contains(members, login)),
    }
}

/// Every known holder of a role (users, and team members the facts list).
fn holders(policy: &Policy, facts: &ChangeFacts, role: &RoleName) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for member in policy.roles.get(role).into_iter().flatten() {
        match member {
            Member::User(user) => {
                out.insert(user.to_lowercase());
            }
            Member::Team(team) => {
                out.extend(
                    facts
                        .teams
                        .get(team)
                        .into_iter()
                        .flatten()
                        .map(|m| m.to_lowercase()),
                );
            }
        }
    }
    out
}

/// Each reviewer's deciding review: the latest that approved, requested changes or was
/// dismissed. Reviewers keyed in lower case; order of first appearance kept by `at`.
fn latest_verdicts(reviews: &[Review]) -> BTreeMap<String, &Review> {
    let mut latest: BTreeMap<String, &Review> = BTreeMap::new();
    for review in reviews {
        if review.state != ReviewVerdict::Commented {
            latest.insert(review.reviewer.to_lowercase(), review);
        }
    }
    latest
}

/// Whether an approval went stale: governed files changed after it (or the forge could not
/// tell what changed, and it was not given on the head).
fn stale_changes(
    review: &Review,
    facts: &ChangeFacts,
    governed: &dyn Fn(&str) -> bool,
) -> Option<Vec<String>> {
    if review.commit == facts.head_sha {
        return None;
    }
    match &review.changed_after {
        None => Some(Vec::new()),
        Some(paths) => {
            let changed: Vec<String> = paths.iter().filter(|p| governed(p)).cloned().collect();
            (!changed.is_empty()).then_some(changed)
        }
    }
}

/// Works out the sign-offs for a tier.
pub fn evaluate(
    policy: &Policy,
    tier: &TierPolicy,
    facts: &ChangeFacts,
    governed: &dyn Fn(&str) -> bool,
) -> SignOffs {
    let required: Vec<&RoleName> = tier.sign_offs.iter().map(|s| &s.role).collect();
    let latest = latest_verdicts(&facts.reviews);
    let mut result = SignOffs::default();

    // Candidates: (login, review, required roles held), earliest approval first.
    let mut candidates: Vec<(&Review, Vec<&RoleName>)> = Vec::new();
    let mut by_time: Vec<&Review> = latest.values().copied().collect();
    by_time.sort_by_key(|r| r.at);
    for review in by_time {
        let login = review.reviewer.as_str();
        let held: Vec<&RoleName> = roles_of(policy, facts, login)
            .into_iter()
            .filter(|r| required.contains(r))
            .collect();
        match review.state {
            // Like approvals, vetoes count only from people who can write to the repository.
            ReviewVerdict::ChangesRequested
                if !held.is_empty()
                    && !same(login, &facts.author)
                    && contains(&facts.write_access, login) =>
            {
                result.vetoes.push(Veto {
                    login: login.to_owned(),
                    roles: held.iter().map(|r| r.0.clone()).collect(),
                    at: review.at,
                });
            }
            ReviewVerdict::Approved => {
                let reason = if same(login, &facts.author) {
                    Some(IgnoreReason::Author)
                } else if contains(&facts.commit_authors, login) {
                    Some(IgnoreReason::Contributor)
                } else if !contains(&facts.write_access, login) {
                    Some(IgnoreReason::NoWriteAccess)
                } else if let Some(changed) = tier
                    .stale_on_push
                    .then(|| stale_changes(review, facts, governed))
                    .flatten()
                {
                    Some(IgnoreReason::Stale { changed })
                } else if held.is_empty() {
                    Some(IgnoreReason::NoRequiredRole)
                } else {
                    None
                };
                match reason {
                    Some(reason) => result.ignored.push(IgnoredApproval {
                        login: login.to_owned(),
                        reason,
                    }),
                    None => candidates.push((review, held)),
                }
            }
            _ => {}
        }
    }

    // One slot per required sign-off (a role with count 2 has two).
    let slot_roles: Vec<&RoleName> = tier
        .sign_offs
        .iter()
        .flat_map(|s| std::iter::repeat_n(&s.role, s.count as usize))
        .collect();
    let edges: Vec<Vec<usize>> = candidates
        .iter()
        .map(|(_, held)| {
            slot_roles
                .iter()
                .enumerate()
                .filter(|(_, role)| held.contains(role))
                .map(|(i, _)| i)
                .collect()
        })
        .collect();
    let assignment = max_matching(&edges, slot_roles.len());

    let mut filling: BTreeMap<String, String> = BTreeMap::new();
    result.slots = slot_roles
        .iter()
        .enumerate()
        .map(|(slot, role)| {
            let filled_by = assignment[slot].map(|c| {
                let review = candidates[c].0;
                filling.insert(review.reviewer.to_lowercase(), role.0.clone());
                SignOff {
                    login: review.reviewer.clone(),
                    at: review.at,
                    commit: review.commit.clone(),
                }
            });
            Slot {
                role: role.0.clone(),
                filled_by,
            }
        })
        .collect();

    let unfilled = |role: &RoleName| result_slots_unfilled(&result.slots, role);
    for (review, held) in &candidates {
        let login = review.reviewer.to_lowercase();
        match filling.get(&login) {
            // Counted once; say so where another of their roles is still open.
            Some(role) => {
                if held.iter().any(|r| r.0 != *role && unfilled(r) > 0) {
                    result.ignored.push(IgnoredApproval {
                        login: review.reviewer.clone(),
                        reason: IgnoreReason::AlreadyFills { role: role.clone() },
                    });
                }
            }
            None => result.ignored.push(IgnoredApproval {
                login: review.reviewer.clone(),
                reason: IgnoreReason::RolesAlreadyFilled,
            }),
        }
    }

    for requirement in &tier.sign_offs {
        let missing = unfilled(&requirement.role);
        if missing == 0 {
            continue;
        }
        let eligible: Vec<String> = holders(policy, facts, &requirement.role)
            .into_iter()
            .filter(|login| {
                !same(login, &facts.author)
                    && !contains(&facts.commit_authors, login)
                    && !filling.contains_key(login)
                    && contains(&facts.write_access, login)
            })
            .collect();
        result.missing.push(MissingRole {
            role: requirement.role.0.clone(),
            needed: missing,
            eligible,
        });
    }
    result
}

fn result_slots_unfilled(slots: &[Slot], role: &RoleName) -> u32 {
    slots
        .iter()
        .filter(|s| s.role == role.0 && s.filled_by.is_none())
        .count() as u32
}

/// Maximum bipartite matching (Kuhn's augmenting paths). `edges[c]` lists the slots candidate
/// `c` may fill; returns, per slot, the candidate filling it. Candidates are tried in order,
/// so earlier approvals are preferred among equally large matchings.
pub fn max_matching(edges: &[Vec<usize>], slots: usize) -> Vec<Option<usize>> {
    let mut slot_owner: Vec<Option<usize>> = vec![None; slots];
    for candidate in 0..edges.len() {
        let mut visited = vec![false; slots];
        augment(candidate, edges, &mut slot_owner, &mut visited);
    }
    slot_owner
}

/// Tries to give `candidate` a slot, moving earlier owners along alternating paths.
fn augment(
    candidate: usize,
    edges: &[Vec<usize>],
    slot_owner: &mut [Option<usize>],
    visited: &mut [bool],
) -> bool {
    for &slot in &edges[candidate] {
        if visited[slot] {
            continue;
        }
        visited[slot] = true;
        let free = match slot_owner[slot] {
            None => true,
            Some(owner) => augment(owner, edges, slot_owner, visited),
        };
        if free {
            slot_owner[slot] = Some(candidate);
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::max_matching;

    #[test]
    fn matching_moves_an_earlier_candidate_to_free_a_slot() {
        // Candidate 0 can fill slot 0 or 1; candidate 1 only slot 0. Greedy gives 0→slot 0 and
        // strands candidate 1; the matching moves candidate 0 to slot 1.
        let assignment = max_matching(&[vec![0, 1], vec![0]], 2);
        assert_eq!(assignment, vec![Some(1), Some(0)]);
    }

    #[test]
    fn matching_never_gives_one_candidate_two_slots() {
        let assignment = max_matching(&[vec![0, 1]], 2);
        assert_eq!(assignment.iter().filter(|s| s.is_some()).count(), 1);
    }
}
