//! Keel's guardrails. [`Guard`] runs every detector over a text in microseconds, offline:
//! prompt injection (normalisation, a trained classifier with a calibrated threshold, rules), PII, secrets,
//! and, on model output, canary tokens and system-prompt leaks. [`policy`] turns findings into decisions
//! (allow, flag, redact, block) and redacts; [`stream::StreamGuard`] applies output guards to a token stream.
//!
//! The injection classifier and the PII lexicon travel together as one guard model ([`GuardModel`]), a
//! registry artifact like any other model.

#![forbid(unsafe_code)]

pub mod corpora;
pub mod encoder;
pub mod injection;
pub mod lang;
pub mod leak;
pub mod normalize;
pub mod pii;
pub mod policy;
pub mod secrets;
pub mod stream;
pub mod synth;

use serde::{Deserialize, Serialize};
use std::path::Path;

/// What can go wrong in the guard library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {message}")]
    Data { path: String, message: String },
    #[error("guard model: {0}")]
    Model(String),
}

impl Error {
    pub fn class(&self) -> keel_core::ErrorClass {
        match self {
            Error::Invalid(_) | Error::Data { .. } | Error::Model(_) => {
                keel_core::ErrorClass::Input
            }
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// One detected span (byte offsets into the scanned text).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub start: usize,
    pub end: usize,
    pub score: f32,
    pub reason: String,
}

/// The injection verdict.
#[derive(Debug, Clone, Serialize)]
pub struct InjectionVerdict {
    /// With an encoder guard, a calibrated probability; with the n-gram model alone, its raw score.
    pub score: f32,
    pub flagged: bool,
    pub threshold: f32,
    /// Rules that fired and what normalisation undid.
    pub reasons: Vec<String>,
    /// Which path decided: `ngram` (microseconds) or `encoder` (the uncertain band).
    pub path: &'static str,
    /// The model's review threshold (scores above it and not above `threshold` are worth a person's look);
    /// absent for n-gram-only models.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review_threshold: Option<f32>,
}

/// Everything the detectors found in one text.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub injection: Option<InjectionVerdict>,
    pub pii: Vec<Finding>,
    pub secrets: Vec<Finding>,
    pub leaks: Vec<Finding>,
    /// The detected language (when the PII scan found a candidate person name: only names depend on it).
    pub language: Option<lang::Language>,
    /// What a detector could not do for this text (e.g. person names in an unsupported language).
    pub notes: Vec<String>,
}

/// What to scan for.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions<'a> {
    pub injection: bool,
    pub pii: bool,
    pub secrets: bool,
    /// Output checks: canaries to look for, and the system prompt the output must not repeat.
    pub canaries: &'a [String],
    pub system_prompt: Option<&'a str>,
}

impl ScanOptions<'_> {
    /// Input checks: injection, PII, secrets.
    pub fn input() -> ScanOptions<'static> {
        ScanOptions {
            injection: true,
            pii: true,
            secrets: true,
            canaries: &[],
            system_prompt: None,
        }
    }
}

/// Format version of the guard model artifact (1: n-gram only; 2: adds the encoder guard).
pub const MODEL_FORMAT: u32 = 2;

/// The encoder guard: a head over frozen sentence embeddings, its calibration, and the cascade band.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EncoderGuard {
    /// The embedding model the head was trained on (`Embedder::id`) and its dimension.
    pub embedder: String,
    pub dim: usize,
    pub head: encoder::Head,
    /// Calibrated probability from `[head logit, n-gram logit]` (stacking and Platt scaling in one).
    pub stack: encoder::Logistic,
    /// Calibrated probability from the n-gram logit alone (texts the fast path decides).
    pub ngram_only: encoder::Logistic,
    /// The fast path decides when the n-gram score is at or below `band.0` or at or above `band.1`.
    pub band: (f32, f32),
    /// Probability threshold at the default review rate.
    pub review_threshold: f32,
    pub params: encoder::HeadParams,
}

/// The guard model as stored in the registry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GuardModel {
    pub format: u32,
    pub classifier: injection::StoredClassifier,
    /// Calibrated on the calibration split to `target_fpr`.
    pub threshold: f32,
    /// For documents scanned sentence by sentence (RAG ingest): calibrated on benign document sentences.
    pub document_threshold: f32,
    pub target_fpr: f64,
    pub params: injection::TrainParams,
    pub lexicon: pii::StoredLexicon,
    /// The encoder guard (format 2); `None` for the n-gram model alone.
    pub encoder: Option<EncoderGuard>,
}

