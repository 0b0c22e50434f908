//! A collection on disk: documents → chunks → vectors, a BM25 index and an HNSW graph, always built together
//! into a fresh generation directory and switched to with one atomic rename of `CURRENT`. A crash mid-ingest
//! leaves `CURRENT` naming the previous generation, so the collection is exactly as it was; leftovers of the
//! interrupted generation are removed by the next writer. Re-ingesting reuses the chunks and vectors of files
//! whose content hash did not change (only changed files are re-embedded); files gone from the ingested
//! folder, and documents deleted by name, leave every index at once because every index is rebuilt from the
//! same chunk list.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::answer::TermStats;
use crate::bm25::Bm25;
use crate::chunk::{Chunk, ChunkOptions, chunk};
use crate::doc::{Format, Refusal, parse, text_of};
use crate::embed::Embedder;
use crate::hnsw::{Hnsw, HnswParams, Metric};
use crate::{Error, Result};

const FORMAT_VERSION: u32 = 1;

/// The confidence floor of a collection nobody calibrated (MiniLM cosine similarity of the best passage).
pub const DEFAULT_MIN_SIMILARITY: f32 = 0.30;

/// Settings of a collection (chosen at its first ingest; fusion is tuned later).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollectionConfig {
    pub chunk: ChunkOptions,
    /// Files larger than this are skipped with a reason.
    pub max_file_bytes: usize,
    /// Weight of the dense score in weighted fusion (1 − weight goes to BM25); tuned by `keel rag tune`.
    pub fusion_weight: f64,
    /// Whether `fusion_weight` was tuned on labelled queries (else it is the default).
    pub tuned: bool,
    /// RRF's rank constant.
    pub rrf_k: f64,
    /// Below this cosine similarity of the best dense hit a question is refused (`confident: false`);
    /// calibrated on labelled answerable and unanswerable questions by `keel rag tune --unanswerable`.
    pub min_similarity: f32,
    /// Whether `min_similarity` was calibrated (else it is the default).
    pub calibrated: bool,
}

impl Default for CollectionConfig {
    fn default() -> Self {
        CollectionConfig {
            chunk: ChunkOptions::default(),
            max_file_bytes: 10 * 1024 * 1024,
            fusion_weight: 0.5,
            tuned: false,
            rrf_k: 60.0,
            min_similarity: DEFAULT_MIN_SIMILARITY,
            calibrated: false,
        }
    }
}

/// One ingested document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocRecord {
    /// Path relative to the folder it was ingested from.
    pub path: String,
    /// That folder (absolute), so re-ingesting it can tell which documents disappeared.
    pub root: String,
    pub sha256: String,
    pub bytes: usize,
    pub format: Format,
    /// Its chunks: ordinals `first_chunk..first_chunk + chunks`.
    pub first_chunk: usize,
    pub chunks: usize,
}

/// What a generation holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub name: String,
    pub embedder: String,
    pub dim: usize,
    pub config: CollectionConfig,
    pub documents: Vec<DocRecord>,
    pub chunks: usize,
    pub generation: String,
}

/// A file that was not ingested, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

/// What an ingest did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IngestReport {
    /// Documents in the collection afterwards.
    pub documents: usize,
    /// Chunks in the collection afterwards.
    pub chunks: usize,
    pub added: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub removed: usize,
    /// Chunks embedded by this ingest (unchanged documents reuse their vectors).
    pub embedded_chunks: usize,
    pub skipped: Vec<Skipped>,
    /// New chunks the injection screen distrusted, with what was done to them.
    pub screened: Vec<Screened>,
    /// How long the collection's chunks are afterwards (tokens of the embedding model, and words).
    #[serde(default)]
    pub chunk_lengths: crate::chunk::ChunkLengths,
}

/// How to retrieve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Bm25,
    Dense,
    /// Reciprocal-rank fusion of both.
    Rrf,
    /// Weighted fusion of min-max-normalised scores, with the collection's tuned weight.
    Hybrid,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Mode, String> {
        match s {
            "bm25" => Ok(Mode::Bm25),
            "dense" => Ok(Mode::Dense),
            "rrf" => Ok(Mode::Rrf),
            "hybrid" => Ok(Mode::Hybrid),
            _ => Err(format!(
                "retrieval mode '{s}' must be bm25, dense, rrf or hybrid"
            )),
        }
    }
}

