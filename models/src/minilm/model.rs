//! The all-MiniLM-L6-v2 forward pass on lapis ops (inference only).
//!
//! BERT (Devlin et al., 2019) with MiniLM's sizes (Wang et al., 2020): for token ids
//! `w_1 … w_T` of a sentence (type 0, positions `0 … T−1`),
//!
//! ```text
//! X⁰ = LN(E_word[w] + E_pos[0..T] + E_type[0])
//! for each of the 6 blocks (post-LN):
//!     A  = softmax(Q Kᵀ / √32 + M) V  per head (12 heads of 32), Q = X Wqᵀ + bq, …
//!     X  = LN(X + A Woᵀ + bo)
//!     X  = LN(X + GELU(X W1ᵀ + b1) W2ᵀ + b2)          W1: 1536 × 384
//! e  = Σ_t m_t X_t / Σ_t m_t,   embedding = e / ‖e‖
//! ```
//!
//! with `M = −10³⁰` on padded keys (`m_t = 0`), LN's ε = 10⁻¹², and weights `[out, in]`
//! as stored (read through `matmul_t`, no transposed copies). GELU is lapis' tanh form;
//! the original uses the erf form, and the two change no embedding's cosine by more
//! than 1.3·10⁻⁶ (measured with the original model: `data/minilm/reference.json`,
//! `cosine_with_tanh_gelu`).

use std::path::Path;

use lapis_ops::{self as ops, Device, LapisError, Result, Tensor};

/// Sizes of all-MiniLM-L6-v2 (`config.json`).
pub const DIM: usize = 384;
/// Attention heads.
pub const HEADS: usize = 12;
/// Encoder blocks.
pub const LAYERS: usize = 6;
/// Longest input, in tokens (sentence-transformers' `max_seq_length`).
pub const MAX_TOKENS: usize = 256;
const EPS: f32 = 1e-12;

/// One encoder block's weights.
struct Block {
    q: (Tensor, Tensor),
    k: (Tensor, Tensor),
    v: (Tensor, Tensor),
    o: (Tensor, Tensor),
    ln1: (Tensor, Tensor),
    up: (Tensor, Tensor),
    down: (Tensor, Tensor),
    ln2: (Tensor, Tensor),
}

/// The model's weights on a device.
pub struct MiniLm {
    word: Tensor,
    pos: Tensor,
    typ: Tensor,
    ln: (Tensor, Tensor),
    blocks: Vec<Block>,
}

/// `x W^T + b` for `x [N, in]`, `W [out, in]`.
fn linear(x: &Tensor, (w, b): &(Tensor, Tensor)) -> Result<Tensor> {
    ops::add(&ops::matmul_t(x, w, false, true)?, b)
}

/// Layer norm over the last axis of `x [N, D]`.
fn layer_norm(x: &Tensor, (g, b): &(Tensor, Tensor)) -> Result<Tensor> {
    let axis = x.rank() - 1;
    let mu = ops::mean(x, axis)?;
    let xc = ops::sub(x, &mu)?;
    let var = ops::mean(&ops::mul(&xc, &xc)?, axis)?;
    let inv = ops::sqrt(&ops::add_scalar(&var, EPS)?)?;
    ops::add(&ops::mul(&ops::div(&xc, &inv)?, g)?, b)
}

