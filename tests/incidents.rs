//! Incidents on GitHub, end to end in one process (issue 8): the playbook's worked example 3 —
//! an incident, `/tollgate rollback` by on-call, the revert passing on its bypass, the
//! post-incident review opened at the merge, reminded once when overdue and recorded when
//! closed — plus refusals, bypass expiry, the overdue-review switch, and the scheduler across a
//! restart and across two replicas. Signed webhooks go through the real intake; the worker talks
//! to the fake GitHub, which checks every request against GitHub's OpenAPI description. Time is
//! the fake's clock, which the worker and the scheduler read too, so tests move it by hours.

mod common;

use std::time::{Duration, Instant};

use chrono::TimeDelta;
use tollgate::incident::store::ReviewState;
use tollgate::ledger::record::RecordKind;
use tollgate::schedule::Schedule;
use tollgate::scheduler::DeadlineHandler;

use common::fake_github::{CommitSpec, FileChange};
use common::github_world::{BASE, BOT, REPO, World, when};
use common::serve::PgDatabase;

/// The playbook's worked example 3, end to end.
#[tokio::test]
async fn worked_example_3_rollback_bypass_review_reminder_and_closing() {
    let w = World::sqlite(false).await;
    // A model change reaches production the normal way (an admin merge here: its gate is not
    // what this example is about).
    w.open_model_change(1).await;
    w.merge(1, "lena").await;
    assert!(w.fake.issues(REPO).is_empty(), "no bypass, no review");

    // Incident: conversion drops 10% after deployment. On-call asks for the rollback.
    w.advance(TimeDelta::hours(2));
    let command = w.comment(
        1,
        "olga",
        "/tollgate rollback INC-4711 conversion dropped 10% after deployment",
    );
    let started = Instant::now();
    w.send(0, "issue_comment", &command).await;
    let revert = loop {
        if let Some(pull) = w.fake.pulls(REPO).into_iter().find(|p| p.number != 1) {
            break pull;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no revert PR");
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let elapsed = started.elapsed();
    eprintln!(
        "rollback command delivered → revert PR created: {:.1} ms",
        elapsed.as_secs_f64() * 1e3
    );
    w.settle().await;
    let revert = w
        .fake
        .pulls(REPO)
        .into_iter()
        .find(|p| p.number == revert.number)
        .unwrap();

    // The revert: against the same base, by tollgate, labelled as an emergency with the
    // ticket, and its tree is the base's before the merge.
    assert_eq!(revert.base_ref, "main");
    assert_eq!(revert.author, BOT);
    assert!(revert.title.contains("Revert #1"), "{}", revert.title);
    assert!(revert.title.contains("INC-4711"), "{}", revert.title);
    for label in ["emergency", "INC-4711"] {
        assert!(
            revert.labels.iter().any(|l| l == label),
            "{:?}",
            revert.labels
        );
    }
    assert_eq!(
        w.fake.tree_at(REPO, &revert.head_sha),
        w.fake.tree_at(REPO, BASE),
        "the revert restores the tree before the merge"
    );
    // The merge is the branch tip: reverted with the Git Data API.
    assert_eq!(w.requests("POST", "/git/commits"), 1);
    assert_eq!(w.requests("POST", "/git/refs"), 1);
    assert_eq!(w.requests("POST", "/graphql"), 0);
    let replies = w.replies(1);
    assert!(
        replies
            .iter()
            .any(|r| r.contains(&format!("#{}", revert.number)) && r.contains("INC-4711")),
        "{replies:#?}"
    );

    // It passes the emergency gate on the request's own bypass (no sign-offs, no evidence).
    assert_eq!(
        w.conclusion(&revert.head_sha).as_deref(),
        Some("success"),
        "the revert passes on its bypass"
    );
    let kinds = w.record_kinds(1).await;
    assert!(
        kinds.iter().any(
            |(k, who, _)| *k == RecordKind::RollbackRequested && who.as_deref() == Some("olga")
        ),
        "{kinds:#?}"
    );
    assert!(
        kinds
            .iter()
            .any(|(k, _, d)| *k == RecordKind::RollbackOpened
                && d.contains(&format!("#{}", revert.number)))
    );
    let revert_kinds = w.record_kinds(revert.number).await;
    assert!(
        revert_kinds
            .iter()
            .any(|(k, who, d)| *k == RecordKind::BypassHonoured
                && who.as_deref() == Some("olga")
                && d.contains("INC-4711")),
        "{revert_kinds:#?}"
    );

    // The same command delivered again opens nothing more.
    w.deliver("issue_comment", &command).await;
    assert_eq!(w.fake.pulls(REPO).len(), 2);

    // Merged under the bypass: the follow-up issue, due 48 hours after the merge.
    let merged_at = w.merge(revert.number, "olga").await;
    let due = merged_at + TimeDelta::hours(48);
    let stored = w.incidents().reviews(false).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].merged_ms,
        merged_at.timestamp_millis(),
        "GitHub's merge time"
    );
    assert_eq!(stored[0].due_ms, due.timestamp_millis());
    let issues = w.fake.issues(REPO);
    assert_eq!(issues.len(), 1, "{issues:#?}");
    let review = &issues[0];
    assert_eq!(
        review.title,
        format!("Post-incident review: #{} — INC-4711", revert.number)
    );
    assert!(review.labels.iter().any(|l| l == "post-incident-review"));
    assert!(
        review
            .body
            .contains(&format!("| **Due** | **{}** |", when(due))),
        "{}",
        review.body
    );
    for item in [
        "Root cause",
        "Tests updated",
        "Policy adjusted",
        "Learnings",
    ] {
        assert!(review.body.contains(&format!("- [ ] {item}")), "{item}");
    }
    // Assigned to the people whose sign-off the bypass skipped: the revert is high risk,
    // whose roles are teams here, so they are mentioned.
    assert!(review.body.contains("@acme/ml-leads"), "{}", review.body);
    let merge_kinds = w.record_kinds(revert.number).await;
    for kind in [RecordKind::MergedUnderBypass, RecordKind::ReviewOpened] {
        assert!(
            merge_kinds.iter().any(|(k, _, _)| *k == kind),
            "{kind:?}: {merge_kinds:#?}"
        );
    }
    // A redelivered merge opens no second review.
    w.deliver("pull_request", &w.pr_payload(revert.number, "closed"))
        .await;
    assert_eq!(w.fake.issues(REPO).len(), 1);

    // Before the due time: nothing.
    w.advance(TimeDelta::hours(47));
    // Only the revert's bypass expired meanwhile (merged already: that changes nothing).
    assert_eq!(w.tick().await, 1);
    assert_eq!(w.reminders(review.number), 0);
    assert_eq!(w.fake.issues(REPO).len(), 1);
    // Past it: one reminder and the overdue label, and still one however often it ticks.
    w.advance(TimeDelta::hours(2));
    assert_eq!(w.tick().await, 1);
    for _ in 0..3 {
        w.advance(TimeDelta::hours(1));
        w.tick().await;
    }
    assert_eq!(w.reminders(review.number), 1);
    let labelled = w
        .fake
        .issues(REPO)
        .into_iter()
        .find(|i| i.number == review.number)
        .unwrap();
    assert!(
        labelled.labels.iter().any(|l| l == "overdue"),
        "{:?}",
        labelled.labels
    );
    let open = w.incidents().reviews(false).await.unwrap();
    assert_eq!(open.len(), 1);
    assert!(open[0].overdue_at(w.fake.now().timestamp_millis()));

    // Closing the issue records the review.
    let closed = w.issue_closed(review.number, "lena");
    w.deliver("issues", &closed).await;
    let kinds = w.record_kinds(revert.number).await;
    assert!(
        kinds
            .iter()
            .any(|(k, who, d)| *k == RecordKind::ReviewOverdue
                && who.is_none()
                && d.contains(&format!("#{}", review.number))),
        "{kinds:#?}"
    );
    assert!(
        kinds
            .iter()
            .any(|(k, who, d)| *k == RecordKind::ReviewClosed
                && who.as_deref() == Some("lena")
                && d.contains("checklist 0/4")),
        "{kinds:#?}"
    );
    assert!(w.incidents().reviews(false).await.unwrap().is_empty());
    let all = w.incidents().reviews(true).await.unwrap();
    assert_eq!(all[0].state, ReviewState::Closed);
    assert_eq!(all[0].closed_by.as_deref(), Some("lena"));
    // The whole story verifies as one chain.
    let report = w
        .first()
        .audit
        .ledger
        .verify(&w.first().audit.key.verifying_key())
        .await
        .unwrap();
    assert!(report.broken.is_empty(), "{report:?}");
}