/// One retrieved chunk.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub ord: u32,
    /// The score the ranking used (fused, BM25 or cosine similarity).
    pub score: f64,
    pub bm25: Option<f32>,
    /// Cosine similarity with the question.
    pub dense: Option<f32>,
}

/// An open collection.
pub struct Collection {
    pub manifest: Manifest,
    pub chunks: Vec<Chunk>,
    /// Whether any chunk is quarantined (searches filter them out only then).
    any_quarantined: bool,
    dir: PathBuf,
    ann: Hnsw,
    bm25: Bm25,
    pub stats: TermStats,
}

/// Candidates taken from each retriever before fusion.
const CANDIDATES: usize = 50;

fn sha256_hex(bytes: &[u8]) -> String {
    hex_lower(&Sha256::digest(bytes))
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Validates a collection name (it becomes a directory name).
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "collection name '{name}' must be 1–64 letters, digits, '-', '_' or '.', not starting with '.'"
        )))
    }
}

fn collection_dir(root: &Path, name: &str) -> Result<PathBuf> {
    validate_name(name)?;
    Ok(root.join(name))
}

fn current_generation(dir: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(dir.join("CURRENT")) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(dir, e)),
    }
}

fn fsync_dir(dir: &Path) {
    if let Ok(f) = File::open(dir) {
        let _ = f.sync_all();
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

/// Atomically replaces `path` (temporary file, fsync, rename, fsync of the directory).
fn replace_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    write_file(&tmp, bytes)?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    if let Some(d) = path.parent() {
        fsync_dir(d);
    }
    Ok(())
}

/// Names of the collections under `root`.
pub fn list(root: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(root) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(root, e)),
    };
    for e in rd.flatten() {
        if e.path().join("CURRENT").exists() {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// Files under `path` (or `path` itself), relative paths sorted, hidden files skipped, symlinks not followed.
pub fn walk(path: &Path) -> Result<(PathBuf, Vec<(String, PathBuf)>)> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_file() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let root = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        return Ok((root, vec![(name, path.to_path_buf())]));
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))?;
        for e in rd {
            let e = e.map_err(|e| Error::io(&d, e))?;
            let ft = e.file_type().map_err(|e| Error::io(&d, e))?;
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                let rel = p
                    .strip_prefix(path)
                    .expect("under the root")
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((rel, p));
            }
        }
    }
    out.sort();
    Ok((path.to_path_buf(), out))
}

/// An exclusive lock on the collection for one writer at a time.
struct WriteLock(#[allow(dead_code)] File);

fn lock(dir: &Path) -> Result<WriteLock> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let p = dir.join("LOCK");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(|e| Error::io(&p, e))?;
    f.lock().map_err(|e| Error::io(&p, e))?;
    Ok(WriteLock(f))
}

/// Removes generation directories other than the current one (leftovers of interrupted writes).
fn clean(dir: &Path, keep: &str) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("gen-") && n != keep {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

fn read_chunks(path: &Path) -> Result<Vec<Chunk>> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        out.push(
            serde_json::from_str(&line)
                .map_err(|e| Error::Corrupt(format!("{}: line {}: {e}", path.display(), i + 1)))?,
        );
    }
    Ok(out)
}