impl MiniLm {
    /// Loads `model.safetensors` from the model folder `dir` (see
    /// [`super::fetch`]) onto `dev`.
    pub fn load(dev: &Device, dir: &Path) -> Result<Self> {
        let path = dir.join("model.safetensors");
        let bytes = std::fs::read(&path).map_err(|e| LapisError::file("read model", &path, e))?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| LapisError::Format {
            what: path.display().to_string(),
            msg: e.to_string(),
        })?;
        let get = |name: &str| -> Result<Tensor> {
            let v = st.tensor(name).map_err(|e| LapisError::Format {
                what: path.display().to_string(),
                msg: format!("{name}: {e}"),
            })?;
            if v.dtype() != safetensors::Dtype::F32 {
                return Err(LapisError::Format {
                    what: path.display().to_string(),
                    msg: format!("{name}: {:?}, expected F32", v.dtype()),
                });
            }
            let data: Vec<f32> = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Tensor::from_slice(dev, v.shape(), &data)
        };
        let pair = |p: &str| -> Result<(Tensor, Tensor)> {
            Ok((get(&format!("{p}.weight"))?, get(&format!("{p}.bias"))?))
        };
        let ln = |p: &str| -> Result<(Tensor, Tensor)> {
            Ok((get(&format!("{p}.weight"))?, get(&format!("{p}.bias"))?))
        };
        let mut blocks = Vec::with_capacity(LAYERS);
        for i in 0..LAYERS {
            let p = format!("encoder.layer.{i}");
            blocks.push(Block {
                q: pair(&format!("{p}.attention.self.query"))?,
                k: pair(&format!("{p}.attention.self.key"))?,
                v: pair(&format!("{p}.attention.self.value"))?,
                o: pair(&format!("{p}.attention.output.dense"))?,
                ln1: ln(&format!("{p}.attention.output.LayerNorm"))?,
                up: pair(&format!("{p}.intermediate.dense"))?,
                down: pair(&format!("{p}.output.dense"))?,
                ln2: ln(&format!("{p}.output.LayerNorm"))?,
            });
        }
        Ok(MiniLm {
            word: get("embeddings.word_embeddings.weight")?,
            pos: get("embeddings.position_embeddings.weight")?,
            typ: get("embeddings.token_type_embeddings.weight")?,
            ln: ln("embeddings.LayerNorm")?,
            blocks,
        })
    }

    /// Sentence embeddings `[B, 384]` (unit length) of a batch of token-id sequences
    /// (each with its `[CLS]` … `[SEP]`, 1 to [`MAX_TOKENS`] ids, as the tokenizer gives
    /// them); shorter ones are padded and masked.
    pub fn embed(&self, batch: &[Vec<u32>]) -> Result<Tensor> {
        const OP: &str = "MiniLm::embed";
        let dev = self.word.device();
        let b = batch.len();
        let t = batch.iter().map(Vec::len).max().unwrap_or(0);
        if b == 0 || t == 0 || t > MAX_TOKENS || batch.iter().any(Vec::is_empty) {
            return Err(LapisError::invalid(
                OP,
                "batch",
                format!("{b} sequences, longest {t}"),
                format!("needs ≥ 1 non-empty sequence of ≤ {MAX_TOKENS} token ids"),
            ));
        }
        let vocab = self.word.shape()[0] as u32;
        let mut ids = vec![0u32; b * t];
        let mut mask = vec![0f32; b * t];
        for (r, seq) in batch.iter().enumerate() {
            for (j, &id) in seq.iter().enumerate() {
                if id >= vocab {
                    return Err(LapisError::invalid(
                        OP,
                        "token id",
                        id,
                        format!("must be < {vocab}"),
                    ));
                }
                ids[r * t + j] = id;
                mask[r * t + j] = 1.0;
            }
        }
        let ids = Tensor::from_slice(dev, &[b * t], &ids)?;
        let mask = Tensor::from_slice(dev, &[b, t], &mask)?;
        let pos = ops::slice(&self.pos, 0, 0, t)?; // [T, D]
        let typ = ops::slice(&self.typ, 0, 0, 1)?; // [1, D]
        let x = ops::index_select(&self.word, 0, &ids)?.reshape(&[b, t, DIM])?;
        let x = ops::add(&ops::add(&x, &pos)?, &typ)?;
        let mut x = layer_norm(&x.reshape(&[b * t, DIM])?, &self.ln)?;
        // Additive key mask [B, 1, 1, T]: 0 for tokens, −1e30 for padding.
        let key_mask = ops::affine(&mask, 1e30, -1e30)?.reshape(&[b, 1, 1, t])?;
        let dh = DIM / HEADS;
        let heads = |y: Tensor| -> Result<Tensor> {
            ops::permute(&y.reshape(&[b, t, HEADS, dh])?, &[0, 2, 1, 3])
        };
        for blk in &self.blocks {
            let q = heads(linear(&x, &blk.q)?)?;
            let k = heads(linear(&x, &blk.k)?)?;
            let v = heads(linear(&x, &blk.v)?)?;
            let scores = ops::mul_scalar(
                &ops::matmul_t(&q, &k, false, true)?,
                1.0 / (dh as f32).sqrt(),
            )?;
            let att = ops::matmul(&ops::softmax(&ops::add(&scores, &key_mask)?, 3)?, &v)?;
            let att = ops::permute(&att, &[0, 2, 1, 3])?.reshape(&[b * t, DIM])?;
            x = layer_norm(&ops::add(&x, &linear(&att, &blk.o)?)?, &blk.ln1)?;
            let h = ops::gelu(&linear(&x, &blk.up)?)?;
            x = layer_norm(&ops::add(&x, &linear(&h, &blk.down)?)?, &blk.ln2)?;
        }
        // Mean over the unmasked tokens, then unit length.
        let x = x.reshape(&[b, t, DIM])?;
        let m = mask.reshape(&[b, t, 1])?;
        let summed = ops::sum(&ops::mul(&x, &m)?, 1)?.reshape(&[b, DIM])?;
        let count = ops::sum(&mask, 1)?; // [B, 1]
        let e = ops::div(&summed, &count)?;
        let norm = ops::sqrt(&ops::sum(&ops::mul(&e, &e)?, 1)?)?;
        ops::div(&e, &norm)
    }
}
