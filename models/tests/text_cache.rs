//! The shipped MiniLM cache of the sparse methods (`data/minilm/sentences.*`,
//! `words.*`): its texts are exactly what the corpus rules select today (no drift between
//! code and data), its vectors are unit rows up to f16 rounding, and — when the MiniLM
//! weights are installed — they equal what `lapis embed` computes now.

use lapis_models::data::{
    self, corpus_sentences, corpus_words, sentence_embeddings, word_embeddings,
};
use lapis_models::minilm::{embed, fetch, MiniLm, Tokenizer};

fn tokenizer() -> Tokenizer {
    Tokenizer::load(&data::data_path("minilm/tokenizer.json").unwrap()).unwrap()
}

/// f16 stores each entry with relative error ≤ 2⁻¹¹, so a unit row's norm is within
/// 2⁻¹¹ ≈ 4.9e-4 of 1 (tolerance 1e-3).
#[test]
fn sentence_cache_matches_the_corpus_rules() {
    let s = sentence_embeddings().unwrap();
    assert_eq!(s.dim, 384);
    assert_eq!(s.len(), 6000);
    let want = corpus_sentences(&tokenizer(), 6000, 0).unwrap();
    assert_eq!(
        s.texts, want,
        "data/minilm/sentences.txt drifted from the corpus rules: rerun data/minilm/make_cache.sh"
    );
    for i in 0..s.len() {
        let n: f32 = s.row(i).iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-3, "row {i}: norm {n}");
        assert!(
            (4..=64).contains(&s.pieces[i]),
            "row {i}: {} pieces",
            s.pieces[i]
        );
    }
}

#[test]
fn word_cache_matches_the_corpus_rules() {
    let w = word_embeddings().unwrap();
    assert_eq!(w.len(), 500);
    assert_eq!(
        w.texts,
        corpus_words(500).unwrap(),
        "data/minilm/words.txt drifted: rerun data/minilm/make_cache.sh"
    );
    assert!(w
        .texts
        .iter()
        .all(|t| t.len() >= 4 && t.chars().all(|c| c.is_ascii_lowercase())));
}

/// With the weights installed, 16 cached sentences are re-embedded by lapis: cosine ≥
/// 0.9999 each (f16 storage costs ≤ ~1e-6 of cosine; the rest is the forward's f32).
#[test]
fn cache_equals_a_fresh_embedding_when_weights_are_installed() {
    let dir = std::env::var_os("LAPIS_MINILM_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| fetch::installed(&fetch::default_cache()));
    let Some(dir) = dir else {
        assert!(
            std::env::var_os("LAPIS_REQUIRE_MINILM").is_none(),
            "LAPIS_REQUIRE_MINILM is set but no MiniLM weights are installed"
        );
        eprintln!("text_cache: fresh-embedding comparison NOT RUN — no all-MiniLM-L6-v2 weights installed (`cargo run --release -- fetch minilm`)");
        return;
    };
    let dev = lapis_ops::Device::auto().expect("a compute device");
    let s = sentence_embeddings().unwrap();
    let idx: Vec<usize> = (0..16).map(|i| i * 373).collect();
    let sub = s.subset(&idx);
    let model = MiniLm::load(&dev, &dir).unwrap();
    let got = embed::embed_texts(
        &model,
        &Tokenizer::load(&dir.join("tokenizer.json")).unwrap(),
        &sub.texts,
        8,
        true,
    )
    .unwrap()
    .to_f32_vec()
    .unwrap();
    for (r, t) in sub.texts.iter().enumerate() {
        let a = &got[r * 384..(r + 1) * 384];
        let b = sub.row(r);
        let cos: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>()
            / (a.iter().map(|x| x * x).sum::<f32>().sqrt()
                * b.iter().map(|x| x * x).sum::<f32>().sqrt());
        assert!(cos >= 0.9999, "{t:?}: cosine {cos}");
    }
}
