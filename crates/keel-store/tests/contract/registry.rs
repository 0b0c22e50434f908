//! The registry's behaviour, on every backend.

use crate::{Env, contract, version};
use keel_store::{Backend, Error, Feedback, LoggedPrediction, Selector};
use keel_store::{MetricPoint, NewRun, RunBatch, RunFilter, RunStatus};

contract!(a_bare_name_is_the_champion_not_the_newest_version);
/// A challenger registered after the champion is newer, but a bare name still means the champion; the
/// listing shows the champion's metrics and every alias.
async fn a_bare_name_is_the_champion_not_the_newest_version(env: Env) {
    let store = &env.store;
    let v1 = store.register(version("m", &[], true)).await.unwrap();
    assert_eq!(
        v1.aliases,
        vec!["champion".to_string()],
        "first version becomes champion"
    );
    let v2 = store
        .register(version("m", &["challenger"], false))
        .await
        .unwrap();
    assert_eq!(v2.aliases, vec!["challenger".to_string()]);
    // A later plain registration does not take the champion either.
    let v3 = store.register(version("m", &[], true)).await.unwrap();
    assert!(v3.aliases.is_empty(), "{:?}", v3.aliases);
    let (name, sel) = Selector::parse("m").unwrap();
    assert_eq!(store.get(&name, &sel).await.unwrap().version, 1);
    let listed = store.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].latest_version, 3);
    assert_eq!(listed[0].versions, 3);
    let champion = listed[0].champion.as_ref().unwrap();
    assert_eq!(champion.version, 1);
    assert_eq!(champion.metrics["auc"], 0.0);
    assert_eq!(listed[0].aliases.get("challenger"), Some(&2));
    assert_eq!(listed[0].aliases.get("champion"), Some(&1));

    // A model without a champion: a bare name is refused with what to do.
    store
        .register(version("solo", &["staging"], false))
        .await
        .unwrap();
    let (name, sel) = Selector::parse("solo").unwrap();
    let e = store.get(&name, &sel).await.unwrap_err();
    assert!(matches!(e, Error::NoAlias { .. }), "{e:?}");
    assert!(
        e.to_string().contains("keel models alias solo champion"),
        "{e}"
    );
    assert!(store.get("solo", &Selector::Version(1)).await.is_ok());
}

contract!(the_prediction_log_keeps_what_retention_allows_and_labels_go_with_their_rows);
async fn the_prediction_log_keeps_what_retention_allows_and_labels_go_with_their_rows(env: Env) {
    let store = &env.store;
    let rows: Vec<LoggedPrediction> = (0..100)
        .map(|i| LoggedPrediction {
            model: "m".into(),
            version: 1,
            request_id: format!("r{i}"),
            row: 0,
            at_ms: 1_000 + i,
            features: vec![1.0],
            output: 0.5,
            shadow: None,
            probabilities: None,
            shadow_probabilities: None,
        })
        .collect();
    store.log_predictions(&rows).await.unwrap();
    let label = |id: &str| Feedback {
        request_id: id.into(),
        row: 0,
        label: 1.0,
    };
    store
        .put_labels("m", &[label("r5"), label("r95")], "t")
        .await
        .unwrap();
    // Age: everything before at_ms 1,010 goes (r0..r9), with r5's label.
    assert_eq!(store.prune_prediction_log(1_010, 1_000).await.unwrap(), 10);
    // Size: at most 50 rows remain, the newest.
    assert_eq!(store.prune_prediction_log(0, 50).await.unwrap(), 40);
    let left = store.labelled("m", 0).await.unwrap();
    assert_eq!(left.len(), 1, "r95's label stays with its row");
    let out = store
        .put_labels("m", &[label("r49"), label("r50")], "t")
        .await
        .unwrap();
    assert_eq!((out.stored, out.unknown), (1, 1), "r49 is gone, r50 kept");
}