/// Rollback and bypass are refused, with a reply, for anyone without the emergency role and
/// for a change that is not merged; nothing is reverted.
#[tokio::test]
async fn unauthorized_rollbacks_and_bypasses_and_unmerged_rollbacks_are_refused() {
    let w = World::sqlite(false).await;
    let head = w.open_model_change(1).await;
    // An open change cannot be rolled back, even by on-call.
    w.deliver(
        "issue_comment",
        &w.comment(1, "olga", "/tollgate rollback INC-1 too early"),
    )
    .await;
    // Nobody but on-call may bypass.
    w.deliver(
        "issue_comment",
        &w.comment(1, "dana", "/tollgate bypass INC-1 I am sure"),
    )
    .await;
    assert_ne!(w.conclusion(&head).as_deref(), Some("success"));
    let replies = w.replies(1);
    assert!(
        replies
            .iter()
            .any(|r| r.contains("only a merged change can be rolled back")),
        "{replies:#?}"
    );
    assert!(
        replies
            .iter()
            .any(|r| r.contains("@dana") && r.contains("only holders of 'on_call'")),
        "{replies:#?}"
    );

    w.merge(1, "lena").await;
    // Merged, but asked by someone without the role.
    w.deliver(
        "issue_comment",
        &w.comment(1, "alice", "/tollgate rollback INC-2 revert my change"),
    )
    .await;
    // And by on-call with a ticket the policy does not know.
    w.deliver(
        "issue_comment",
        &w.comment(1, "olga", "/tollgate rollback JIRA-3"),
    )
    .await;
    let replies = w.replies(1);
    assert!(
        replies.iter().any(|r| r.contains("@alice")
            && r.contains("only holders of 'on_call' with write access may roll back")),
        "{replies:#?}"
    );
    assert!(
        replies
            .iter()
            .any(|r| r.contains("'JIRA-3' does not match")),
        "{replies:#?}"
    );
    assert_eq!(w.fake.pulls(REPO).len(), 1, "no revert was opened");
    assert_eq!(w.requests("POST", "/pulls"), 0);
    assert_eq!(w.requests("POST", "/graphql"), 0);
    let kinds = w.record_kinds(1).await;
    let refused = kinds
        .iter()
        .filter(|(k, _, _)| *k == RecordKind::RollbackRefused)
        .count();
    assert_eq!(refused, 3, "each refused rollback is on record: {kinds:#?}");
    // Answered once each, however often the change is looked at again.
    let before = w.replies(1).len();
    w.deliver("issue_comment", &w.comment(1, "olga", "/tollgate recheck"))
        .await;
    assert_eq!(w.replies(1).len(), before);
}

