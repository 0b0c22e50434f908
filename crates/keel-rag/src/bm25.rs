//! BM25 over chunks with tantivy: English stemming, the section title indexed next to the text, user questions
//! parsed leniently (no query syntax errors from punctuation), the chunk's ordinal kept as a fast field.

use std::path::Path;

use tantivy::collector::TopDocs;
use tantivy::query::QueryParser;
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::{Index, IndexReader, ReloadPolicy, TantivyDocument};

use crate::chunk::Chunk;
use crate::{Error, Result};

/// A built BM25 index.
pub struct Bm25 {
    index: Index,
    reader: IndexReader,
    text: Field,
    section: Field,
}

fn schema() -> (Schema, Field, Field, Field) {
    let mut sb = Schema::builder();
    let opts = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("en_stem")
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let text = sb.add_text_field("text", opts.clone());
    let section = sb.add_text_field("section", opts);
    let ord = sb.add_u64_field("ord", INDEXED | STORED | FAST);
    (sb.build(), text, section, ord)
}

fn tv(e: tantivy::TantivyError) -> Error {
    Error::Index(format!("BM25 index: {e}"))
}

impl Bm25 {
    /// Builds the index of `chunks` (ordinal = position) in `dir`, which must not exist yet.
    pub fn build(dir: &Path, chunks: &[Chunk]) -> Result<Bm25> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let (schema, text, section, ord) = schema();
        let index = Index::create_in_dir(dir, schema).map_err(tv)?;
        let mut w: tantivy::IndexWriter<TantivyDocument> =
            index.writer_with_num_threads(1, 50_000_000).map_err(tv)?;
        for (i, c) in chunks.iter().enumerate() {
            let mut d = TantivyDocument::default();
            d.add_text(text, &c.text);
            d.add_text(section, &c.section);
            d.add_u64(ord, i as u64);
            w.add_document(d).map_err(tv)?;
        }
        w.commit().map_err(tv)?;
        w.wait_merging_threads().map_err(tv)?;
        Self::open(dir)
    }

    pub fn open(dir: &Path) -> Result<Bm25> {
        let index = Index::open_in_dir(dir).map_err(tv)?;
        let s = index.schema();
        let field = |n: &str| s.get_field(n).map_err(tv);
        let (text, section) = (field("text")?, field("section")?);
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(tv)?;
        Ok(Bm25 {
            index,
            reader,
            text,
            section,
        })
    }

    /// The best `n` chunk ordinals for `query` with their BM25 scores, best first.
    pub fn search(&self, query: &str, n: usize) -> Result<Vec<(u32, f32)>> {
        let mut qp = QueryParser::for_index(&self.index, vec![self.text, self.section]);
        qp.set_field_boost(self.section, 0.5);
        // Operators and field syntax in a question are text, not query language.
        let cleaned: String = query
            .chars()
            .map(|c| if c.is_alphanumeric() { c } else { ' ' })
            .collect();
        let (q, _) = qp.parse_query_lenient(&cleaned);
        let searcher = self.reader.searcher();
        let top = searcher
            .search(&q, &TopDocs::with_limit(n.max(1)).order_by_score())
            .map_err(tv)?;
        let mut out = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let col = searcher
                .segment_reader(addr.segment_ord)
                .fast_fields()
                .u64("ord")
                .map_err(tv)?;
            if let Some(o) = col.first(addr.doc_id) {
                out.push((o as u32, score));
            }
        }
        Ok(out)
    }
}