/// Format 1's layout (no encoder), still read.
#[derive(Deserialize)]
struct GuardModelV1 {
    format: u32,
    classifier: injection::StoredClassifier,
    threshold: f32,
    document_threshold: f32,
    target_fpr: f64,
    params: injection::TrainParams,
    lexicon: pii::StoredLexicon,
}

impl GuardModel {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = b"KEELGRD2".to_vec();
        out.extend(postcard::to_allocvec(self).expect("guard model serialises"));
        out
    }

    pub fn from_bytes(b: &[u8]) -> Result<GuardModel> {
        let corrupt = |e: postcard::Error| Error::Model(format!("corrupt guard model: {e}"));
        let m = if let Some(body) = b.strip_prefix(b"KEELGRD2") {
            postcard::from_bytes::<GuardModel>(body).map_err(corrupt)?
        } else if let Some(body) = b.strip_prefix(b"KEELGRD1") {
            let v: GuardModelV1 = postcard::from_bytes(body).map_err(corrupt)?;
            if v.format != 1 {
                return Err(Error::Model(format!(
                    "format {} is not supported (this Keel reads 1 and {MODEL_FORMAT})",
                    v.format
                )));
            }
            GuardModel {
                format: 1,
                classifier: v.classifier,
                threshold: v.threshold,
                document_threshold: v.document_threshold,
                target_fpr: v.target_fpr,
                params: v.params,
                lexicon: v.lexicon,
                encoder: None,
            }
        } else {
            return Err(Error::Model("not a Keel guard model (bad magic)".into()));
        };
        if m.format != 1 && m.format != MODEL_FORMAT {
            return Err(Error::Model(format!(
                "format {} is not supported (this Keel reads 1 and {MODEL_FORMAT})",
                m.format
            )));
        }
        if let Some(e) = &m.encoder {
            e.head.validate()?;
            if e.head.d_in != e.dim || e.stack.w.len() != 2 || e.ngram_only.w.len() != 1 {
                return Err(Error::Model(
                    "corrupt guard model: encoder head and calibration sizes disagree".into(),
                ));
            }
        }
        Ok(m)
    }
}

/// Longest piece of text (in characters) the encoder reads per window; longer texts are read as their first
/// and last windows (MiniLM truncates at 256 tokens, about this many characters of English).
pub const ENCODER_WINDOW_CHARS: usize = 1200;

