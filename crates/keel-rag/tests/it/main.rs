//! keel-rag against the real MiniLM model (fetched by scripts/test.sh into the asset cache): embeddings pinned
//! to sentence-transformers' values (MiniLM and MPNet), incremental re-ingest, deletes across both indexes, bad files, answers
//! with citations, groundedness, and the local LLM.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use keel_rag::collection::{Collection, CollectionConfig, Mode};
use keel_rag::query::{QueryOptions, answer, check_generated, retrieve};
use keel_rag::{Embedder, MiniLm};

fn model() -> Arc<MiniLm> {
    static M: OnceLock<Arc<MiniLm>> = OnceLock::new();
    M.get_or_init(|| {
        let dir = keel_core::cache_dir().join("all-MiniLM-L6-v2");
        Arc::new(MiniLm::load(&dir).unwrap_or_else(|e| {
            panic!("{e}: run scripts/fetch-assets.sh minilm (scripts/test.sh does)")
        }))
    })
    .clone()
}

fn write(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

const COPY: &str = "# Objects\n\n## How do I copy an object?\n\nUse copy.copy for a shallow copy and copy.deepcopy for a deep copy. Dictionaries also have a dict.copy method.\n\n## How do I compare objects?\n\nUse == to compare values and `is` to compare identity.\n";
const TREES: &str = "Trees\n=====\n\nWhy are the leaves green?\n-------------------------\n\nLeaves contain chlorophyll, a pigment that absorbs red and blue light and reflects green light.\n\nHow tall do redwoods grow?\n--------------------------\n\nCoast redwoods are the tallest trees on Earth and grow to more than 110 metres.\n";
const SHIPS: &str = "<html><body><h1>Sailing</h1><h2>What is a keel?</h2><p>A keel is the structural spine along the bottom of a ship's hull; it keeps the ship upright and on course.</p></body></html>";

fn ingest(root: &Path, name: &str, path: &Path) -> keel_rag::IngestReport {
    Collection::ingest(
        root,
        name,
        path,
        model().as_ref(),
        Some(CollectionConfig::default()),
        None,
        &mut |_, _| {},
    )
    .unwrap()
}

#[test]
fn embeddings_match_sentence_transformers() {
    // Reference: sentence-transformers 5.1.2, all-MiniLM-L6-v2, normalize_embeddings=True.
    let v = model()
        .embed(&["This is an example sentence", "Each sentence is converted"])
        .unwrap();
    let want0 = [
        0.067657, 0.063496, 0.048713, 0.079305, 0.037448, 0.002653, 0.039375, -0.007098,
    ];
    let want1 = [
        0.086439, 0.102763, 0.005395, 0.002044, -0.009963, 0.025385, 0.049288, -0.030627,
    ];
    assert_eq!(v[0].len(), 384);
    for (got, want) in v[0].iter().zip(want0).chain(v[1].iter().zip(want1)) {
        assert!((got - want).abs() < 2e-5, "{got} vs {want}");
    }
    let cos: f32 = v[0].iter().zip(&v[1]).map(|(a, b)| a * b).sum();
    assert!((cos - 0.404_559).abs() < 1e-4, "cosine {cos}");
    // Batched with a much longer text (padding in the batch) gives the same vector as alone.
    let long = "word ".repeat(120);
    let batched = model()
        .embed(&[long.as_str(), "This is an example sentence"])
        .unwrap();
    for (a, b) in batched[1].iter().zip(&v[0]) {
        assert!((a - b).abs() < 1e-5);
    }
}

#[test]
fn mpnet_embeddings_match_sentence_transformers() {
    // The second local model, all-mpnet-base-v2 (relative-position bias, no token types, positions from 2).
    // Reference: sentence-transformers 5.1.2, normalize_embeddings=True.
    let dir = keel_core::cache_dir().join("all-mpnet-base-v2");
    let m = MiniLm::load(&dir).unwrap_or_else(|e| {
        panic!("{e}: run scripts/fetch-assets.sh mpnet (scripts/test.sh does)")
    });
    assert_eq!(m.model(), keel_rag::LocalModel::MpNet);
    assert_eq!(m.id(), "sentence-transformers/all-mpnet-base-v2");
    assert_eq!((m.dim(), m.window()), (768, 384));
    let v = m
        .embed(&["This is an example sentence", "Each sentence is converted"])
        .unwrap();
    let want0 = [
        0.022503, -0.078292, -0.023031, -0.0051, -0.08034, 0.039132, 0.011343, 0.003465,
    ];
    let want1 = [
        0.041702, 0.001097, -0.015534, 0.070922, -0.001773, 0.046611, -0.021068, 0.021534,
    ];
    for (got, want) in v[0].iter().zip(want0).chain(v[1].iter().zip(want1)) {
        assert!((got - want).abs() < 2e-5, "{got} vs {want}");
    }
    let cos: f32 = v[0].iter().zip(&v[1]).map(|(a, b)| a * b).sum();
    assert!((cos - 0.404_885).abs() < 1e-4, "cosine {cos}");
    // 301 words: past the 128 positions where the relative buckets saturate, inside the window.
    let long = format!("{} tail", "word ".repeat(300));
    let w = m.embed(&[long.as_str()]).unwrap();
    for (got, want) in w[0].iter().zip([0.005079, -0.00121, 0.028016, 0.034029]) {
        assert!((got - want).abs() < 5e-5, "{got} vs {want}");
    }
}

#[test]
fn reingest_embeds_only_changes_and_removes_deleted_files_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, docs) = (tmp.path().join("rag"), tmp.path().join("docs"));
    write(&docs, "copy.md", COPY.as_bytes());
    write(&docs, "trees.rst", TREES.as_bytes());
    write(&docs, "ships.html", SHIPS.as_bytes());
    let r = ingest(&root, "kb", &docs);
    assert_eq!((r.documents, r.added, r.updated, r.unchanged), (3, 3, 0, 0));
    assert!(r.chunks >= 5 && r.embedded_chunks == r.chunks, "{r:?}");

    // Nothing changed: nothing embedded.
    let r = ingest(&root, "kb", &docs);
    assert_eq!(
        (
            r.documents,
            r.added,
            r.updated,
            r.unchanged,
            r.embedded_chunks
        ),
        (3, 0, 0, 3, 0)
    );

    // One file edited: only its chunks are embedded again, and the new text is searchable.
    write(
        &docs,
        "trees.rst",
        TREES
            .replace("110 metres", "115 metres, taller than any baobab")
            .as_bytes(),
    );
    let r = ingest(&root, "kb", &docs);
    assert_eq!((r.added, r.updated, r.unchanged), (0, 1, 2));
    let c = Collection::open(&root, "kb").unwrap();
    let trees_chunks = c
        .chunks
        .iter()
        .filter(|ch| ch.document == "trees.rst")
        .count();
    assert_eq!(r.embedded_chunks, trees_chunks);
    let hits = c.bm25("baobab", 5).unwrap();
    assert_eq!(c.chunks[hits[0].0 as usize].document, "trees.rst");

    // A file gone from the folder leaves BM25, the ANN graph and the chunk list together.
    std::fs::remove_file(docs.join("ships.html")).unwrap();
    let r = ingest(&root, "kb", &docs);
    assert_eq!((r.documents, r.removed), (2, 1));
    let c = Collection::open(&root, "kb").unwrap();
    assert!(c.chunks.iter().all(|ch| ch.document != "ships.html"));
    let q = model().embed(&["What is a keel on a ship?"]).unwrap();
    for mode in [Mode::Bm25, Mode::Dense, Mode::Hybrid, Mode::Rrf] {
        let hits = c
            .search("keel ship hull", Some(&q[0]), mode, 10, None)
            .unwrap();
        assert!(
            hits.iter()
                .all(|h| c.chunks[h.ord as usize].document != "ships.html"),
            "{mode:?}"
        );
        assert!(hits.iter().all(|h| (h.ord as usize) < c.chunks.len()));
    }
    // Exactly one generation directory remains.
    let gens = std::fs::read_dir(root.join("kb"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("gen-")
        })
        .count();
    assert_eq!(gens, 1);
}

