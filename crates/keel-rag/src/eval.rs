//! Retrieval evaluation against qrels: recall@k, MRR@10 and nDCG@10 (binary relevance). A qrels line is
//! `{"query": "...", "relevant": ["ID", ...]}`; a chunk matches an ID equal to its document path or to
//! `document#section`. The ranked chunks are reduced to a ranking of distinct units, each at the rank of its
//! best chunk (MaxP): a chunk that matches a relevant ID stands for that ID, any other for its document, and a
//! unit seen before is dropped (it neither counts again nor takes a rank). At document level this is the
//! usual "a document scored by its best passage".
//!
//! Answers are checked too ([`AnswerCase`]): an answerable question lists spans any of which the answer must
//! contain, an unanswerable one lists none and should be refused. [`calibrate_floor`] picks the retrieval
//! confidence floor below which a collection refuses, from such labelled questions.

use serde::{Deserialize, Serialize};
use std::collections::HashSet;

use crate::chunk::Chunk;
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Qrel {
    pub query: String,
    pub relevant: Vec<String>,
}

/// Parses JSON lines of `T` (blank lines skipped), naming the line of any problem: one that does not parse,
/// or one `check` rejects (its reason). `what` names the records for an empty file.
fn parse_lines<T: serde::de::DeserializeOwned>(
    text: &str,
    source: &str,
    what: &str,
    check: impl Fn(&T) -> Option<String>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let r: T = serde_json::from_str(line)
            .map_err(|e| Error::Invalid(format!("{source}: line {}: {e}", i + 1)))?;
        if let Some(why) = check(&r) {
            return Err(Error::Invalid(format!("{source}: line {}: {why}", i + 1)));
        }
        out.push(r);
    }
    if out.is_empty() {
        return Err(Error::Invalid(format!("{source}: no {what}")));
    }
    Ok(out)
}

/// Parses a qrels JSONL text, naming the line of any problem.
pub fn parse_qrels(text: &str, source: &str) -> Result<Vec<Qrel>> {
    parse_lines(text, source, "qrels", |q: &Qrel| {
        (q.query.trim().is_empty() || q.relevant.is_empty())
            .then(|| "a qrel needs a query and at least one relevant id".to_string())
    })
}

/// Metrics of one retriever over all queries (means).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Metrics {
    #[serde(rename = "recall@5")]
    pub recall_5: f64,
    #[serde(rename = "recall@10")]
    pub recall_10: f64,
    #[serde(rename = "mrr@10")]
    pub mrr_10: f64,
    #[serde(rename = "ndcg@10")]
    pub ndcg_10: f64,
    pub queries: usize,
}

/// The ranking of distinct units a ranked chunk list makes: `Some(id)` for a relevant ID (first time), `None`
/// for a document with nothing relevant in it (first time); repeats are dropped.
pub fn judged(ranked: &[&Chunk], relevant: &[String]) -> Vec<Option<String>> {
    let rel: HashSet<&str> = relevant.iter().map(String::as_str).collect();
    let mut seen_ids = HashSet::new();
    let mut seen_misses = HashSet::new();
    let mut out = Vec::new();
    for c in ranked {
        let with_section = format!("{}#{}", c.document, c.section);
        let id = if rel.contains(with_section.as_str()) {
            Some(with_section)
        } else if rel.contains(c.document.as_str()) {
            Some(c.document.clone())
        } else {
            None
        };
        match id {
            Some(i) => {
                if seen_ids.insert(i.clone()) {
                    out.push(Some(i));
                }
            }
            None => {
                if seen_misses.insert(c.document.as_str()) {
                    out.push(None);
                }
            }
        }
    }
    out
}

/// Per-query metrics from a judged list.
pub fn score(judged: &[Option<String>], n_relevant: usize) -> (f64, f64, f64, f64) {
    let hits_at = |k: usize| judged.iter().take(k).filter(|j| j.is_some()).count() as f64;
    let n = n_relevant.max(1) as f64;
    let mrr = judged
        .iter()
        .take(10)
        .position(Option::is_some)
        .map_or(0.0, |p| 1.0 / (p as f64 + 1.0));
    let dcg: f64 = judged
        .iter()
        .take(10)
        .enumerate()
        .filter(|(_, j)| j.is_some())
        .map(|(i, _)| 1.0 / (i as f64 + 2.0).log2())
        .sum();
    let idcg: f64 = (0..n_relevant.min(10))
        .map(|i| 1.0 / (i as f64 + 2.0).log2())
        .sum();
    (
        hits_at(5) / n,
        hits_at(10) / n,
        mrr,
        if idcg > 0.0 { dcg / idcg } else { 0.0 },
    )
}