/// A bypass counts for its window only: when it expires, the scheduler has the change
/// evaluated again and its check is no longer green.
#[tokio::test]
async fn a_bypass_expires_after_its_window_and_the_check_turns() {
    let w = World::sqlite(false).await;
    let head = w.open_model_change(1).await;
    w.deliver(
        "issue_comment",
        &w.comment(1, "olga", "/tollgate bypass INC-9 scoring outage"),
    )
    .await;
    assert_eq!(w.conclusion(&head).as_deref(), Some("success"));
    w.advance(TimeDelta::hours(23));
    assert_eq!(w.tick().await, 0, "not yet");
    assert_eq!(w.conclusion(&head).as_deref(), Some("success"));
    w.advance(TimeDelta::hours(1) + TimeDelta::minutes(1));
    assert_eq!(w.tick().await, 1, "the expiry fell due");
    assert_eq!(
        w.conclusion(&head).as_deref(),
        Some("action_required"),
        "an expired bypass no longer carries the change"
    );
}

/// With `overdue_review_blocks_bypass`, an overdue review refuses further bypasses (naming
/// it) until it is closed.
#[tokio::test]
async fn an_overdue_review_blocks_new_bypasses_when_the_switch_is_on() {
    let w = World::sqlite(true).await;
    let (review, due) = w.bypassed_and_merged(1, "INC-10").await;
    w.advance(due - w.fake.now() + TimeDelta::minutes(1));
    w.tick().await;

    let head = w.open_model_change(10).await;
    w.deliver(
        "issue_comment",
        &w.comment(10, "oscar", "/tollgate bypass INC-11 another outage"),
    )
    .await;
    assert_ne!(w.conclusion(&head).as_deref(), Some("success"));
    let replies = w.replies(10);
    assert!(
        replies
            .iter()
            .any(|r| r.contains(&format!("post-incident review #{review}")) && r.contains("INC-10")),
        "{replies:#?}"
    );
    // Closing the review lifts the block: a recheck honours the bypass.
    w.deliver("issues", &w.issue_closed(review, "lena")).await;
    w.deliver(
        "issue_comment",
        &w.comment(10, "oscar", "/tollgate recheck"),
    )
    .await;
    assert_eq!(w.conclusion(&head).as_deref(), Some("success"));
}