#[test]
fn deleting_a_document_removes_it_from_both_indexes() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, docs) = (tmp.path().join("rag"), tmp.path().join("docs"));
    write(&docs, "copy.md", COPY.as_bytes());
    write(&docs, "trees.rst", TREES.as_bytes());
    ingest(&root, "kb", &docs);
    let before = Collection::open(&root, "kb").unwrap();
    let q = model().embed(&["Why are leaves green?"]).unwrap();
    let dense = before.dense(&q[0], 3);
    assert_eq!(before.chunks[dense[0].0 as usize].document, "trees.rst");
    assert_eq!(
        Collection::delete_documents(&root, "kb", &["trees.rst".into()]).unwrap(),
        1
    );
    let after = Collection::open(&root, "kb").unwrap();
    assert!(after.chunks.iter().all(|c| c.document == "copy.md"));
    assert!(after.bm25("chlorophyll", 10).unwrap().is_empty());
    let dense = after.dense(&q[0], 10);
    assert_eq!(dense.len(), after.chunks.len());
    assert!(
        dense
            .iter()
            .all(|(o, _)| after.chunks[*o as usize].document == "copy.md")
    );
    // Unknown names change nothing.
    assert_eq!(
        Collection::delete_documents(&root, "kb", &["nope.md".into()]).unwrap(),
        0
    );
}