/// Means over queries.
pub fn mean(per_query: &[(f64, f64, f64, f64)]) -> Metrics {
    let n = per_query.len().max(1) as f64;
    let s = per_query.iter().fold((0.0, 0.0, 0.0, 0.0), |a, b| {
        (a.0 + b.0, a.1 + b.1, a.2 + b.2, a.3 + b.3)
    });
    Metrics {
        recall_5: s.0 / n,
        recall_10: s.1 / n,
        mrr_10: s.2 / n,
        ndcg_10: s.3 / n,
        queries: per_query.len(),
    }
}

/// One question of an answer-level check: `{"query": "...", "answers": ["span", ...], "document": "..."}`.
/// An empty `answers` marks a question the documents do not answer (it should be refused); `document`
/// (optional) names where the answer is, for the reader.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerCase {
    pub query: String,
    #[serde(default)]
    pub answers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<String>,
}

impl AnswerCase {
    pub fn answerable(&self) -> bool {
        !self.answers.is_empty()
    }
}

/// Parses answer-check JSONL, naming the line of any problem.
pub fn parse_answer_cases(text: &str, source: &str) -> Result<Vec<AnswerCase>> {
    parse_lines(text, source, "questions", |c: &AnswerCase| {
        if c.query.trim().is_empty() {
            return Some("the query is empty".to_string());
        }
        c.answers.iter().position(|a| a.trim().is_empty()).map(|j| {
            format!("answers[{j}] is empty (list no answers for an unanswerable question)")
        })
    })
}

/// Lowercased, whitespace collapsed to single spaces: how answers and spans are compared.
fn normalised(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Whether `answer` contains `span` (case and runs of whitespace ignored).
pub fn contains_span(answer: &str, span: &str) -> bool {
    normalised(answer).contains(&normalised(span))
}

/// One question's outcome in an answer check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerCheck {
    pub query: String,
    pub answerable: bool,
    pub confident: bool,
    /// The answer contains an expected span (answerable questions only; a refusal is not correct).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correct: Option<bool>,
    /// The expected document is among the citations (when the question names one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cited_document: Option<bool>,
    pub answer: String,
}

/// An answer check over a set of questions: shares are `None` where nothing was there to count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerReport {
    pub questions: usize,
    pub answerable: usize,
    pub unanswerable: usize,
    /// The floor the collection refused below, and whether it was calibrated.
    pub confidence_floor: f32,
    pub calibrated: bool,
    /// Of the answerable questions: answered (confident), answered with an expected span (over all answerable,
    /// then over the answered ones), the expected document cited.
    pub answered: Option<f64>,
    pub span_rate: Option<f64>,
    pub span_rate_answered: Option<f64>,
    pub cited_document: Option<f64>,
    /// Of the unanswerable questions: refused.
    pub refused: Option<f64>,
    /// Of all confident answers, those to answerable questions; of all refusals, those of unanswerable ones.
    pub confident_precision: Option<f64>,
    pub refusal_precision: Option<f64>,
    pub checks: Vec<AnswerCheck>,
}

fn share(n: usize, of: usize) -> Option<f64> {
    (of > 0).then(|| n as f64 / of as f64)
}

