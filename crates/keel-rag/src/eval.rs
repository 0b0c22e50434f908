//! Retrieval evaluation against qrels: recall@k, MRR@10 and nDCG@10 (binary relevance). A qrels line is
//! `{"query": "...", "relevant": ["ID", ...]}`; a chunk matches an ID equal to its document path or to
//! `document#section`. The ranked chunks are reduced to a ranking of distinct units, each at the rank of its
//! best chunk (MaxP): a chunk that matches a relevant ID stands for that ID, any other for its document, and a
//! unit seen before is dropped (it neither counts again nor takes a rank). At document level this is the
//! usual "a document scored by its best passage".

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

/// Parses a qrels JSONL text, naming the line of any problem.
pub fn parse_qrels(text: &str, source: &str) -> Result<Vec<Qrel>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let q: Qrel = serde_json::from_str(line)
            .map_err(|e| Error::Invalid(format!("{source}: line {}: {e}", i + 1)))?;
        if q.query.trim().is_empty() || q.relevant.is_empty() {
            return Err(Error::Invalid(format!(
                "{source}: line {}: a qrel needs a query and at least one relevant id",
                i + 1
            )));
        }
        out.push(q);
    }
    if out.is_empty() {
        return Err(Error::Invalid(format!("{source}: no qrels")));
    }
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

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
