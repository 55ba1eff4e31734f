//! The ledger suite, run against SQLite and against PostgreSQL (`TOLLGATE_TEST_POSTGRES_URL`,
//! which `.ci/run` sets; without it the PostgreSQL half says it was skipped).

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use sqlx::Connection as _;
use tollgate::ledger::record::{DecisionRecord, GENESIS_HASH, RecordKind};
use tollgate::ledger::store::Ledger;

/// A database for one test: a SQLite file, or a fresh PostgreSQL database.
struct TestDb {
    url: String,
    postgres: bool,
    _dir: Option<tempfile::TempDir>,
    /// For PostgreSQL: (admin URL, database name), dropped by [`TestDb::drop_database`].
    created: Option<(String, String)>,
}

impl TestDb {
    /// Removes a PostgreSQL test database (SQLite files go with their temporary folder).
    async fn drop_database(&self) {
        if let Some((admin, name)) = &self.created {
            let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
}

fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    TestDb {
        url,
        postgres: false,
        _dir: Some(dir),
        created: None,
    }
}

async fn postgres() -> Option<TestDb> {
    let Ok(admin) = std::env::var("TOLLGATE_TEST_POSTGRES_URL") else {
        eprintln!(
            "skipped: TOLLGATE_TEST_POSTGRES_URL is not set (PostgreSQL half of the ledger suite)"
        );
        return None;
    };
    let name = format!("tollgate_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("connect to PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    Some(TestDb {
        url: format!("{base}/{name}"),
        postgres: true,
        _dir: None,
        created: Some((admin.clone(), name)),
    })
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42u8; 32])
}

fn draft(repo: &str, n: u64, actor: &str) -> DecisionRecord {
    DecisionRecord {
        version: 0,
        id: uuid::Uuid::new_v4().to_string(),
        time_ms: 1_764_000_000_000 + n as i64,
        forge: "github".to_owned(),
        repo: repo.to_owned(),
        repo_seq: 0,
        number: 7,
        head_sha: format!("head{n}"),
        base_sha: "base".to_owned(),
        policy_sha: Some("p1".to_owned()),
        kind: RecordKind::SignOffCounted,
        tier: Some("high".to_owned()),
        reasons: vec!["models/fraud/model.onnx is a model_artifact change".to_owned()],
        actor: Some(actor.to_owned()),
        role: Some("data_reviewer".to_owned()),
        outcome: "waiting".to_owned(),
        detail: format!("approval {n}"),
        delivery: Some(format!("d-{n}")),
        prev_hash: String::new(),
    }
}

async fn filled(db: &TestDb) -> (Ledger, Vec<String>) {
    let ledger = Ledger::open(&db.url).await.unwrap();
    let mut ids = Vec::new();
    for n in 0..5 {
        let signed = ledger
            .append(&key(), "k", draft("acme/fraud", n, "dana"))
            .await
            .unwrap();
        ids.push(signed.record.id.clone());
        ledger
            .append(&key(), "k", draft("acme/other", n, "rita"))
            .await
            .unwrap();
    }
    (ledger, ids)
}

/// Lets the test act as an attacker with direct database access: turns the append-only
/// triggers off.
async fn disable_guards(ledger: &Ledger, db: &TestDb) {
    let statements: &[&str] = if db.postgres {
        &["ALTER TABLE ledger_records DISABLE TRIGGER USER"]
    } else {
        &[
            "DROP TRIGGER ledger_records_no_update",
            "DROP TRIGGER ledger_records_no_delete",
        ]
    };
    for statement in statements {
        sqlx::query(*statement)
            .execute(ledger.pool())
            .await
            .unwrap();
    }
}

async fn exec(ledger: &Ledger, sql: &str) {
    // Test-only SQL built from the test's own strings (the attacker's statements).
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(ledger.pool())
        .await
        .unwrap();
}

async fn suite(db: TestDb) {
    check_suite(&db).await;
    db.drop_database().await;
}