#[test]
fn bad_files_are_skipped_with_reasons_and_nothing_half_indexed() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, docs) = (tmp.path().join("rag"), tmp.path().join("docs"));
    write(&docs, "good.md", COPY.as_bytes());
    write(&docs, "empty.md", b"");
    write(&docs, "latin1.txt", b"caf\xe9 cr\xe8me");
    write(&docs, "binary.txt", b"\x89PNG\r\n\x1a\n\0\0\0IHDR");
    write(&docs, "image.png", b"\x89PNG");
    let big = "lorem ipsum dolor sit amet ".repeat(2_000_000); // 54 MB
    write(&docs, "big.txt", big.as_bytes());
    let r = ingest(&root, "kb", &docs);
    assert_eq!(r.documents, 1, "{r:?}");
    let reason = |p: &str| {
        r.skipped
            .iter()
            .find(|s| s.path == p)
            .map(|s| s.reason.clone())
            .unwrap_or_else(|| panic!("{p} not skipped: {r:?}"))
    };
    assert!(reason("empty.md").contains("empty"));
    assert!(reason("latin1.txt").contains("not UTF-8"));
    assert!(reason("latin1.txt").contains("offset 3"));
    assert!(reason("binary.txt").contains("binary"));
    assert!(reason("image.png").contains("unsupported"));
    assert!(reason("big.txt").contains("too large"));
    let c = Collection::open(&root, "kb").unwrap();
    assert!(c.chunks.iter().all(|ch| ch.document == "good.md"));
}

#[test]
fn unknown_collections_and_oversized_questions_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let e = Collection::open(tmp.path(), "missing").err().unwrap();
    assert!(matches!(e, keel_rag::Error::UnknownCollection(_)), "{e}");
    assert!(e.to_string().contains("keel rag ingest"));
    assert!(matches!(
        Collection::open(tmp.path(), "../etc"),
        Err(keel_rag::Error::Invalid(_))
    ));
    let q = "why ".repeat(25_000); // 100 KB
    let e = keel_rag::query::check_question(&q).err().unwrap();
    assert!(
        e.to_string().contains("99999 bytes; the limit is 8192"),
        "{e}"
    );
    assert!(keel_rag::query::check_question("   ").is_err());
}

#[test]
fn answers_cite_their_chunks_and_refuse_what_the_documents_do_not_say() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, docs) = (tmp.path().join("rag"), tmp.path().join("docs"));
    write(&docs, "copy.md", COPY.as_bytes());
    write(&docs, "trees.rst", TREES.as_bytes());
    write(&docs, "ships.html", SHIPS.as_bytes());
    ingest(&root, "kb", &docs);
    let c = Collection::open(&root, "kb").unwrap();
    let opts = QueryOptions::default();
    let r = answer(&c, model().as_ref(), "How do I make a deep copy?", &opts).unwrap();
    assert!(r.confident && r.grounded, "{r:?}");
    assert!(r.answer.contains("copy.deepcopy"), "{}", r.answer);
    assert_eq!(r.citations[0].document, "copy.md");
    assert_eq!(r.citations[0].section, "How do I copy an object?");
    assert!(r.answer.contains("[1]"));
    let r = answer(&c, model().as_ref(), "What is a keel?", &opts).unwrap();
    assert_eq!(r.citations[0].document, "ships.html");
    assert!(r.answer.contains("spine"), "{}", r.answer);
    // Nothing in these documents is about tax law.
    let r = answer(
        &c,
        model().as_ref(),
        "What is the capital gains tax rate in Portugal?",
        &opts,
    )
    .unwrap();
    assert!(!r.confident, "{r:?}");
    assert_eq!(r.answer, keel_rag::query::NOT_FOUND);
}