/// Without the switch, an overdue review does not block (the default).
#[tokio::test]
async fn without_the_switch_an_overdue_review_does_not_block() {
    let w = World::sqlite(false).await;
    let (_, due) = w.bypassed_and_merged(1, "INC-20").await;
    w.advance(due - w.fake.now() + TimeDelta::minutes(1));
    w.tick().await;
    let head = w.open_model_change(10).await;
    w.deliver(
        "issue_comment",
        &w.comment(10, "oscar", "/tollgate bypass INC-21 another outage"),
    )
    .await;
    assert_eq!(w.conclusion(&head).as_deref(), Some("success"));
}

/// When the merge is no longer the branch tip, the revert is GitHub's own `revertPullRequest`.
#[tokio::test]
async fn a_merge_that_is_not_the_tip_is_reverted_with_the_graphql_mutation() {
    let w = World::sqlite(false).await;
    w.open_model_change(1).await;
    w.merge(1, "lena").await;
    w.fake.commit_to_branch(
        REPO,
        "main",
        CommitSpec::new(
            "later000000000000000000000000000000000000",
            "lena",
            vec![FileChange::added("docs/notes.md", "later\n")],
        ),
    );
    w.deliver(
        "issue_comment",
        &w.comment(1, "olga", "/tollgate rollback INC-30 bad scores"),
    )
    .await;
    assert_eq!(w.requests("POST", "/graphql"), 1);
    let revert = w
        .fake
        .pulls(REPO)
        .into_iter()
        .find(|p| p.number != 1)
        .expect("a revert PR");
    let tree = w.fake.tree_at(REPO, &revert.head_sha);
    assert_eq!(tree["models/fraud/v1/model.onnx"], "weights v1");
    assert_eq!(tree["docs/notes.md"], "later\n", "later work is kept");
    assert!(revert.labels.iter().any(|l| l == "emergency"));
    assert_eq!(w.conclusion(&revert.head_sha).as_deref(), Some("success"));
}