async fn check_suite(db: &TestDb) {
    // An untouched ledger verifies; chains start at the genesis hash and link up.
    let (ledger, ids) = filled(db).await;
    let report = ledger.verify(&key().verifying_key()).await.unwrap();
    assert_eq!((report.records, report.repos), (10, 2));
    assert!(report.broken.is_empty(), "{report:?}");
    let chain = ledger.records(Some("acme/fraud")).await.unwrap();
    assert_eq!(chain.len(), 5);
    assert_eq!(chain[0].signed().unwrap().record.prev_hash, GENESIS_HASH);
    assert_eq!(chain[1].signed().unwrap().record.prev_hash, chain[0].hash);

    // Direct SQL may not change or remove a record while the guards are on.
    for statement in [
        "UPDATE ledger_records SET hash = 'x'",
        "DELETE FROM ledger_records",
    ] {
        let refused = sqlx::query(statement).execute(ledger.pool()).await;
        let error = refused
            .expect_err("the append-only guard refuses")
            .to_string();
        assert!(error.contains("append-only"), "{error}");
    }
    if db.postgres {
        let error = sqlx::query("TRUNCATE ledger_records")
            .execute(ledger.pool())
            .await
            .unwrap_err();
        assert!(error.to_string().contains("append-only"), "{error}");
    }

    // An attacker with the guards off: every kind of tampering is found, naming the record.
    disable_guards(&ledger, db).await;
    let row = &chain[2];
    // Every field of the signed body, one at a time.
    let body: serde_json::Value = serde_json::from_str(&row.body).unwrap();
    let fields: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
    assert!(fields.len() >= 18, "{fields:?}");
    for field in &fields {
        let mut tampered = body.clone();
        tampered[field.as_str()] = match &body[field.as_str()] {
            serde_json::Value::String(text) => format!("{text}x").into(),
            serde_json::Value::Number(n) => (n.as_i64().unwrap_or(0) + 1).into(),
            serde_json::Value::Array(items) => {
                let mut items = items.clone();
                items.push("x".into());
                items.into()
            }
            _ => "x".into(),
        };
        let text = serde_json::to_string(&tampered)
            .unwrap()
            .replace('\'', "''");
        let sql = format!(
            "UPDATE ledger_records SET body = '{text}' WHERE record_id = '{}'",
            row.record_id
        );
        exec(&ledger, &sql).await;
        let report = ledger.verify(&key().verifying_key()).await.unwrap();
        assert_eq!(report.broken.len(), 1, "{field}: {report:?}");
        assert_eq!(report.broken[0].record_id, row.record_id, "{field}");
        let restore = row.body.replace('\'', "''");
        let sql = format!(
            "UPDATE ledger_records SET body = '{restore}' WHERE record_id = '{}'",
            row.record_id
        );
        exec(&ledger, &sql).await;
    }
    // And the columns stored beside it.
    for (column, value) in [
        ("hash", "'0000'"),
        ("signature", "'AAAA'"),
        ("repo_seq", "99"),
    ] {
        let original = match column {
            "hash" => format!("'{}'", row.hash),
            "signature" => format!("'{}'", row.signature),
            _ => row.repo_seq.to_string(),
        };
        let set = |v: &str| {
            format!(
                "UPDATE ledger_records SET {column} = {v} WHERE record_id = '{}'",
                row.record_id
            )
        };
        exec(&ledger, &set(value)).await;
        let report = ledger.verify(&key().verifying_key()).await.unwrap();
        assert_eq!(report.broken.len(), 1, "{column}: {report:?}");
        exec(&ledger, &set(&original)).await;
    }
    assert!(
        ledger
            .verify(&key().verifying_key())
            .await
            .unwrap()
            .broken
            .is_empty()
    );

    // Swapping two records (their contents change places) breaks the chain at the first.
    let (a, b) = (&chain[1], &chain[2]);
    for (target, source) in [(a, b), (b, a)] {
        exec(
            &ledger,
            &format!(
                "UPDATE ledger_records SET body = '{}', signature = '{}', hash = '{}', record_id = '{}-tmp' WHERE repo = 'acme/fraud' AND repo_seq = {}",
                source.body, source.signature, source.hash, source.record_id, target.repo_seq
            ),
        )
        .await;
    }
    let report = ledger.verify(&key().verifying_key()).await.unwrap();
    assert_eq!(report.broken.len(), 1, "{report:?}");
    assert_eq!(report.broken[0].repo, "acme/fraud");
    for (target, original) in [(a, a), (b, b)] {
        exec(
            &ledger,
            &format!(
                "UPDATE ledger_records SET body = '{}', signature = '{}', hash = '{}', record_id = '{}' WHERE repo = 'acme/fraud' AND repo_seq = {}",
                original.body, original.signature, original.hash, original.record_id, target.repo_seq
            ),
        )
        .await;
    }
    assert!(
        ledger
            .verify(&key().verifying_key())
            .await
            .unwrap()
            .broken
            .is_empty()
    );

    // Deleting a record is found at the record after it.
    exec(
        &ledger,
        &format!("DELETE FROM ledger_records WHERE record_id = '{}'", ids[1]),
    )
    .await;
    let report = ledger.verify(&key().verifying_key()).await.unwrap();
    assert_eq!(report.broken.len(), 1, "{report:?}");
    assert_eq!(report.broken[0].record_id, ids[2]);
    assert!(
        report.broken[0].problem.contains("missing"),
        "{}",
        report.broken[0].problem
    );

    // A record signed by another key does not verify.
    let other = SigningKey::from_bytes(&[1u8; 32]);
    let report = ledger.verify(&other.verifying_key()).await.unwrap();
    assert_eq!(report.broken.len(), 2);
    ledger.pool().close().await;
}

async fn concurrent(db: TestDb) {
    let ledger = Arc::new(Ledger::open(&db.url).await.unwrap());
    let mut tasks = Vec::new();
    for t in 0..8 {
        let ledger = Arc::clone(&ledger);
        tasks.push(tokio::spawn(async move {
            for n in 0..10 {
                ledger
                    .append(&key(), "k", draft("acme/busy", t * 100 + n, "dana"))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let chain = ledger.records(Some("acme/busy")).await.unwrap();
    assert_eq!(chain.len(), 80);
    assert_eq!(
        chain.iter().map(|r| r.repo_seq).collect::<Vec<_>>(),
        (1..=80).collect::<Vec<_>>()
    );
    let report = ledger.verify(&key().verifying_key()).await.unwrap();
    assert!(report.broken.is_empty(), "{report:?}");
    ledger.pool().close().await;
    db.drop_database().await;
}

#[tokio::test]
async fn sqlite_ledger_detects_every_tampering() {
    suite(sqlite()).await;
}

#[tokio::test]
async fn postgres_ledger_detects_every_tampering() {
    if let Some(db) = postgres().await {
        suite(db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_appends_keep_one_chain() {
    concurrent(sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_appends_keep_one_chain() {
    if let Some(db) = postgres().await {
        concurrent(db).await;
    }
}

#[tokio::test]
async fn several_openers_of_one_empty_postgres_database_agree_on_the_schema() {
    let Some(db) = postgres().await else { return };
    let opens: Vec<_> = (0..4).map(|_| Ledger::open(&db.url)).collect();
    for result in futures_util::future::join_all(opens).await {
        result.unwrap().pool().close().await;
    }
    db.drop_database().await;
}
