//! all-MiniLM-L6-v2's tokenizer (BERT WordPiece, lower-cased, 30 522 ids) from its
//! `tokenizer.json`, by the `tokenizers` crate, set as sentence-transformers uses it:
//! `[CLS] … [SEP]`, no padding, truncation at [`MAX_TOKENS`](super::model::MAX_TOKENS).

use std::path::Path;

use lapis_ops::{LapisError, Result};

/// The tokenizer (see the module docs).
pub struct Tokenizer(tokenizers::Tokenizer);

impl Tokenizer {
    /// Reads `tokenizer.json` (the model folder's, or the copy in `data/minilm/`).
    pub fn load(path: &Path) -> Result<Self> {
        let fmt = |msg: String| LapisError::Format {
            what: path.display().to_string(),
            msg,
        };
        let mut t = tokenizers::Tokenizer::from_file(path).map_err(|e| fmt(e.to_string()))?;
        t.with_padding(None);
        t.with_truncation(Some(tokenizers::TruncationParams {
            max_length: super::model::MAX_TOKENS,
            ..Default::default()
        }))
        .map_err(|e| fmt(e.to_string()))?;
        Ok(Tokenizer(t))
    }

    /// The token ids of `text`, `[CLS]` and `[SEP]` included (at most 256).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let e = self.0.encode(text, true).map_err(|e| LapisError::Format {
            what: "text to tokenize".into(),
            msg: e.to_string(),
        })?;
        Ok(e.get_ids().to_vec())
    }
}