/// Writes a complete generation (chunks, vectors, BM25, manifest; each fsync'd) into a fresh directory, then
/// makes it current with one rename of `CURRENT` and removes older generations. A crash before the rename
/// leaves the previous generation live. The caller holds the collection's write lock.
fn commit_generation(
    dir: &Path,
    mut manifest: Manifest,
    chunks: &[Chunk],
    ann: &Hnsw,
) -> Result<()> {
    let generation = format!(
        "gen-{}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| t.as_nanos()),
        std::process::id()
    );
    manifest.generation = generation.clone();
    let g = dir.join(&generation);
    std::fs::create_dir_all(&g).map_err(|e| Error::io(&g, e))?;
    crate::failpoint("rag.mid_ingest");
    let p = g.join("chunks.jsonl");
    let f = File::create(&p).map_err(|e| Error::io(&p, e))?;
    let mut w = BufWriter::new(f);
    for c in chunks {
        serde_json::to_writer(&mut w, c).map_err(|e| Error::Corrupt(e.to_string()))?;
        w.write_all(b"\n").map_err(|e| Error::io(&p, e))?;
    }
    let f = w.into_inner().map_err(|e| Error::io(&p, e.into_error()))?;
    f.sync_all().map_err(|e| Error::io(&p, e))?;
    let p = g.join("ann.hnsw");
    let mut bytes = Vec::new();
    ann.write_to(&mut bytes).map_err(|e| Error::io(&p, e))?;
    write_file(&p, &bytes)?;
    Bm25::build(&g.join("bm25"), chunks)?;
    write_file(
        &g.join("manifest.json"),
        &serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Corrupt(e.to_string()))?,
    )?;
    fsync_dir(&g);
    crate::failpoint("rag.before_switch");
    replace_file(&dir.join("CURRENT"), format!("{generation}\n").as_bytes())?;
    clean(dir, &generation);
    Ok(())
}

