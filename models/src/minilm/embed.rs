//! `lapis embed`: sentence embeddings of a text file, one per non-empty line, written as
//! a safetensors file (`embeddings`: f32, or f16 with `--f16`, `[N, 384]`, unit rows) with the model and the
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
    // Tokenize everything first and batch texts of similar length together (sorted by
    // token count), so a batch pads little; the rows are put back in input order on the
    // device at the end (one gather).
    let ids = texts
        .iter()
        .map(|t| tok.encode(t))
        .collect::<Result<Vec<_>>>()?;
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| (ids[i].len(), i));
    let chunks: Vec<&[usize]> = order.chunks(batch).collect();
    let mut bar = Progress::new("embed", chunks.len() as u64, quiet);
    let mut parts = Vec::with_capacity(chunks.len());
    let mut done = 0;
    for chunk in &chunks {
        let batch_ids: Vec<Vec<u32>> = chunk.iter().map(|&i| ids[i].clone()).collect();
        parts.push(model.embed(&batch_ids)?);
        done += chunk.len();
        bar.inc(&format!("{done} / {} texts", texts.len()));
    }
    bar.finish(&format!("{} texts", texts.len()));
    let refs: Vec<&Tensor> = parts.iter().collect();
    let sorted = lapis_ops::concat(&refs, 0)?;
    // Row r of `sorted` is text order[r]: text i sits at row inverse[i].
    let mut inverse = vec![0u32; order.len()];
    for (r, &i) in order.iter().enumerate() {
        inverse[i] = r as u32;
    }
    let inv = Tensor::from_slice(sorted.device(), &[inverse.len()], &inverse)?;
    lapis_ops::index_select(&sorted, 0, &inv)
}

/// Embeds every non-empty line of `input` with the model in `model_dir` and writes them
/// to `out`; returns the number of lines embedded.
pub fn embed_file(
    dev: &Device,
    input: &Path,
    out: &Path,
    model_dir: &Path,
    batch: usize,
    f16: bool,
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
    let mut emb = embed_texts(&model, &tok, &lines, batch, quiet)?;
    if f16 {
        emb = lapis_ops::to_dtype(&emb, lapis_ops::DType::F16)?;
    }
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