/// Answers every question from `c` with `opts` (extractive) and scores the answers against their spans and
/// the refusals against the unanswerable questions; `progress` is called after each question.
pub fn check_answers(
    c: &crate::collection::Collection,
    embedder: &dyn crate::embed::Embedder,
    cases: &[AnswerCase],
    opts: &crate::query::QueryOptions,
    progress: &mut dyn FnMut(),
) -> Result<AnswerReport> {
    let mut checks = Vec::with_capacity(cases.len());
    for q in cases {
        let r = crate::query::answer(c, embedder, &q.query, opts)?;
        let answerable = q.answerable();
        checks.push(AnswerCheck {
            query: q.query.clone(),
            answerable,
            confident: r.confident,
            correct: answerable
                .then(|| r.confident && q.answers.iter().any(|s| contains_span(&r.answer, s))),
            cited_document: q
                .document
                .as_ref()
                .map(|d| r.citations.iter().any(|ci| &ci.document == d)),
            answer: r.answer,
        });
        progress();
    }
    let count = |f: &dyn Fn(&AnswerCheck) -> bool| checks.iter().filter(|c| f(c)).count();
    let answerable = count(&|c| c.answerable);
    let answered = count(&|c| c.answerable && c.confident);
    let correct = count(&|c| c.correct == Some(true));
    let refused = count(&|c| !c.answerable && !c.confident);
    let confident = count(&|c| c.confident);
    let named = count(&|c| c.cited_document.is_some());
    let cited = count(&|c| c.cited_document == Some(true));
    Ok(AnswerReport {
        questions: checks.len(),
        answerable,
        unanswerable: checks.len() - answerable,
        confidence_floor: opts
            .min_similarity
            .unwrap_or(c.manifest.config.min_similarity),
        calibrated: opts.min_similarity.is_none() && c.manifest.config.calibrated,
        answered: share(answered, answerable),
        span_rate: share(correct, answerable),
        span_rate_answered: share(correct, answered),
        cited_document: share(cited, named),
        refused: share(refused, checks.len() - answerable),
        confident_precision: share(answered, confident),
        refusal_precision: share(refused, checks.len() - confident),
        checks,
    })
}

/// A confidence floor chosen from labelled questions: the best dense similarity of each answerable and each
/// unanswerable question, and the floor that separates them best.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FloorCalibration {
    /// Answer when the best dense similarity is at least this; refuse below it.
    pub floor: f32,
    pub answerable: usize,
    pub unanswerable: usize,
    /// Share of the answerable questions at or above the floor (answered).
    pub answered: f64,
    /// Share of the unanswerable questions below the floor (refused).
    pub refused: f64,
    /// Mean of the two shares.
    pub balanced_accuracy: f64,
}