impl Collection {
    /// Opens the current generation of collection `name` under `root`.
    pub fn open(root: &Path, name: &str) -> Result<Collection> {
        let dir = collection_dir(root, name)?;
        let generation =
            current_generation(&dir)?.ok_or_else(|| Error::UnknownCollection(name.to_string()))?;
        let g = dir.join(&generation);
        let manifest: Manifest = serde_json::from_slice(
            &std::fs::read(g.join("manifest.json")).map_err(|e| Error::io(&g, e))?,
        )
        .map_err(|e| Error::Corrupt(format!("{}: {e}", g.join("manifest.json").display())))?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(Error::Corrupt(format!(
                "collection '{name}' has format version {}; this build reads {FORMAT_VERSION}",
                manifest.format_version
            )));
        }
        let chunks = read_chunks(&g.join("chunks.jsonl"))?;
        let ann_path = g.join("ann.hnsw");
        let ann = Hnsw::read_from(&mut BufReader::new(
            File::open(&ann_path).map_err(|e| Error::io(&ann_path, e))?,
        ))
        .map_err(|e| Error::Corrupt(format!("{}: {e}", ann_path.display())))?;
        let bm25 = Bm25::open(&g.join("bm25"))?;
        if ann.len() != chunks.len() || manifest.chunks != chunks.len() {
            return Err(Error::Corrupt(format!(
                "collection '{name}': {} chunks, {} vectors, manifest says {}",
                chunks.len(),
                ann.len(),
                manifest.chunks
            )));
        }
        let stats = TermStats::of(&chunks);
        let any_quarantined = chunks.iter().any(|c| c.quarantined);
        Ok(Collection {
            any_quarantined,
            manifest,
            chunks,
            dir: g,
            ann,
            bm25,
            stats,
        })
    }

    /// Where the current generation lives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Ingests a file or a folder into collection `name` (created on first use with `config`).
    pub fn ingest(
        root: &Path,
        name: &str,
        path: &Path,
        embedder: &dyn Embedder,
        config: Option<CollectionConfig>,
        screen: Option<&Screen>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<IngestReport> {
        let dir = collection_dir(root, name)?;
        let _lock = lock(&dir)?;
        let previous = match current_generation(&dir)? {
            Some(_) => Some(Collection::open(root, name)?),
            None => None,
        };
        let config = match (&previous, config) {
            (Some(p), _) => p.manifest.config.clone(),
            (None, c) => c.unwrap_or_default(),
        };
        if let Some(p) = &previous
            && p.manifest.embedder != embedder.id()
        {
            return Err(Error::Invalid(format!(
                "collection '{name}' was built with {}; ingesting with {} would mix vector spaces",
                p.manifest.embedder,
                embedder.id()
            )));
        }
        let abs = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
        let (base, files) = walk(&abs)?;
        let base_s = base.to_string_lossy().into_owned();
        let mut report = IngestReport::default();
        // Previous documents by path, with their chunks and vectors.
        let mut old: HashMap<String, (&DocRecord, &[Chunk])> = HashMap::new();
        if let Some(p) = &previous {
            for d in &p.manifest.documents {
                old.insert(
                    d.path.clone(),
                    (d, &p.chunks[d.first_chunk..d.first_chunk + d.chunks]),
                );
            }
        }
        struct Pending {
            rec: DocRecord,
            chunks: Vec<Chunk>,
            vectors: Option<Vec<Vec<f32>>>,
        }
        let mut docs: Vec<Pending> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (rel, full) in &files {
            seen.insert(rel.clone());
            let Some(format) = Format::of_path(rel) else {
                report.skipped.push(Skipped {
                    path: rel.clone(),
                    reason: Refusal::Unsupported.to_string(),
                });
                continue;
            };
            let size = std::fs::metadata(full)
                .map_err(|e| Error::io(full, e))?
                .len() as usize;
            if size > config.max_file_bytes {
                report.skipped.push(Skipped {
                    path: rel.clone(),
                    reason: Refusal::TooLarge {
                        size,
                        limit: config.max_file_bytes,
                    }
                    .to_string(),
                });
                continue;
            }
            let bytes = std::fs::read(full).map_err(|e| Error::io(full, e))?;
            let text = match text_of(&bytes, config.max_file_bytes) {
                Ok(t) => t,
                Err(r) => {
                    report.skipped.push(Skipped {
                        path: rel.clone(),
                        reason: r.to_string(),
                    });
                    continue;
                }
            };
            let sha = sha256_hex(&bytes);
            if let Some((rec, chunks)) = old.get(rel)
                && rec.sha256 == sha
            {
                let prev = previous.as_ref().expect("old implies previous");
                let vectors = (rec.first_chunk..rec.first_chunk + rec.chunks)
                    .map(|i| prev.ann.vector(i as u32).to_vec())
                    .collect();
                report.unchanged += 1;
                docs.push(Pending {
                    rec: DocRecord {
                        root: base_s.clone(),
                        ..(*rec).clone()
                    },
                    chunks: chunks.to_vec(),
                    vectors: Some(vectors),
                });
                continue;
            }
            let blocks = parse(text, format);
            let mut chunks = chunk(rel, &blocks, &config.chunk, &|t| embedder.count_tokens(t));
            if let Some(sc) = screen {
                chunks.retain_mut(|c| {
                    let Some(reason) = (sc.check)(&c.text) else {
                        return true;
                    };
                    report.screened.push(Screened {
                        chunk_id: c.id.clone(),
                        document: c.document.clone(),
                        reason: reason.clone(),
                        action: sc.action,
                    });
                    c.untrusted = Some(reason);
                    c.quarantined = sc.action == ScreenAction::Quarantine;
                    sc.action != ScreenAction::Exclude
                });
            }
            if chunks.is_empty() {
                report.skipped.push(Skipped {
                    path: rel.clone(),
                    reason: "no text after removing markup".into(),
                });
                continue;
            }
            if old.contains_key(rel) {
                report.updated += 1;
            } else {
                report.added += 1;
            }
            docs.push(Pending {
                rec: DocRecord {
                    path: rel.clone(),
                    root: base_s.clone(),
                    sha256: sha,
                    bytes: bytes.len(),
                    format,
                    first_chunk: 0,
                    chunks: chunks.len(),
                },
                chunks,
                vectors: None,
            });
        }
        // Documents from other folders stay; documents of this folder that are gone are removed.
        if let Some(p) = &previous {
            for d in &p.manifest.documents {
                if seen.contains(&d.path) {
                    continue;
                }
                if d.root == base_s {
                    report.removed += 1;
                } else {
                    let (rec, chunks) = old[&d.path];
                    let vectors = (rec.first_chunk..rec.first_chunk + rec.chunks)
                        .map(|i| p.ann.vector(i as u32).to_vec())
                        .collect();
                    docs.push(Pending {
                        rec: rec.clone(),
                        chunks: chunks.to_vec(),
                        vectors: Some(vectors),
                    });
                }
            }
        }
        // Failed files that were indexed before keep their old version.
        for s in &report.skipped {
            if let Some((rec, chunks)) = old.get(&s.path)
                && !docs.iter().any(|d| d.rec.path == s.path)
            {
                let p = previous.as_ref().expect("old implies previous");
                let vectors = (rec.first_chunk..rec.first_chunk + rec.chunks)
                    .map(|i| p.ann.vector(i as u32).to_vec())
                    .collect();
                docs.push(Pending {
                    rec: (*rec).clone(),
                    chunks: chunks.to_vec(),
                    vectors: Some(vectors),
                });
            }
        }
        docs.sort_by(|a, b| a.rec.path.cmp(&b.rec.path));
        // Embed what changed, in batches, reporting progress.
        let total: usize = docs
            .iter()
            .filter(|d| d.vectors.is_none())
            .map(|d| d.chunks.len())
            .sum();
        let mut done = 0;
        progress(0, total);
        for d in docs.iter_mut().filter(|d| d.vectors.is_none()) {
            let texts: Vec<String> = d
                .chunks
                .iter()
                .map(|c| {
                    if c.section.is_empty() {
                        c.text.clone()
                    } else {
                        format!("{}\n{}", c.section, c.text)
                    }
                })
                .collect();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let mut vs = Vec::with_capacity(refs.len());
            for group in refs.chunks(64) {
                vs.extend(embedder.embed(group)?);
                done += group.len();
                progress(done, total);
            }
            d.vectors = Some(vs);
        }
        report.embedded_chunks = total;
        // Build the new generation.
        let mut all_chunks: Vec<Chunk> = Vec::new();
        let mut records = Vec::new();
        let mut ann = Hnsw::new(embedder.dim(), Metric::Cosine, HnswParams::default());
        for d in docs {
            let mut rec = d.rec;
            rec.first_chunk = all_chunks.len();
            rec.chunks = d.chunks.len();
            for v in d.vectors.expect("embedded") {
                ann.add(&v);
            }
            all_chunks.extend(d.chunks);
            records.push(rec);
        }
        report.documents = records.len();
        report.chunks = all_chunks.len();
        report.chunk_lengths = crate::chunk::ChunkLengths::of(&all_chunks);
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            name: name.to_string(),
            embedder: embedder.id(),
            dim: embedder.dim(),
            config,
            documents: records,
            chunks: all_chunks.len(),
            generation: String::new(),
        };
        drop(previous);
        commit_generation(&dir, manifest, &all_chunks, &ann)?;
        Ok(report)
    }

    /// Removes documents by path from every index (a new generation without them). Returns how many were found.
    pub fn delete_documents(root: &Path, name: &str, paths: &[String]) -> Result<usize> {
        let dir = collection_dir(root, name)?;
        let _lock = lock(&dir)?;
        let c = Collection::open(root, name)?;
        let keep: Vec<&DocRecord> = c
            .manifest
            .documents
            .iter()
            .filter(|d| !paths.contains(&d.path))
            .collect();
        let removed = c.manifest.documents.len() - keep.len();
        if removed == 0 {
            return Ok(0);
        }
        let mut chunks = Vec::new();
        let mut records = Vec::new();
        let mut ann = Hnsw::new(c.manifest.dim, Metric::Cosine, HnswParams::default());
        for d in keep {
            let mut rec = d.clone();
            rec.first_chunk = chunks.len();
            for i in d.first_chunk..d.first_chunk + d.chunks {
                ann.add(c.ann.vector(i as u32));
                chunks.push(c.chunks[i].clone());
            }
            records.push(rec);
        }
        let manifest = Manifest {
            documents: records,
            chunks: chunks.len(),
            ..c.manifest.clone()
        };
        drop(c);
        commit_generation(&dir, manifest, &chunks, &ann)?;
        Ok(removed)
    }

    /// Stores a tuned fusion weight in the current generation's manifest (atomically).
    pub fn set_fusion_weight(&mut self, weight: f64) -> Result<()> {
        self.manifest.config.fusion_weight = weight;
        self.manifest.config.tuned = true;
        self.write_manifest()
    }

    /// Stores a calibrated confidence floor in the current generation's manifest (atomically).
    pub fn set_confidence_floor(&mut self, floor: f32) -> Result<()> {
        if !floor.is_finite() {
            return Err(Error::Invalid(format!(
                "the confidence floor must be a finite number (got {floor})"
            )));
        }
        self.manifest.config.min_similarity = floor;
        self.manifest.config.calibrated = true;
        self.write_manifest()
    }

    /// The best dense similarity of an embedded query: what the confidence floor is compared with.
    pub fn best_similarity(&self, query_vec: &[f32]) -> f32 {
        self.dense(query_vec, 1).first().map_or(0.0, |x| x.1)
    }

    fn write_manifest(&self) -> Result<()> {
        replace_file(
            &self.dir.join("manifest.json"),
            &serde_json::to_vec_pretty(&self.manifest)
                .map_err(|e| Error::Corrupt(e.to_string()))?,
        )
    }

    /// Dense candidates for an embedded (unit) query: (ordinal, cosine similarity).
    pub fn dense(&self, query_vec: &[f32], n: usize) -> Vec<(u32, f32)> {
        self.ann
            .search(query_vec, n, n.max(64))
            .into_iter()
            .map(|(id, d)| (id, 1.0 - d))
            .collect()
    }

    pub fn bm25(&self, query: &str, n: usize) -> Result<Vec<(u32, f32)>> {
        self.bm25.search(query, n)
    }

    /// Retrieves the best `k` chunks. `query_vec` is the question's embedding (needed except for BM25).
    pub fn search(
        &self,
        query: &str,
        query_vec: Option<&[f32]>,
        mode: Mode,
        k: usize,
        weight: Option<f64>,
    ) -> Result<Vec<Hit>> {
        let need_dense = mode != Mode::Bm25;
        let dense = match (need_dense, query_vec) {
            (true, Some(v)) => self.dense(v, CANDIDATES.max(k)),
            (true, None) => {
                return Err(Error::Invalid(
                    "dense and hybrid retrieval need the question's embedding".into(),
                ));
            }
            (false, _) => Vec::new(),
        };
        let sparse = if mode != Mode::Dense {
            self.bm25(query, CANDIDATES.max(k))?
        } else {
            Vec::new()
        };
        // Quarantined chunks never come back (they are rare: dropped before fusion, then k is refilled).
        let keep = |&(o, _): &(u32, f32)| !self.chunks[o as usize].quarantined;
        let (sparse, dense): (Vec<_>, Vec<_>) = if self.any_quarantined {
            (
                sparse.into_iter().filter(keep).collect(),
                dense.into_iter().filter(keep).collect(),
            )
        } else {
            (sparse, dense)
        };
        Ok(fuse(
            &sparse,
            &dense,
            mode,
            weight.unwrap_or(self.manifest.config.fusion_weight),
            self.manifest.config.rrf_k,
            k,
        ))
    }
}

