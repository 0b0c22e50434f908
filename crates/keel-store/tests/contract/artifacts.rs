//! Artifacts, on local files and on a real S3-compatible server (SeaweedFS, started by scripts/test.sh).

use crate::{Env, contract, version};
use keel_store::Error;

contract!(artifacts_round_trip_and_corruption_is_caught);
/// A model blob round-trips byte for byte (a few MB, as real models are); a blob changed behind the store's
/// back is refused with both checksums; a run's artifacts live beside the models.
async fn artifacts_round_trip_and_corruption_is_caught(env: Env) {
    let store = &env.store;
    let mut v = version("big", &[], true);
    v.model_bytes = (0..6_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let rec = store.register(v.clone()).await.unwrap();
    assert!(store.has_artifact(&rec.artifact_uri).await.unwrap());
    assert_eq!(store.model_bytes(&rec).await.unwrap(), v.model_bytes);
    // The same bytes again: content-addressed, one blob.
    let mut again = v.clone();
    again.champion_if_none = false;
    let rec2 = store.register(again).await.unwrap();
    assert_eq!(rec2.artifact_uri, rec.artifact_uri);

    // Another store (a replica, a pod) reads what this one wrote.
    let other = env.another().await;
    let got = other
        .get("big", &keel_store::Selector::Version(1))
        .await
        .unwrap();
    assert_eq!(other.model_bytes(&got).await.unwrap().len(), 6_000_000);
    assert!(store.check().await.unwrap().is_empty());

    // Overwrite the blob with other bytes, as a faulty disk or a person with bucket access would.
    let mut evil = version("evil", &[], true);
    evil.model_bytes = b"not the model".to_vec();
    let evil = store.register(evil).await.unwrap();
    // A remote store keeps a verified copy per pod, so this pod goes on serving the bytes it checked.
    if let Some(path) = store.cached_artifact_path(&rec.artifact_sha256) {
        assert!(
            path.exists(),
            "a remote artifact is cached locally after its first load"
        );
    }
    store
        .debug_overwrite_artifact(&rec.artifact_uri, b"tampered")
        .await
        .unwrap();
    // A new pod (empty cache) downloads the object and refuses it with both checksums.
    let (pod, _pod_home) = env.another_pod().await;
    match pod.model_bytes(&rec).await {
        Err(Error::Corrupt {
            expected, found, ..
        }) => {
            assert_eq!(expected, rec.artifact_sha256);
            assert_ne!(found, expected);
        }
        other => panic!("expected a checksum failure, got {other:?}"),
    }
    // `keel check` reads the stored objects, never local copies.
    let problems = store.check().await.unwrap();
    assert!(problems.iter().any(|p| p.contains("big@1")), "{problems:?}");
    // A cached copy that rots on disk is not trusted either: it is fetched again (and refused here).
    if let Some(path) = store.cached_artifact_path(&rec.artifact_sha256) {
        std::fs::write(&path, b"bit rot").unwrap();
        assert!(matches!(
            store.model_bytes(&rec).await,
            Err(Error::Corrupt { .. })
        ));
    }
    assert!(store.model_bytes(&evil).await.is_ok());

    let run = store
        .create_run(keel_store::NewRun {
            experiment: "e".into(),
            source: "client".into(),
            created_by: "t".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    store
        .put_run_artifact(&run.id, "report/a+b.html", b"<p>hi</p>")
        .await
        .unwrap();
    assert_eq!(
        other
            .run_artifact(&run.id, "report/a+b.html")
            .await
            .unwrap(),
        b"<p>hi</p>"
    );
}