/// Chooses the floor that maximises balanced accuracy (the mean of the answered share of answerable questions
/// and the refused share of unanswerable ones), so neither side's size decides it. Candidates are the
/// midpoints between neighbouring observed similarities; when several tie, the middle of the best plateau
/// (the choice least sensitive to which questions were labelled). Needs at least one question of each kind.
pub fn calibrate_floor(answerable: &[f32], unanswerable: &[f32]) -> Result<FloorCalibration> {
    if answerable.is_empty() || unanswerable.is_empty() {
        return Err(Error::Invalid(format!(
            "calibrating the confidence floor needs answerable and unanswerable questions (got {} and {})",
            answerable.len(),
            unanswerable.len()
        )));
    }
    if let Some(x) = answerable
        .iter()
        .chain(unanswerable)
        .find(|x| !x.is_finite())
    {
        return Err(Error::Invalid(format!("a similarity is not finite: {x}")));
    }
    let mut all: Vec<f32> = answerable.iter().chain(unanswerable).copied().collect();
    all.sort_by(f32::total_cmp);
    all.dedup();
    let mut candidates = vec![all[0] - 1e-3];
    candidates.extend(all.windows(2).map(|w| (w[0] + w[1]) / 2.0));
    candidates.push(all[all.len() - 1] + 1e-3);
    let judge = |floor: f32| {
        let answered =
            answerable.iter().filter(|&&s| s >= floor).count() as f64 / answerable.len() as f64;
        let refused =
            unanswerable.iter().filter(|&&s| s < floor).count() as f64 / unanswerable.len() as f64;
        (answered, refused, (answered + refused) / 2.0)
    };
    let scored: Vec<(f32, (f64, f64, f64))> = candidates.iter().map(|&f| (f, judge(f))).collect();
    let top = scored.iter().map(|s| s.1.2).fold(f64::MIN, f64::max);
    let tied: Vec<&(f32, (f64, f64, f64))> =
        scored.iter().filter(|s| s.1.2 >= top - 1e-12).collect();
    let (floor, (answered, refused, balanced_accuracy)) = *tied[tied.len() / 2];
    Ok(FloorCalibration {
        floor,
        answerable: answerable.len(),
        unanswerable: unanswerable.len(),
        answered,
        refused,
        balanced_accuracy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_match_across_case_and_whitespace() {
        assert!(contains_span(
            "Python is an Interpreted,\n  interactive language [1]",
            "interpreted, interactive"
        ));
        assert!(!contains_span("Python is compiled", "interpreted"));
    }

    #[test]
    fn answer_cases_name_the_bad_line() {
        let ok = parse_answer_cases(
            "{\"query\": \"q\", \"answers\": [\"a\"]}\n\n{\"query\": \"r\"}\n",
            "f",
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        assert!(ok[0].answerable() && !ok[1].answerable());
        let e = parse_answer_cases(
            "{\"query\": \"q\"}\n{\"query\": \"r\", \"answers\": [\" \"]}",
            "f",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("f: line 2") && e.contains("answers[0]"), "{e}");
        let e = parse_answer_cases("{\"query\": \"q\", \"extra\": 1}", "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1") && e.contains("extra"), "{e}");
    }

    #[test]
    fn the_floor_separates_labelled_questions() {
        // Separable: any floor between 0.40 and 0.55 is perfect; the middle of that plateau is chosen.
        let c = calibrate_floor(&[0.55, 0.7, 0.8], &[0.1, 0.3, 0.4]).unwrap();
        assert_eq!(
            (c.answered, c.refused, c.balanced_accuracy),
            (1.0, 1.0, 1.0)
        );
        assert!(c.floor > 0.4 && c.floor <= 0.55, "{c:?}");
        // Overlapping: one unanswerable question scores 0.6, above two answerable ones. A floor between 0.3 and
        // 0.5 answers all answerable and refuses 2 of 3 unanswerable (0.833); 0.65 answers 2 of 4 and refuses
        // all (0.75).
        let c = calibrate_floor(&[0.5, 0.55, 0.7, 0.8], &[0.2, 0.3, 0.6]).unwrap();
        assert!(
            (c.balanced_accuracy - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-9,
            "{c:?}"
        );
        assert!(c.floor > 0.3 && c.floor <= 0.5, "{c:?}");
        assert!(calibrate_floor(&[0.5], &[]).is_err());
        assert!(calibrate_floor(&[f32::NAN], &[0.1]).is_err());
    }

    #[test]
    fn chunks_collapse_to_distinct_documents_at_their_best_rank() {
        let ch = |doc: &str, section: &str| Chunk {
            id: format!("{doc}#x"),
            document: doc.into(),
            section: section.into(),
            section_path: section.into(),
            start: 0,
            end: 0,
            text: String::new(),
            tokens: 0,
            untrusted: None,
            quarantined: false,
        };
        let (a1, a2, b1, b2, c1) = (
            ch("a", "1"),
            ch("a", "2"),
            ch("b", "1"),
            ch("b", "2"),
            ch("c", "1"),
        );
        // Ranked chunks: b, b again, a, c, a again. Relevant: document a.
        let j = judged(&[&b1, &b2, &a1, &c1, &a2], &["a".to_string()]);
        assert_eq!(j, vec![None, Some("a".to_string()), None]);
        // Section-level IDs: a#2 relevant; a#1 is a miss unit (document a), a#2 still counts when it comes.
        let j = judged(&[&a1, &a2, &b1], &["a#2".to_string()]);
        assert_eq!(j, vec![None, Some("a#2".to_string()), None]);
    }

    #[test]
    fn metrics_match_a_hand_computation() {
        // Relevant: A and B. Ranking: miss, A, A again (counts once), miss, B.
        let j = vec![
            None,
            Some("A".to_string()),
            None,
            None,
            Some("B".to_string()),
        ];
        let (r5, r10, mrr, ndcg) = score(&j, 2);
        assert_eq!((r5, r10), (1.0, 1.0));
        assert!((mrr - 0.5).abs() < 1e-12);
        let dcg = 1.0 / 3f64.log2() + 1.0 / 6f64.log2();
        let idcg = 1.0 + 1.0 / 3f64.log2();
        assert!((ndcg - dcg / idcg).abs() < 1e-12);
        assert!(parse_qrels("{\"query\": \"q\", \"relevant\": []}", "q.jsonl").is_err());
        let e = parse_qrels(
            "{\"query\": \"q\", \"relevant\": [\"a\"]}\nnot json",
            "q.jsonl",
        )
        .unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }
}
