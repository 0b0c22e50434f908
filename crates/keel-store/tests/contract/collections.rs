//! RAG collections in the shared store: generations as immutable objects, the pointer switched by
//! compare-and-swap.

use crate::{Env, contract};
use keel_store::Error;

fn generation(dir: &std::path::Path, text: &str) {
    std::fs::create_dir_all(dir.join("bm25")).unwrap();
    std::fs::write(
        dir.join("manifest.json"),
        format!("{{\"text\": \"{text}\"}}"),
    )
    .unwrap();
    std::fs::write(dir.join("chunks.jsonl"), text.repeat(1000)).unwrap();
    std::fs::write(dir.join("bm25").join("meta.json"), text).unwrap();
}

contract!(a_collection_generation_is_published_once_and_fetched_anywhere);
/// A generation's files (nested ones too) come back byte for byte into another home; a writer that built on
/// a generation that is no longer current is refused and the pointer stays; each publish is audited.
async fn a_collection_generation_is_published_once_and_fetched_anywhere(env: Env) {
    let store = &env.store;
    let work = tempfile::tempdir().unwrap();
    let g1 = work.path().join("gen-1");
    generation(&g1, "first");
    assert_eq!(store.collection_generation("docs").await.unwrap(), None);
    store
        .publish_collection("docs", "gen-1", &g1, None, "t")
        .await
        .unwrap();
    assert_eq!(
        store
            .collection_generation("docs")
            .await
            .unwrap()
            .as_deref(),
        Some("gen-1")
    );
    // A second first-publish of the same collection loses.
    let e = store
        .publish_collection("docs", "gen-1b", &g1, None, "t")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Conflict(_)), "{e:?}");

    let (pod, _pod_home) = env.another_pod().await;
    let into = work.path().join("fetched");
    assert_eq!(
        pod.fetch_collection("docs", "gen-1", &into).await.unwrap(),
        3
    );
    for f in ["manifest.json", "chunks.jsonl", "bm25/meta.json"] {
        assert_eq!(
            std::fs::read(into.join(f)).unwrap(),
            std::fs::read(g1.join(f)).unwrap(),
            "{f}"
        );
    }

    // Two writers built on gen-1: the first switches it, the second is refused.
    let g2 = work.path().join("gen-2");
    generation(&g2, "second");
    store
        .publish_collection("docs", "gen-2", &g2, Some("gen-1"), "a")
        .await
        .unwrap();
    let g3 = work.path().join("gen-3");
    generation(&g3, "third");
    let e = pod
        .publish_collection("docs", "gen-3", &g3, Some("gen-1"), "b")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("another writer"), "{e}");
    assert_eq!(
        pod.collection_generation("docs").await.unwrap().as_deref(),
        Some("gen-2")
    );
    assert_eq!(
        store.collection_generations().await.unwrap(),
        vec![("docs".to_string(), "gen-2".to_string())]
    );
    // Names that would escape the prefix are refused before anything is written.
    assert!(matches!(
        store.publish_collection("../x", "g", &g1, None, "t").await,
        Err(Error::Invalid { .. })
    ));
    let publishes = store
        .audit_records()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.action == "collection.publish")
        .count();
    assert_eq!(publishes, 2);
}
