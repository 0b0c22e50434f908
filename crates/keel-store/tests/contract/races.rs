//! Concurrency, against each backend: several stores (processes, replicas, workers) over one database.

use crate::{Env, Kind, contract, fresh_config};
use keel_store::{AuditEvent, SCHEMA_VERSION, Store};
use std::collections::BTreeSet;

contract!(eight_workers_claim_a_thousand_jobs_exactly_once);
/// 8 workers race for 1,000 queued jobs: each job is claimed exactly once (Postgres: `FOR UPDATE SKIP
/// LOCKED`; select-then-update double-claimed thousands).
async fn eight_workers_claim_a_thousand_jobs_exactly_once(env: Env) {
    let spec = serde_json::json!({});
    for _ in 0..1_000 {
        env.store
            .enqueue_job("retrain", "m", &spec, "tester")
            .await
            .unwrap();
    }
    let mut workers = Vec::new();
    for w in 0..8 {
        let store = env.another().await;
        workers.push(tokio::spawn(async move {
            let me = format!("worker-{w}");
            let mut got = Vec::new();
            while let Some(job) = store.claim_job(&me).await.unwrap() {
                assert_eq!(job.worker.as_deref(), Some(me.as_str()));
                got.push(job.id);
            }
            got
        }));
    }
    let mut all = Vec::new();
    let mut busy = 0;
    for w in workers {
        let got = w.await.unwrap();
        busy += usize::from(!got.is_empty());
        all.extend(got);
    }
    let unique: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), 1_000, "claims");
    assert_eq!(unique.len(), 1_000, "distinct jobs claimed");
    assert!(busy >= 2, "the workers did race ({busy} claimed any)");
    assert!(env.store.claim_job("late").await.unwrap().is_none());
}

contract!(sixteen_appenders_keep_one_chain);
/// 16 writers append 100 audit records each at once: 1,600 records in one unbroken chain.
async fn sixteen_appenders_keep_one_chain(env: Env) {
    let mut tasks = Vec::new();
    for w in 0..16 {
        let store = env.another().await;
        tasks.push(tokio::spawn(async move {
            for i in 0..100 {
                store
                    .audit(AuditEvent::new(
                        &format!("writer-{w}"),
                        "test.append",
                        &format!("{w}/{i}"),
                    ))
                    .await
                    .unwrap();
            }
            store.close().await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let records = env.store.audit_records().await.unwrap();
    assert_eq!(records.len(), 1_600);
    let v = env.store.audit_verify().await.unwrap();
    assert!(v.ok, "{v:?}");
    let seqs: BTreeSet<i64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs.len(), 1_600, "no sequence number twice");
}

/// Two `keel migrate` at once on an empty database: one applies every migration, the other waits and finds
/// nothing to do; a server opening the database before either refuses with what to run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_apply_once_and_servers_never_migrate_postgres() {
    let Some((config, _schema)) = fresh_config(Kind::Postgres).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_path_buf();
    let e = match Store::connect(&home, &config).await {
        Ok(_) => panic!("an unmigrated Postgres opened"),
        Err(e) => e,
    };
    assert!(
        matches!(e, keel_store::Error::SchemaBehind { have: 0, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("keel migrate"), "{e}");
    let (a, b) = tokio::join!(
        Store::migrate(&home, &config),
        Store::migrate(&home, &config)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        [a.applied(), b.applied()].iter().filter(|x| **x).count(),
        1,
        "{a:?} {b:?}"
    );
    assert_eq!((a.to, b.to), (SCHEMA_VERSION, SCHEMA_VERSION));
    let store = Store::connect(&home, &config).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    let again = Store::migrate(&home, &config).await.unwrap();
    assert!(!again.applied());
    // Drop the schema the fixture made.
    drop(store);
    if let Some((schema, base)) = _schema {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&base).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&mut c)
            .await
            .unwrap();
    }
}