/// A ready-to-use guard: the classifier expanded, the lexicon indexed, the encoder (if any) attached.
pub struct Guard {
    classifier: injection::Classifier,
    threshold: f32,
    document_threshold: f32,
    lexicon: pii::Lexicon,
    encoder: Option<(EncoderGuard, std::sync::Arc<dyn keel_rag::embed::Embedder>)>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Guard {
    /// A guard from an n-gram model. A model with an encoder guard needs [`Guard::with_encoder`].
    pub fn new(model: &GuardModel) -> Result<Guard> {
        if model.encoder.is_some() {
            return Err(Error::Model(
                "this guard model has an encoder guard: load it with its embedding model (all-MiniLM-L6-v2)"
                    .into(),
            ));
        }
        Self::build(model, None)
    }

    /// A guard whose encoder path embeds with `embedder` (which must be the model the head was trained on).
    pub fn with_encoder(
        model: &GuardModel,
        embedder: std::sync::Arc<dyn keel_rag::embed::Embedder>,
    ) -> Result<Guard> {
        let Some(e) = &model.encoder else {
            return Self::build(model, None);
        };
        if embedder.id() != e.embedder || embedder.dim() != e.dim {
            return Err(Error::Model(format!(
                "the encoder head was trained on {} ({} dimensions), not {} ({})",
                e.embedder,
                e.dim,
                embedder.id(),
                embedder.dim()
            )));
        }
        Self::build(model, Some((e.clone(), embedder)))
    }

    fn build(
        model: &GuardModel,
        encoder: Option<(EncoderGuard, std::sync::Arc<dyn keel_rag::embed::Embedder>)>,
    ) -> Result<Guard> {
        Ok(Guard {
            classifier: injection::Classifier::from_stored(&model.classifier)
                .map_err(Error::Model)?,
            threshold: model.threshold,
            document_threshold: model.document_threshold,
            lexicon: pii::Lexicon::new(&model.lexicon),
            encoder,
        })
    }

    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// The n-gram model's score alone (no rules, no encoder): max over the text and its decoded payloads.
    pub fn ngram_score(&self, text: &str) -> f32 {
        self.ngram(&normalize::normalize(text), self.threshold).0
    }

    /// Whether the encoder path is attached.
    pub fn has_encoder(&self) -> bool {
        self.encoder.is_some()
    }

    /// The n-gram score (max over the normalised text and its decoded payloads) and its reasons.
    fn ngram(&self, n: &normalize::Normalized, threshold: f32) -> (f32, Vec<String>) {
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let mut score = self.classifier.score_normalized(&n.text, &mut s);
            let mut reasons: Vec<String> = Vec::new();
            for d in &n.decoded {
                let ds = self.classifier.score_normalized(&d.text, &mut s);
                if ds > threshold {
                    reasons.push(format!("{} payload classified as injection", d.encoding));
                }
                score = score.max(ds);
            }
            (score, reasons)
        })
    }

    /// The pieces of a normalised text the encoder reads: the text (its first and last window when long)
    /// and up to two decoded payloads.
    pub fn encoder_windows(n: &normalize::Normalized) -> Vec<String> {
        let mut out = Vec::new();
        let window = |t: &str, out: &mut Vec<String>| {
            let chars = t.chars().count();
            if chars <= ENCODER_WINDOW_CHARS {
                out.push(t.to_string());
            } else {
                out.push(t.chars().take(ENCODER_WINDOW_CHARS).collect());
                out.push(t.chars().skip(chars - ENCODER_WINDOW_CHARS).collect());
            }
        };
        window(&n.text, &mut out);
        for d in n.decoded.iter().take(2) {
            window(&d.text, &mut out);
        }
        out
    }

    /// The encoder guard's calibrated probability for a normalised text whose n-gram score is `s`, and
    /// whether the encoder ran. Errors of the embedding model fall back to the n-gram probability.
    fn encoder_probability(
        &self,
        e: &EncoderGuard,
        embedder: &dyn keel_rag::embed::Embedder,
        n: &normalize::Normalized,
        s: f32,
    ) -> (f32, bool) {
        let zn = encoder::logit(s);
        if s <= e.band.0 || s >= e.band.1 {
            return (e.ngram_only.prob(&[zn]), false);
        }
        let windows = Self::encoder_windows(n);
        let refs: Vec<&str> = windows.iter().map(String::as_str).collect();
        match embedder.embed(&refs) {
            Ok(vs) => {
                let ze = vs
                    .iter()
                    .map(|v| e.head.logit(v))
                    .fold(f32::NEG_INFINITY, f32::max);
                (e.stack.prob(&[ze, zn]), true)
            }
            Err(err) => {
                tracing::warn!(error = %err, "guard encoder failed; the n-gram model decided");
                (e.ngram_only.prob(&[zn]), false)
            }
        }
    }

    /// Injection score with rules and reasons: the n-gram model alone, or the cascade (n-gram first; the
    /// encoder for texts in the uncertain band) with a calibrated probability.
    pub fn injection(&self, text: &str) -> InjectionVerdict {
        let n = normalize::normalize(text);
        let (ngram, mut reasons) = self.ngram(&n, self.threshold);
        let (mut score, path) = match &self.encoder {
            None => (ngram, "ngram"),
            Some((e, emb)) => {
                // Payload reasons from the n-gram threshold mean little on the probability scale.
                reasons.clear();
                let (p, ran) = self.encoder_probability(e, emb.as_ref(), &n, ngram);
                (p, if ran { "encoder" } else { "ngram" })
            }
        };
        let rules = injection::rules(&n);
        if !rules.is_empty() {
            score = score.max(1.0);
        }
        for r in rules {
            reasons.push(format!("rule: {r}"));
        }
        let flagged = score > self.threshold;
        if flagged && reasons.is_empty() {
            reasons.push(if path == "encoder" {
                "encoder classifier".into()
            } else {
                "classifier".into()
            });
        }
        if flagged {
            reasons.extend(n.notes.iter().map(|s| s.to_string()));
        }
        InjectionVerdict {
            score,
            flagged,
            threshold: self.threshold,
            reasons,
            path,
            review_threshold: self.encoder.as_ref().map(|(e, _)| e.review_threshold),
        }
    }

    /// Indirect injection in a document passage: each sentence is scored (documents are long; the classifier
    /// knows prompts), flagged above the document threshold or when a rule fires anywhere.
    pub fn document_injection(&self, text: &str) -> InjectionVerdict {
        let mut best = InjectionVerdict {
            score: 0.0,
            flagged: false,
            threshold: self.document_threshold,
            reasons: Vec::new(),
            path: "ngram",
            review_threshold: None,
        };
        for s in sentences(text) {
            let v = self.injection(s);
            let rule = v.reasons.iter().any(|r| r.starts_with("rule:"));
            if v.score > best.score || (rule && !best.flagged) {
                best = InjectionVerdict {
                    score: v.score,
                    flagged: rule || v.score > self.document_threshold,
                    threshold: self.document_threshold,
                    reasons: v.reasons,
                    path: v.path,
                    review_threshold: None,
                };
                if best.flagged && !best.reasons.is_empty() {
                    let quoted: String = s.chars().take(80).collect();
                    best.reasons.push(format!("sentence: \"{quoted}\""));
                }
            }
        }
        best
    }

    /// Runs the chosen detectors over `text`.
    pub fn scan(&self, text: &str, opts: &ScanOptions) -> Report {
        let mut r = Report::default();
        if opts.injection {
            r.injection = Some(self.injection(text));
        }
        if opts.pii {
            let (found, language, names) = pii::detect_in_language(text, &self.lexicon);
            r.pii = found;
            r.language = language;
            if !names && let Some(l) = language {
                r.notes.push(format!(
                    "person names are detected in English only; this text is {} ({}), so names were not checked",
                    l.name, l.code
                ));
            }
        }
        if opts.secrets {
            r.secrets = secrets::detect(text);
        }
        if !opts.canaries.is_empty() {
            r.leaks.extend(leak::canaries(text, opts.canaries));
        }
        if let Some(sys) = opts.system_prompt
            && let Some(f) = leak::system_prompt_overlap(text, sys, 8)
        {
            r.leaks.push(f);
        }
        r
    }

    pub fn pii(&self, text: &str) -> Vec<Finding> {
        pii::detect_in_language(text, &self.lexicon).0
    }
}