contract!(a_signed_head_catches_a_rewrite_made_without_the_key);
/// With a signing key outside the home, rewriting history needs the key: a head rewritten to match an
/// edited log fails the signature check, as does a head signed by another key.
async fn a_signed_head_catches_a_rewrite_made_without_the_key(env: Env) {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let public = key.verifying_key();
    let other = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]).verifying_key();
    let store = env.another().await.with_audit_signer(key);
    store.register(version("m", &[], true)).await.unwrap();
    store.set_alias("m", "staging", 1, "tester").await.unwrap();
    let v = store.audit_verify_signed(Some(&public)).await.unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!(v.signature.as_deref(), Some("valid"));
    assert!(!store.audit_verify_signed(Some(&other)).await.unwrap().ok);
    // Without a trusted key the chain still verifies and says the signature was not checked.
    let v = store.audit_verify().await.unwrap();
    assert_eq!((v.ok, v.signature.as_deref()), (true, Some("unchecked")));
    // An attacker with write access to the database and the home, but not the key, drops the last
    // record and rewrites the head to match: the chain is consistent again, the signature is not.
    let records = store.audit_records().await.unwrap();
    let last = records.last().unwrap().seq;
    let prev = &records[records.len() - 2];
    match env.backend {
        Backend::Sqlite => {
            env.raw_sql(&format!("DELETE FROM audit_log WHERE seq = {last}"))
                .await;
            let forged = serde_json::json!({"seq": prev.seq, "hash": prev.hash, "pending": null});
            std::fs::write(
                env.home.join("audit.head"),
                serde_json::to_vec(&forged).unwrap(),
            )
            .unwrap();
        }
        Backend::Postgres => {
            env.raw_sql(&format!(
                "DELETE FROM audit_log WHERE seq = {last};
                 UPDATE audit_head SET seq = {}, hash = '{}', signature = NULL",
                prev.seq, prev.hash
            ))
            .await;
        }
    }
    assert!(
        store.audit_verify().await.unwrap().ok,
        "without the key it looks intact"
    );
    let v = store.audit_verify_signed(Some(&public)).await.unwrap();
    assert!(!v.ok, "{v:?}");
    assert!(v.problem.unwrap().contains("not signed"));
}

contract!(versions_are_archived_and_deleted_only_when_nothing_points_at_them);
/// Deleting and archiving respect what points at a version; numbers are never reused; a blob shared by
/// two versions outlives the first deletion; every change is audited.
async fn versions_are_archived_and_deleted_only_when_nothing_points_at_them(env: Env) {
    let store = &env.store;
    let mut shared = version("m", &[], true);
    shared.model_bytes = b"same bytes".to_vec();
    let v1 = store.register(shared.clone()).await.unwrap();
    shared.aliases = vec![];
    shared.champion_if_none = false;
    let v2 = store.register(shared.clone()).await.unwrap();
    assert_eq!(v1.artifact_uri, v2.artifact_uri);
    let v3 = store
        .register(version("m", &["staging"], false))
        .await
        .unwrap();

    // The champion and an aliased version are pinned.
    for v in [1, 3] {
        let e = store.delete_version("m", v, "t").await.unwrap_err();
        assert!(matches!(e, Error::Conflict(_)), "{e}");
        assert!(e.to_string().contains("alias"), "{e}");
        assert!(store.set_archived("m", v, true, "t").await.is_err());
    }
    // Archiving v2 forbids aliasing it until it is restored.
    assert!(store.set_archived("m", 2, true, "t").await.unwrap());
    assert!(
        store
            .get("m", &Selector::Version(2))
            .await
            .unwrap()
            .archived
    );
    let e = store.set_alias("m", "canary", 2, "t").await.unwrap_err();
    assert!(e.to_string().contains("archived"), "{e}");
    assert!(store.set_archived("m", 2, false, "t").await.unwrap());
    store.set_alias("m", "canary", 2, "t").await.unwrap();
    store.set_alias("m", "canary", 1, "t").await.unwrap();

    // Tags and a description.
    let tags: std::collections::BTreeMap<String, String> =
        [("team".to_string(), "risk".to_string())].into();
    store
        .annotate_version("m", 2, Some("weekly retrain"), &tags, "t")
        .await
        .unwrap();
    let got = store.get("m", &Selector::Version(2)).await.unwrap();
    assert_eq!(got.description, "weekly retrain");
    assert_eq!(got.tags, tags);

    // v2 shares its blob with v1: deleting v2 keeps the blob; v1 still loads.
    assert!(!store.delete_version("m", 2, "t").await.unwrap());
    assert!(store.model_bytes(&v1).await.is_ok());
    assert!(matches!(
        store.get("m", &Selector::Version(2)).await,
        Err(Error::UnknownVersion { .. })
    ));
    // v3's own blob goes with it once its alias moved.
    store.set_alias("m", "staging", 1, "t").await.unwrap();
    assert!(store.delete_version("m", 3, "t").await.unwrap());
    assert!(!store.has_artifact(&v3.artifact_uri).await.unwrap());
    // Numbers are not reused: the next version is 4.
    let v4 = store.register(version("m", &[], false)).await.unwrap();
    assert_eq!(v4.version, 4);
    assert_eq!(store.versions("m").await.unwrap().len(), 2);

    let actions: Vec<String> = store
        .audit_records()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.action)
        .collect();
    for a in [
        "model.archive",
        "model.restore",
        "model.annotate",
        "model.delete",
    ] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} missing from {actions:?}"
        );
    }
    assert!(store.audit_verify().await.unwrap().ok);
}

