//! all-MiniLM-L6-v2's tokenizer (`data/minilm/tokenizer.json`, the model's own file)
//! against the token ids of the original Python tokenizer for the 24 reference sentences
//! (`data/minilm/reference.json`): exactly equal, accents, punctuation, capitals, numbers
//! and long words included. Runs without the weights.

use lapis_models::minilm::Tokenizer;

#[test]
fn ids_match_the_original_tokenizer() {
    let path = |f: &str| {
        lapis_models::data::data_path(&format!("minilm/{f}"))
            .unwrap_or_else(|e| panic!("data/minilm/{f}: {e}"))
    };
    let tok = Tokenizer::load(&path("tokenizer.json")).expect("tokenizer.json");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path("reference.json")).unwrap()).unwrap();
    let sentences = doc["sentences"].as_array().unwrap();
    let ids = doc["input_ids"].as_array().unwrap();
    assert!(sentences.len() >= 20 && sentences.len() == ids.len());
    for (s, want) in sentences.iter().zip(ids) {
        let want: Vec<u32> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let got = tok.encode(s.as_str().unwrap()).unwrap();
        assert_eq!(got, want, "{s}");
    }
    // Truncation at 256 ids, [SEP] kept last.
    let long = "word ".repeat(400);
    let got = tok.encode(&long).unwrap();
    assert_eq!(got.len(), 256);
    assert_eq!((got[0], got[255]), (101, 102));
}