/// Sentences of prose: split at line breaks between paragraphs and after `.`, `!` or `?` followed by
/// white space; pieces under 12 characters are dropped.
pub fn sentences(text: &str) -> impl Iterator<Item = &str> {
    text.split("\n\n")
        .flat_map(|para| {
            let mut out = Vec::new();
            let mut start = 0;
            let b = para.as_bytes();
            for i in 0..b.len() {
                if matches!(b[i], b'.' | b'!' | b'?')
                    && b.get(i + 1).is_some_and(u8::is_ascii_whitespace)
                {
                    out.push(&para[start..=i]);
                    start = i + 1;
                }
            }
            out.push(&para[start..]);
            out
        })
        .map(str::trim)
        .filter(|s| s.len() >= 12)
}

/// Byte offset → character offset (what the JSON interfaces report).
pub fn char_offset(text: &str, byte: usize) -> usize {
    text[..byte.min(text.len())].chars().count()
}

/// The JSON shape `keel guard scan --json` and `POST /v1/guard/scan` print: spans in character offsets.
pub fn report_json(text: &str, r: &Report, d: &policy::Decision) -> serde_json::Value {
    let spans = |fs: &[Finding]| -> serde_json::Value {
        fs.iter()
            .map(|f| {
                serde_json::json!({
                    "type": f.kind,
                    "start": char_offset(text, f.start),
                    "end": char_offset(text, f.end),
                    "score": f.score,
                    "reason": f.reason,
                })
            })
            .collect()
    };
    let mut v = serde_json::json!({
        "pii": spans(&r.pii),
        "secrets": spans(&r.secrets),
        "leaks": spans(&r.leaks),
        "blocked": d.blocked,
        "action": d.action.as_str(),
        "reasons": d.reasons,
        "review": d.review,
    });
    if let Some(l) = &r.language {
        v["language"] = l.code.into();
    }
    if !r.notes.is_empty() {
        v["notes"] = r.notes.clone().into();
    }
    if let Some(i) = &r.injection {
        v["injection"] = serde_json::json!({
            "score": i.score, "flagged": i.flagged, "threshold": i.threshold, "reasons": i.reasons,
            "path": i.path,
        });
        if let Some(r) = i.review_threshold {
            v["injection"]["review_threshold"] = r.into();
        }
    }
    if d.action >= policy::Action::Redact {
        v["redacted"] = d.text.clone().into();
    }
    v
}