#[test]
fn a_planted_unsupported_sentence_is_flagged() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, docs) = (tmp.path().join("rag"), tmp.path().join("docs"));
    write(&docs, "trees.rst", TREES.as_bytes());
    ingest(&root, "kb", &docs);
    let c = Collection::open(&root, "kb").unwrap();
    let (cites, _) = retrieve(
        &c,
        model().as_ref(),
        "Why are the leaves green?",
        &QueryOptions::default(),
    )
    .unwrap();
    let generated = "Leaves contain chlorophyll, which reflects green light [1]. \
                     Oak trees were first planted on the Moon by astronauts in 1972 [1].";
    let (grounded, sentences) = check_generated(&c, generated, &cites, 0.6);
    assert!(!grounded);
    assert_eq!(sentences.len(), 2);
    assert!(sentences[0].supported, "{sentences:?}");
    assert!(!sentences[1].supported, "{sentences:?}");
    assert!(sentences[1].text.starts_with("Oak trees"));
}

#[test]
fn the_local_llm_answers_in_chatml_and_stops() {
    let path = keel_core::cache_dir()
        .join("smollm2")
        .join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let llm = keel_rag::LocalLlm::load(&path)
        .unwrap_or_else(|e| panic!("{e}: run scripts/fetch-assets.sh smollm2"));
    // The tokenizer read from the GGUF file keeps ChatML's control tokens whole.
    let ids = llm.encode("<|im_start|>user\nHi<|im_end|>").unwrap();
    assert_eq!(ids[0], 1);
    assert_eq!(*ids.last().unwrap(), 2);
    let mut streamed = String::new();
    let g = llm
        .chat(
            &[keel_rag::ChatMessage::new(
                "user",
                "What is the capital of France? Answer with one word.",
            )],
            &keel_rag::GenOptions {
                max_tokens: 12,
                ..Default::default()
            },
            &mut |piece| {
                streamed.push_str(piece);
                true
            },
        )
        .unwrap();
    assert_eq!(streamed, g.text);
    assert!(g.text.contains("Paris"), "{:?}", g.text);
    assert!(g.completion_tokens <= 12 && g.prompt_tokens > 10);
    // A callback that says stop stops generation after the first piece.
    let mut pieces = 0;
    let g = llm
        .chat(
            &[keel_rag::ChatMessage::new(
                "user",
                "Count from one to twenty.",
            )],
            &keel_rag::GenOptions {
                max_tokens: 40,
                ..Default::default()
            },
            &mut |_| {
                pieces += 1;
                false
            },
        )
        .unwrap();
    assert_eq!(pieces, 1);
    assert_eq!(g.finish, keel_rag::llm::Finish::Cancelled);
}

#[test]
fn a_question_longer_than_the_window_is_embedded_whole_not_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    write(&docs, "copy.md", COPY.as_bytes());
    write(&docs, "trees.rst", TREES.as_bytes());
    write(&docs, "ships.html", SHIPS.as_bytes());
    let root = dir.path().join("rag");
    ingest(&root, "kb", &docs);
    let c = Collection::open(&root, "kb").unwrap();
    // 320 words of a user's preamble about sailing (past MiniLM's 256-token window), then the question.
    let preamble =
        "I have been sailing small boats on the lake every weekend with my family and friends. "
            .repeat(20);
    let question =
        format!("{preamble} Anyway, my real question: why are the leaves of trees green?");
    let m = model();
    assert!(m.count_tokens(&question) > 300);
    // Truncation sees only the preamble: its vector is the preamble's.
    let truncated = m.embed(&[question.as_str()]).unwrap().remove(0);
    let preamble_only = m.embed(&[preamble.as_str()]).unwrap().remove(0);
    let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    assert!(cos(&truncated, &preamble_only) > 0.99);
    let leaves = |o: u32| c.chunks[o as usize].section == "Why are the leaves green?";
    let truncated_top: Vec<u32> = c.dense(&truncated, 2).iter().map(|h| h.0).collect();
    assert!(
        !truncated_top.iter().any(|&o| leaves(o)),
        "{truncated_top:?}"
    );
    // The windowed embedding keeps the question at the end: the leaves chunk is among the first two.
    let whole = keel_rag::embed::embed_query(m.as_ref(), &question).unwrap();
    assert!((cos(&whole, &whole) - 1.0).abs() < 1e-4);
    let top: Vec<u32> = c.dense(&whole, 2).iter().map(|h| h.0).collect();
    assert!(
        top.iter().any(|&o| leaves(o)),
        "{:?}",
        top.iter()
            .map(|&o| &c.chunks[o as usize].section)
            .collect::<Vec<_>>()
    );
}