contract!(runs_take_batches_atomically_and_close_when_ended);
/// A run logged in batches: parameters immutable, metrics by step with the latest shown, a bad batch
/// refused whole with the JSON path of the bad entry, an ended run closed to writes.
async fn runs_take_batches_atomically_and_close_when_ended(env: Env) {
    let store = &env.store;
    let run = store
        .create_run(NewRun {
            experiment: "exp".into(),
            name: "first".into(),
            source: "client".into(),
            created_by: "t".into(),
            ..NewRun::default()
        })
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Running);
    let m = |key: &str, step: i64, value: f64| MetricPoint {
        key: key.into(),
        value,
        step,
        timestamp: None,
        lower: None,
        upper: None,
    };
    let batch = RunBatch {
        params: vec![("lr".into(), "0.1".into())],
        metrics: (0..100)
            .map(|s| m("loss", s, 1.0 / (s + 1) as f64))
            .collect(),
        tags: vec![("framework".into(), "torch".into())],
    };
    store.log_run_batch(&run.id, &batch).await.unwrap();
    // The same parameter value again is fine; another value is refused and nothing of that batch lands.
    store.log_run_batch(&run.id, &batch).await.unwrap();
    let bad = RunBatch {
        params: vec![("lr".into(), "0.2".into())],
        metrics: vec![m("acc", 0, 0.5)],
        tags: vec![],
    };
    let e = store.log_run_batch(&run.id, &bad).await.unwrap_err();
    assert!(e.to_string().contains("params[0]"), "{e}");
    let nan = RunBatch {
        metrics: vec![m("acc", 0, 0.5), m("acc", 1, f64::NAN)],
        ..RunBatch::default()
    };
    let e = store.log_run_batch(&run.id, &nan).await.unwrap_err();
    assert!(e.to_string().contains("metrics[1].value"), "{e}");
    let got = store.run(&run.id).await.unwrap();
    assert!(
        !got.metrics.contains_key("acc"),
        "a refused batch left {:?}",
        got.metrics
    );
    assert_eq!(got.metrics["loss"].steps, 100);
    assert_eq!(got.metrics["loss"].step, 99);
    assert_eq!(got.metrics["loss"].value, 0.01);
    assert_eq!(
        store.metric_history(&run.id, "loss").await.unwrap().len(),
        100
    );

    store
        .put_run_artifact(&run.id, "plots/loss.txt", b"down")
        .await
        .unwrap();
    assert_eq!(
        store.run_artifact(&run.id, "plots/loss.txt").await.unwrap(),
        b"down"
    );
    assert!(matches!(
        store.put_run_artifact(&run.id, "../escape", b"x").await,
        Err(Error::InvalidContent { .. })
    ));
    assert!(matches!(
        store.run_artifact(&run.id, "plots/missing.txt").await,
        Err(Error::UnknownArtifact { .. })
    ));

    let ended = store
        .end_run(&run.id, RunStatus::Finished, None)
        .await
        .unwrap();
    assert_eq!(ended.status, RunStatus::Finished);
    let e = store.log_run_batch(&run.id, &batch).await.unwrap_err();
    assert!(matches!(e, Error::Conflict(_)), "{e}");
    assert!(matches!(store.run("nope").await, Err(Error::UnknownRun(_))));

    store
        .create_run(NewRun {
            experiment: "other".into(),
            source: "train".into(),
            created_by: "t".into(),
            ..NewRun::default()
        })
        .await
        .unwrap();
    let only = store
        .runs(&RunFilter {
            experiment: Some("exp".into()),
            limit: None,
        })
        .await
        .unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(store.runs(&RunFilter::default()).await.unwrap().len(), 2);
}