/// Reads a labelled CSV (`text,label`, label 0/1 or true/false) with row numbers in errors.
pub fn read_labelled(path: &Path) -> Result<Vec<injection::Example>> {
    let data = |message: String| Error::Data {
        path: path.display().to_string(),
        message,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(false)
        .from_path(path)
        .map_err(|e| data(format!("cannot read: {e}")))?;
    let headers = rdr
        .headers()
        .map_err(|e| data(format!("header: {e}")))?
        .clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim_start_matches('\u{feff}') == name)
    };
    let (Some(ti), Some(li)) = (col("text"), col("label")) else {
        return Err(data(format!(
            "needs columns `text` and `label`; found {:?}",
            headers.iter().collect::<Vec<_>>()
        )));
    };
    let mut out = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let row = i + 2;
        let rec = rec.map_err(|e| data(format!("row {row}: {e}")))?;
        let label = match rec.get(li).map(str::trim) {
            Some("1") | Some("true") | Some("True") => true,
            Some("0") | Some("false") | Some("False") => false,
            other => {
                return Err(data(format!(
                    "row {row}, column `label`: {other:?} is not 0 or 1"
                )));
            }
        };
        out.push(injection::Example {
            text: rec.get(ti).unwrap_or_default().to_string(),
            label,
        });
    }
    if out.is_empty() {
        return Err(data("no rows".into()));
    }
    Ok(out)
}

/// Trains a guard model: the classifier on `train` plus up to `params.benign` of `documents` (benign
/// document sentences) as extra negatives, the threshold on `calibration`, the document threshold on the
/// remaining document sentences, the lexicon from the word list. Returns the model and its evaluation on the
/// calibration split.
pub fn train_model(
    train: &[injection::Example],
    calibration: &[injection::Example],
    documents: &[String],
    word_list: &str,
    params: &injection::TrainParams,
) -> Result<(GuardModel, injection::Evaluation)> {
    if !(0.0..0.5).contains(&params.target_fpr) || !(0.0..0.5).contains(&params.document_fpr) {
        return Err(Error::Invalid(format!(
            "false-positive rate targets ({}, {}) must be in [0, 0.5)",
            params.target_fpr, params.document_fpr
        )));
    }
    for (what, set) in [("training", train), ("calibration", calibration)] {
        let pos = set.iter().filter(|e| e.label).count();
        if pos == 0 || pos == set.len() {
            return Err(Error::Invalid(format!(
                "the {what} set needs both labels (it has {pos} of {} positive)",
                set.len()
            )));
        }
    }
    // Documents: a seeded shuffle, the first `benign` for training, the rest for the document threshold.
    let mut docs: Vec<&String> = documents.iter().collect();
    {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        docs.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(0));
    }
    let n_train = params.benign.min(docs.len() / 2);
    let mut all = train.to_vec();
    all.extend(docs[..n_train].iter().map(|t| injection::Example {
        text: (*t).clone(),
        label: false,
    }));
    let classifier = injection::train(&all, params);
    let mut model = GuardModel {
        format: MODEL_FORMAT,
        encoder: None,
        classifier: classifier.to_stored(),
        threshold: 0.5,
        document_threshold: 0.99,
        target_fpr: params.target_fpr,
        params: params.clone(),
        lexicon: pii::StoredLexicon::from_word_list(word_list),
    };
    let guard = Guard::new(&model)?;
    let scores: Vec<f32> = calibration
        .iter()
        .map(|e| guard.injection(&e.text).score)
        .collect();
    let negs: Vec<f32> = calibration
        .iter()
        .zip(&scores)
        .filter(|(e, _)| !e.label)
        .map(|(_, &s)| s)
        .collect();
    model.threshold = injection::calibrate(&negs, params.target_fpr);
    let doc_scores: Vec<f32> = docs[n_train..]
        .iter()
        .map(|t| guard.injection(t).score)
        .collect();
    if !doc_scores.is_empty() {
        // Never below the prompt threshold: documents get the stricter of the two.
        model.document_threshold =
            injection::calibrate(&doc_scores, params.document_fpr).max(model.threshold);
    }
    let labels: Vec<bool> = calibration.iter().map(|e| e.label).collect();
    let eval = injection::evaluate(&labels, &scores, model.threshold);
    Ok((model, eval))
}