/// A pending reminder survives a restart (nothing lost) and is posted once, even when a
/// process died after posting it but before marking it done (nothing doubled).
#[tokio::test]
async fn a_pending_reminder_survives_a_restart_and_a_crash_mid_reminder_posts_it_once() {
    let mut w = World::sqlite(false).await;
    let (review, due) = w.bypassed_and_merged(1, "INC-40").await;
    // Restart before the due time.
    w.stop_replica().await;
    w.start_replica().await;
    w.advance(due - w.fake.now() + TimeDelta::minutes(1));

    // A process claims the reminder, posts it, and dies before marking it done.
    let schedule = Schedule::new(w.first().audit.ledger.pool().clone());
    let now_ms = w.fake.now().timestamp_millis();
    let claimed = schedule
        .claim_due("dead-process", now_ms, 120_000, 10)
        .await
        .unwrap();
    // Due by now: the review, and (24 hours after it was given) the bypass's expiry.
    let kinds: Vec<&str> = claimed.iter().map(|d| d.kind.as_str()).collect();
    assert_eq!(kinds, ["github:bypass_expiry", "github:review_due"]);
    for due in &claimed {
        w.first().worker.handle(due).await.unwrap();
    }
    w.settle().await;
    assert_eq!(w.reminders(review), 1);

    // The restarted process leaves it while the dead one's lease runs…
    assert_eq!(w.tick().await, 0);
    // …then takes it over, finds the reminder posted, and does not post it again.
    w.advance(TimeDelta::minutes(3));
    assert_eq!(w.tick().await, 2);
    assert_eq!(w.reminders(review), 1);
    w.advance(TimeDelta::hours(5));
    assert_eq!(w.tick().await, 0);
    assert_eq!(w.reminders(review), 1);
}

/// Two replicas on one PostgreSQL database: the reminder is posted by one of them, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_replicas_on_postgresql_one_reminder_is_posted() {
    let Some(db) =
        PgDatabase::create("with_two_replicas_on_postgresql_one_reminder_is_posted").await
    else {
        return;
    };
    {
        let mut w = World::on(&db.url, false).await;
        w.start_replica().await;
        w.start_replica().await;
        let (review, due) = w.bypassed_and_merged(1, "INC-50").await;
        w.advance(due - w.fake.now() + TimeDelta::minutes(1));
        let (a, b) = tokio::join!(
            w.replicas[0].scheduler.tick(),
            w.replicas[1].scheduler.tick()
        );
        w.settle().await;
        // Two deadlines were due (the review and the bypass's expiry): each was acted on once.
        assert_eq!(a.unwrap() + b.unwrap(), 2);
        assert_eq!(w.reminders(review), 1);
        for _ in 0..3 {
            w.advance(TimeDelta::hours(1));
            w.tick().await;
        }
        assert_eq!(w.reminders(review), 1);
    }
    db.drop_now().await;
}

/// A process that dies while opening a review loses nothing and doubles nothing: if it died
/// after opening the issue but before noting it, the retry finds the issue instead of opening
/// a second; if it died after noting it but before scheduling the reminder, the retry schedules
/// it.
#[tokio::test]
async fn a_crash_while_opening_a_review_neither_doubles_the_issue_nor_loses_the_reminder() {
    let w = World::sqlite(false).await;
    let (review, due) = w.bypassed_and_merged(1, "INC-60").await;
    let pool = w.first().audit.ledger.pool().clone();
    // Died after opening the issue, before noting it (and so before scheduling anything).
    sqlx::query(
        "UPDATE incident_reviews SET state = 'opening', issue_number = NULL, issue_url = NULL",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("DELETE FROM deadlines WHERE kind = 'github:review_due'")
        .execute(&pool)
        .await
        .unwrap();
    w.deliver("pull_request", &w.pr_payload(1, "closed")).await;
    assert_eq!(
        w.fake.issues(REPO).len(),
        1,
        "the issue is found, not opened again"
    );
    let stored = w.incidents().reviews(false).await.unwrap();
    assert_eq!(stored[0].issue, Some(review));
    assert_eq!(stored[0].state, ReviewState::Open);
    let schedule = Schedule::new(pool.clone());
    let pending = schedule.pending("github:review_due").await.unwrap();
    assert_eq!(pending.len(), 1, "the reminder is scheduled again");
    assert_eq!(pending[0].1, due.timestamp_millis());

    // Died after noting it, before scheduling the reminder.
    sqlx::query("DELETE FROM deadlines WHERE kind = 'github:review_due'")
        .execute(&pool)
        .await
        .unwrap();
    w.deliver("pull_request", &w.pr_payload(1, "closed")).await;
    assert_eq!(w.fake.issues(REPO).len(), 1);
    assert_eq!(
        schedule.pending("github:review_due").await.unwrap().len(),
        1
    );
    w.advance(due - w.fake.now() + TimeDelta::minutes(1));
    w.tick().await;
    assert_eq!(w.reminders(review), 1);
}
