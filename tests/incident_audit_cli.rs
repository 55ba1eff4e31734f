//! `tollgate audit show` without a change (issue 8): the post-incident reviews an auditor has
//! to chase, through the real binary on a SQLite store seeded with reviews directly. Open and
//! overdue ones by default (the overdue ones marked), closed ones too with `--all`, and a plain
//! "none" when there are none. (`audit show OWNER/NAME#N` is covered by `audit_cli.rs`.)

use std::path::Path;
use std::process::{Command, Output};

use chrono::{DateTime, Utc};
use tollgate::incident::store::{Incidents, Review, ReviewState};
use tollgate::ledger::store::Ledger;

const REPO: &str = "acme/fraud-model";
const HOUR_MS: i64 = 3_600_000;

fn tollgate(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("TOLLGATE_DATABASE_URL", url(dir))
        .output()
        .unwrap()
}

fn url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("ledger.db").display())
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The CLI's time format.
fn time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339()
}

/// A review of change `change` for `ticket`, bypassed by olga, merged two days before it is
/// due.
fn review(change: u64, ticket: &str, due_ms: i64) -> Review {
    Review {
        forge: "github".to_owned(),
        repo: REPO.to_owned(),
        change,
        ticket: ticket.to_owned(),
        bypassed_by: "olga".to_owned(),
        merged_ms: due_ms - 48 * HOUR_MS,
        due_ms,
        state: ReviewState::Opening,
        issue: None,
        issue_url: None,
        reminded_ms: None,
        closed_ms: None,
        closed_by: None,
    }
}

/// The three reviews the tests list.
struct Seeded {
    /// Open, due tomorrow (change #11, issue #21).
    open_due_ms: i64,
    /// Open, due two hours ago (change #12, issue #22).
    overdue_due_ms: i64,
    /// Closed by lena an hour ago (change #13, issue #23).
    closed_ms: i64,
}

/// Creates the store (as a first `serve` would) and opens one review not yet due, one overdue
/// and one closed, as the worker records them.
async fn seed(dir: &Path) -> Seeded {
    let ledger = Ledger::open(&url(dir)).await.unwrap();
    let incidents = Incidents::new(ledger.pool().clone());
    let now = Utc::now().timestamp_millis();
    let seeded = Seeded {
        open_due_ms: now + 24 * HOUR_MS,
        overdue_due_ms: now - 2 * HOUR_MS,
        closed_ms: now - HOUR_MS,
    };
    for (change, ticket, due_ms) in [
        (11, "INC-1100", seeded.open_due_ms),
        (12, "INC-1200", seeded.overdue_due_ms),
        (13, "INC-1300", now - 30 * HOUR_MS),
    ] {
        incidents
            .begin_review(&review(change, ticket, due_ms))
            .await
            .unwrap();
        let issue = change + 10;
        let issue_url = format!("https://github.com/{REPO}/issues/{issue}");
        incidents
            .review_opened("github", REPO, change, issue, &issue_url)
            .await
            .unwrap();
    }
    assert!(
        incidents
            .review_closed("github", REPO, 23, "lena", seeded.closed_ms)
            .await
            .unwrap()
    );
    ledger.pool().close().await;
    seeded
}

/// The listed line of change `change`, if any.
fn line_of(listing: &str, change: u64) -> Option<String> {
    listing
        .lines()
        .find(|l| l.contains(&format!("{REPO}#{change}\t")))
        .map(str::to_owned)
}

#[tokio::test]
async fn audit_show_lists_open_and_overdue_reviews_and_with_all_the_closed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let seeded = seed(dir).await;

    let out = tollgate(dir, &["audit", "show"]);
    let listing = stdout(&out);
    assert!(out.status.success(), "{}", text(&out));
    assert!(listing.starts_with("STATE\tDUE\tREVIEW\t"), "{listing}");
    let open = line_of(&listing, 11).unwrap_or_else(|| panic!("the open review:\n{listing}"));
    assert!(open.starts_with("open\t"), "{open}");
    for part in [
        time(seeded.open_due_ms).as_str(),
        "github #21",
        "INC-1100",
        "olga",
    ] {
        assert!(open.contains(part), "`{part}` missing: {open}");
    }
    assert!(open.ends_with("\t-"), "not closed: {open}");
    let overdue = line_of(&listing, 12).unwrap_or_else(|| panic!("the overdue review:\n{listing}"));
    assert!(overdue.starts_with("OVERDUE\t"), "{overdue}");
    for part in [
        time(seeded.overdue_due_ms).as_str(),
        "github #22",
        "INC-1200",
    ] {
        assert!(overdue.contains(part), "`{part}` missing: {overdue}");
    }
    assert!(
        line_of(&listing, 13).is_none(),
        "not the closed one:\n{listing}"
    );
    assert!(!listing.contains("INC-1300"), "{listing}");
    // Soonest due first: the overdue one leads.
    assert!(
        listing.find("INC-1200") < listing.find("INC-1100"),
        "{listing}"
    );

    let out = tollgate(dir, &["audit", "show", "--all"]);
    let listing = stdout(&out);
    assert!(out.status.success(), "{}", text(&out));
    let closed = line_of(&listing, 13).unwrap_or_else(|| panic!("the closed review:\n{listing}"));
    assert!(closed.starts_with("closed\t"), "{closed}");
    assert!(closed.contains("github #23"), "{closed}");
    assert!(
        closed.ends_with(&format!("\t{} by lena", time(seeded.closed_ms))),
        "when and by whom: {closed}"
    );
    assert!(line_of(&listing, 11).is_some_and(|l| l.starts_with("open\t")));
    assert!(line_of(&listing, 12).is_some_and(|l| l.starts_with("OVERDUE\t")));
    assert_eq!(
        listing.lines().count(),
        4,
        "a header and three reviews:\n{listing}"
    );
}

#[tokio::test]
async fn audit_show_without_reviews_says_there_are_none() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    Ledger::open(&url(dir)).await.unwrap().pool().close().await;

    let out = tollgate(dir, &["audit", "show"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out), "no open or overdue post-incident reviews\n");

    let out = tollgate(dir, &["audit", "show", "--all"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out), "no post-incident reviews\n");
}