/// Screening of new chunks at ingest (indirect prompt injection): `check` returns why a chunk's text is not
/// to be trusted, and `action` says what happens to such a chunk.
pub struct Screen<'a> {
    pub check: &'a dyn Fn(&str) -> Option<String>,
    pub action: ScreenAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScreenAction {
    /// Indexed, marked untrusted (citations carry the reason).
    Flag,
    /// Kept in the chunk list, marked, and filtered out of every search.
    Quarantine,
    /// Not kept.
    Exclude,
}

/// A chunk the screen distrusted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Screened {
    pub chunk_id: String,
    pub document: String,
    pub reason: String,
    pub action: ScreenAction,
}

/// Fuses BM25 and dense candidate lists (each best first).
pub fn fuse(
    sparse: &[(u32, f32)],
    dense: &[(u32, f32)],
    mode: Mode,
    weight: f64,
    rrf_k: f64,
    k: usize,
) -> Vec<Hit> {
    let mut by: HashMap<u32, Hit> = HashMap::new();
    for &(o, s) in sparse {
        by.entry(o)
            .or_insert(Hit {
                ord: o,
                score: 0.0,
                bm25: None,
                dense: None,
            })
            .bm25 = Some(s);
    }
    for &(o, s) in dense {
        by.entry(o)
            .or_insert(Hit {
                ord: o,
                score: 0.0,
                bm25: None,
                dense: None,
            })
            .dense = Some(s);
    }
    let minmax = |l: &[(u32, f32)]| -> (f64, f64) {
        let hi = l.iter().map(|x| f64::from(x.1)).fold(f64::MIN, f64::max);
        let lo = l.iter().map(|x| f64::from(x.1)).fold(f64::MAX, f64::min);
        (lo, (hi - lo).max(1e-9))
    };
    let (slo, sspan) = minmax(sparse);
    let (dlo, dspan) = minmax(dense);
    let rank = |l: &[(u32, f32)]| -> HashMap<u32, usize> {
        l.iter().enumerate().map(|(i, x)| (x.0, i + 1)).collect()
    };
    let (srank, drank) = (rank(sparse), rank(dense));
    for h in by.values_mut() {
        h.score = match mode {
            Mode::Bm25 => f64::from(h.bm25.unwrap_or(0.0)),
            Mode::Dense => f64::from(h.dense.unwrap_or(-1.0)),
            Mode::Rrf => {
                srank.get(&h.ord).map_or(0.0, |r| 1.0 / (rrf_k + *r as f64))
                    + drank.get(&h.ord).map_or(0.0, |r| 1.0 / (rrf_k + *r as f64))
            }
            Mode::Hybrid => {
                let s = h.bm25.map_or(0.0, |s| (f64::from(s) - slo) / sspan);
                let d = h.dense.map_or(0.0, |d| (f64::from(d) - dlo) / dspan);
                weight * d + (1.0 - weight) * s
            }
        };
    }
    let mut hits: Vec<Hit> = by
        .into_values()
        .filter(|h| match mode {
            Mode::Bm25 => h.bm25.is_some(),
            Mode::Dense => h.dense.is_some(),
            _ => true,
        })
        .collect();
    // Equal scores are decided by the retrievers' ranks, never by position in the collection: the better of
    // a hit's two ranks first, then the other one (a chunk only one retriever found ranks last there), then
    // the BM25 rank, and only then the ordinal (two chunks both retrievers ranked alike cannot happen).
    let ranks = |h: &Hit| -> (usize, usize, usize) {
        let s = srank.get(&h.ord).copied().unwrap_or(usize::MAX);
        let d = drank.get(&h.ord).copied().unwrap_or(usize::MAX);
        (s.min(d), s.max(d), s)
    };
    // Scores equal but for float noise (retriever scores are f32) are ties too: compared to 1e-6.
    let level = |h: &Hit| (h.score * 1e6).round() as i64;
    hits.sort_by(|a, b| {
        level(b)
            .cmp(&level(a))
            .then_with(|| ranks(a).cmp(&ranks(b)))
            .then(a.ord.cmp(&b.ord))
    });
    hits.truncate(k);
    hits
}

