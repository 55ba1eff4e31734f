//! `tollgate keygen`, `pubkey`, `verify --comment` and `audit verify|export|show` through the
//! real binary, on a SQLite ledger.

use std::path::Path;
use std::process::{Command, Output};

use base64::Engine as _;
use tollgate::ledger::keys;
use tollgate::ledger::record::{DecisionRecord, RecordKind};
use tollgate::ledger::store::Ledger;

fn tollgate(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env(
            "TOLLGATE_DATABASE_URL",
            format!("sqlite://{}", dir.join("ledger.db").display()),
        )
        .env(
            "TOLLGATE_SIGNING_KEY_FILE",
            dir.join("keys").join(keys::PRIVATE_KEY_FILE),
        )
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn record(n: u64, kind: RecordKind, actor: &str, role: &str) -> DecisionRecord {
    DecisionRecord {
        version: 0,
        id: format!("rec-{n}"),
        time_ms: 1_764_000_000_000 + n as i64 * 60_000,
        forge: "github".to_owned(),
        repo: "acme/fraud-model".to_owned(),
        repo_seq: 0,
        number: 7,
        head_sha: "1111111".to_owned(),
        base_sha: "0000000".to_owned(),
        policy_sha: Some("abc".to_owned()),
        kind,
        tier: Some("high".to_owned()),
        reasons: vec!["high: model artifact".to_owned()],
        actor: Some(actor.to_owned()),
        role: Some(role.to_owned()),
        outcome: "waiting".to_owned(),
        detail: format!("{actor} signed off as {role} on 1111111"),
        delivery: None,
        prev_hash: String::new(),
    }
}

/// A key pair written by `tollgate keygen` and a ledger with the worked example's sign-offs.
async fn setup(dir: &Path) {
    let out = tollgate(dir, &["keygen", "--out", "keys"]);
    assert!(out.status.success(), "{}", text(&out));
    let key = keys::read_private(&dir.join("keys").join(keys::PRIVATE_KEY_FILE)).unwrap();
    let url = format!("sqlite://{}", dir.join("ledger.db").display());
    let ledger = Ledger::open(&url).await.unwrap();
    for (n, (actor, role)) in [
        ("dana", "data_reviewer"),
        ("rita", "risk_reviewer"),
        ("omar", "ops_reviewer"),
        ("lena", "approver"),
    ]
    .into_iter()
    .enumerate()
    {
        let r = record(n as u64, RecordKind::SignOffCounted, actor, role);
        ledger.append(&key, &format!("k{n}"), r).await.unwrap();
    }
    ledger.pool().close().await;
}

#[tokio::test]
async fn keygen_pubkey_and_audit_verify_show_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    setup(dir).await;

    let out = tollgate(dir, &["pubkey"]);
    assert!(out.status.success(), "{}", text(&out));
    let written = std::fs::read_to_string(dir.join("keys").join(keys::PUBLIC_KEY_FILE)).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), written);
    assert!(
        tollgate(dir, &["keygen", "--out", "keys"]).status.code() == Some(1),
        "never overwrites a key"
    );

    let out = tollgate(dir, &["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("ledger intact: 4 records in 1 chains verify"),
        "{}",
        text(&out)
    );

    let out = tollgate(dir, &["audit", "show", "acme/fraud-model#7"]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    for line in [
        "dana as data_reviewer",
        "rita as risk_reviewer",
        "omar as ops_reviewer",
        "lena as approver",
    ] {
        assert!(shown.contains(line), "`{line}` missing:\n{shown}");
    }
    assert!(shown.contains("[commit 1111111]"), "{shown}");
    assert!(
        shown.contains("2025-11-24T16:00:00+00:00"),
        "times are shown: {shown}"
    );

    let out = tollgate(
        dir,
        &[
            "audit",
            "export",
            "--repo",
            "acme/fraud-model",
            "--format",
            "jsonl",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 4);
    let out = tollgate(
        dir,
        &[
            "audit",
            "export",
            "--repo",
            "acme/fraud-model",
            "--format",
            "csv",
            "--since",
            "2025-11-24",
        ],
    );
    let csv = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(
        csv.starts_with("id,time,repo,number,kind,actor,role"),
        "{csv}"
    );

    // Tampering with a stored record (as someone with direct database access would) is found.
    let url = format!("sqlite://{}", dir.join("ledger.db").display());
    let ledger = Ledger::open(&url).await.unwrap();
    sqlx::query("DROP TRIGGER ledger_records_no_update")
        .execute(ledger.pool())
        .await
        .unwrap();
    sqlx::query(
        "UPDATE ledger_records SET body = replace(body, 'rita', 'eve') WHERE record_id = 'rec-1'",
    )
    .execute(ledger.pool())
    .await
    .unwrap();
    ledger.pool().close().await;
    let out = tollgate(dir, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("BROKEN acme/fraud-model at record rec-1"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn a_record_copied_out_of_a_comment_verifies_offline_and_an_edit_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    setup(dir).await;
    let key = keys::read_private(&dir.join("keys").join(keys::PRIVATE_KEY_FILE)).unwrap();
    let signed = vec![record(9, RecordKind::SignOffCounted, "dana", "data_reviewer").sign(&key)];
    let comment = format!(
        "<!-- tollgate:sticky-comment -->\n## High risk\n\n{}\n",
        tollgate::ledger::records_block(&signed)
    );
    std::fs::write(dir.join("comment.md"), &comment).unwrap();
    let out = tollgate(
        dir,
        &[
            "verify",
            "--comment",
            "comment.md",
            "--pubkey",
            "keys/tollgate-signing.pub",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("valid    rec-9"), "{}", text(&out));

    // Edit one character of the record inside the block.
    let mut edited = signed.clone();
    edited[0].record.detail = edited[0].record.detail.replacen('d', "D", 1);
    let line = serde_json::to_string(&edited[0]).unwrap();
    let block = base64::engine::general_purpose::STANDARD.encode(line);
    let forged = format!("<!-- tollgate:records\n{block}\n-->\n");
    std::fs::write(dir.join("forged.md"), forged).unwrap();
    let out = tollgate(
        dir,
        &[
            "verify",
            "--comment",
            "forged.md",
            "--pubkey",
            "keys/tollgate-signing.pub",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("INVALID  rec-9"), "{}", text(&out));
}
