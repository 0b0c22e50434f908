//! The audit log: every change recorded, tampering of each kind detected, crashes leave a verifiable chain.

use crate::*;
use std::process::Command;

pub(crate) fn verify(home: &Path) -> (i32, serde_json::Value) {
    let o = keel(home, &["audit", "verify", "--json"]);
    (o.status.code().unwrap_or(-1), stdout_json(&o))
}

/// A home with a registered model, two versions, an alias move and a key: six audited changes.
fn audited_home(dir: &Path) -> PathBuf {
    let home = dir.join("home");
    let data = seed_registry(&home, dir);
    let o = keel(
        &home,
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--target",
            "y",
            "--name",
            "seed",
            "--trees",
            "10",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for args in [
        vec!["models", "alias", "seed", "champion", "2"],
        vec!["keys", "create", "--role", "reader", "--json"],
        vec!["models", "rollback", "seed", "--json"],
    ] {
        let o = keel(&home, &args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    }
    home
}

fn sql(home: &Path, statement: &str) {
    let url = format!("sqlite://{}", home.join("registry.db").display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_string()))
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
    });
}

fn export(home: &Path) -> Vec<serde_json::Value> {
    let o = keel(home, &["audit", "export"]);
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn every_change_is_recorded_with_actor_before_and_after() {
    let dir = tempfile::tempdir().unwrap();
    let home = audited_home(dir.path());
    let log = export(&home);
    let actions: Vec<&str> = log.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "model.register",
            "model.register",
            "alias.set",
            "key.create",
            "alias.set"
        ]
    );
    // The rollback moved champion from 2 back to 1, and says so.
    let last = &log[4];
    assert_eq!(last["target"], "seed@champion");
    assert_eq!(last["before"]["version"], 2);
    assert_eq!(last["after"]["version"], 1);
    assert!(!last["actor"].as_str().unwrap().is_empty());
    for (i, r) in log.iter().enumerate() {
        assert_eq!(r["seq"], i as i64 + 1);
        if i > 0 {
            assert_eq!(r["prev_hash"], log[i - 1]["hash"]);
        }
    }
    let show = stdout_json(&keel(&home, &["models", "show", "seed@champion", "--json"]));
    assert_eq!(show["version"], 1);
    assert_eq!(
        verify(&home),
        (
            0,
            serde_json::json!({"ok": true, "records": 5, "first_bad": null, "problem": null, "signature": "unsigned"})
        )
    );
}

#[test]
fn each_kind_of_tampering_is_detected_and_named() {
    let cases: [(&str, &str, i64); 5] = [
        (
            "edit",
            "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3",
            3,
        ),
        ("delete", "DELETE FROM audit_log WHERE seq = 2", 2),
        (
            "insert",
            "UPDATE audit_log SET seq = seq + 10 WHERE seq >= 3; UPDATE audit_log SET seq = seq - 9 WHERE seq >= 13; \
             INSERT INTO audit_log SELECT 3, at, 'mallory', action, target, before, after, evidence, prev_hash, hash FROM audit_log WHERE seq = 2",
            3,
        ),
        (
            "reorder",
            "UPDATE audit_log SET seq = 100 WHERE seq = 2; UPDATE audit_log SET seq = 2 WHERE seq = 3; UPDATE audit_log SET seq = 3 WHERE seq = 100",
            2,
        ),
        ("truncate", "DELETE FROM audit_log WHERE seq = 5", 5),
    ];
    for (name, statement, first_bad) in cases {
        let dir = tempfile::tempdir().unwrap();
        let home = audited_home(dir.path());
        assert_eq!(verify(&home).0, 0, "{name}: intact before tampering");
        sql(&home, statement);
        let (code, v) = verify(&home);
        assert_eq!(code, 1, "{name}: {v}");
        assert_eq!(v["ok"], false, "{name}");
        assert_eq!(v["first_bad"], first_bad, "{name}: {v}");
        assert!(
            v["problem"].as_str().is_some_and(|p| !p.is_empty()),
            "{name}"
        );
    }
}

#[test]
fn a_crash_during_an_alias_move_or_an_audit_append_leaves_a_verifiable_chain() {
    let dir = tempfile::tempdir().unwrap();
    let home = audited_home(dir.path());
    let before = registry_snapshot(&home);
    // Before the commit: neither the move nor its record may survive.
    for point in [
        "registry.alias_before_audit",
        "audit.after_insert",
        "audit.before_commit",
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(["models", "alias", "seed", "champion", "2"])
            .env("KEEL_HOME", &home)
            .env("KEEL_FAILPOINT", point)
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            None,
            "{point}: expected an abort: {}",
            stderr(&o)
        );
        assert_eq!(
            registry_snapshot(&home),
            before,
            "{point}: the registry changed"
        );
        assert_eq!(verify(&home).1["ok"], true, "{point}");
        assert_eq!(export(&home).len(), 5, "{point}");
    }
    // After the commit, before the head moves: the move and its record are both there, and the chain verifies.
    let o = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["models", "alias", "seed", "champion", "2"])
        .env("KEEL_HOME", &home)
        .env("KEEL_FAILPOINT", "audit.before_head")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), None);
    let show = stdout_json(&keel(&home, &["models", "show", "seed@champion", "--json"]));
    assert_eq!(show["version"], 2);
    let (code, v) = verify(&home);
    assert_eq!((code, &v["records"]), (0, &serde_json::json!(6)), "{v}");
    // And the next change carries on from there.
    let o = keel(&home, &["models", "rollback", "seed"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(verify(&home).1["records"], 7);
}

/// `keel audit keygen`, writers holding the secret in their environment, and `verify --public-key`: a valid
/// signature is reported; a head rewritten without the secret, or a public key that is not the writer's,
/// fails verification.
#[test]
fn a_signed_audit_head_verifies_only_with_the_writers_key() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let keys = stdout_json(&keel(&home, &["audit", "keygen", "--json"]));
    let (secret, public) = (
        keys["secret"].as_str().unwrap().to_string(),
        keys["public"].as_str().unwrap().to_string(),
    );
    let data = fixture_csv(dir.path(), "d.csv", 300);
    let signed = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(args)
            .env("KEEL_HOME", &home)
            .env("KEEL_AUDIT_SIGNING_KEY", &secret)
            .output()
            .unwrap()
    };
    let o = signed(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--target",
        "y",
        "--name",
        "s",
        "--trees",
        "5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = signed(&["models", "alias", "s", "staging", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = keel(
        &home,
        &["audit", "verify", "--json", "--public-key", &public],
    );
    let v = stdout_json(&o);
    assert_eq!(
        (o.status.code(), v["signature"].as_str()),
        (Some(0), Some("valid")),
        "{v}"
    );
    // Another key: refused.
    let other = stdout_json(&keel(&home, &["audit", "keygen", "--json"]));
    let o = keel(
        &home,
        &[
            "audit",
            "verify",
            "--json",
            "--public-key",
            other["public"].as_str().unwrap(),
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // A write by a process without the key leaves an unsigned head: verification with the key fails.
    let o = keel(&home, &["models", "alias", "s", "canary", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = keel(&home, &["audit", "verify", "--public-key", &public]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("not signed"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}