#[cfg(test)]
mod tests {
    use super::{Mode, fuse};

    fn order(h: &[super::Hit]) -> Vec<u32> {
        h.iter().map(|h| h.ord).collect()
    }

    #[test]
    fn fusion_ties_are_broken_by_the_retrievers_ranks_not_by_position() {
        // Weighted 0.5/0.5: min-max scores make all three 0.5 (a three-way tie).
        let sparse = [(9, 5.0), (2, 3.0), (5, 1.0)];
        let dense = [(5, 0.9), (2, 0.5), (9, 0.1)];
        let h = fuse(&sparse, &dense, Mode::Hybrid, 0.5, 60.0, 3);
        assert!(h.iter().all(|x| (x.score - 0.5).abs() < 1e-7), "{h:?}");
        // 9 and 5 are each first somewhere (best rank 1, other rank 3); 9 wins on its BM25 rank; 2 (ranks 2
        // and 2) comes last whatever its ordinal.
        assert_eq!(order(&h), vec![9, 5, 2]);
        // The same ranking with the ordinals swapped around: the order follows the ranks.
        let sparse = [(1, 5.0), (7, 3.0), (3, 1.0)];
        let dense = [(3, 0.9), (7, 0.5), (1, 0.1)];
        assert_eq!(
            order(&fuse(&sparse, &dense, Mode::Hybrid, 0.5, 60.0, 3)),
            vec![1, 3, 7]
        );
        // RRF: first in one list only each; the one the other retriever also found comes first.
        let sparse = [(4, 2.0), (8, 1.0)];
        let dense = [(6, 0.8), (8, 0.7)];
        let h = fuse(&sparse, &dense, Mode::Rrf, 0.5, 60.0, 3);
        assert_eq!(h[0].ord, 8, "{h:?}");
        assert_eq!(order(&h[1..]), vec![4, 6]);
    }
}
