//! The fortunes corpus (`data/text/fortunes.txt`, Debian's `fortunes` package: quotations,
//! jokes and definitions, 2.5 MB of English text) and the text units the sparse methods
//! take from it (`specs/sparse-methods.md`):
//!
//! - **fortunes** ([`split_fortunes`]): the shipped file has lost the `%` lines that separate
//!   fortunes in Debian's source, so the boundaries are recovered by a rule (our design):
//!   fortunes are sorted alphabetically and every line after the first starts a new one
//!   when it begins in column 0 (no leading blank) and the last non-blank line before it is
//!   either an attribution (`-- Name`, after its indentation) or ends a sentence (`.`, `!`,
//!   `?`, optionally followed by `"`, `'` or `)`). A multi-paragraph fortune may be cut in
//!   two by this rule; nothing else is merged or lost (the fortunes joined by `\n` are the
//!   file's lines);
//! - **the char-LM split** ([`fortunes_split`]): the first 90 % of the fortunes (in file
//!   order) are training text and the last 10 % validation, so a fortune the rule cuts in
//!   two can straddle the split only at the single boundary (SoftMoE §1.4, "split 90/10 by
//!   whole fortunes");
//! - **sentences** ([`sentences`], [`corpus_sentences`]): attribution lines dropped, lines
//!   joined, split after `.`/`!`/`?` (and closing quotes) before a capital letter or a
//!   quote; a sentence is kept when it has 4–64 MiniLM word-pieces, ≥ 3 words and at least
//!   60 % letters (this drops code and ASCII art); duplicates are dropped (SoftSAE §2.3
//!   data A, CEDAR §3.3);
//! - **vocabulary words** ([`corpus_words`]): lower-cased alphabetic words of ≥ 4 letters
//!   that are not English stop words, by corpus frequency (ties alphabetical) — the words
//!   CEDAR names its axes with (§3.2).

use std::collections::{BTreeMap, HashSet};

use lapis_ops::{LapisError, Result};

use super::batches::SplitMix64;
use super::shipped::data_path;
use crate::minilm::Tokenizer;

/// The corpus file, relative to `data/`.
pub const FORTUNES_FILE: &str = "text/fortunes.txt";

/// Word-piece bounds of a kept sentence (without `[CLS]`/`[SEP]`), SoftSAE §2.3.
pub const SENTENCE_PIECES: (usize, usize) = (4, 64);

/// The corpus text (read from the shipped file).
pub fn fortunes_text() -> Result<String> {
    let path = data_path(FORTUNES_FILE)?;
    std::fs::read_to_string(&path).map_err(|e| super::io_error(&path, e))
}

/// Whether a trimmed line is an attribution (`-- Name`).
fn is_attribution(line: &str) -> bool {
    line.trim_start().starts_with("--")
}

/// Whether a line ends a sentence: `.`, `!` or `?`, optionally followed by closing
/// quotes or a parenthesis.
fn ends_sentence(line: &str) -> bool {
    let t = line.trim_end().trim_end_matches(['"', '\'', ')']);
    t.ends_with(['.', '!', '?'])
}

/// Splits the corpus text into fortunes by the rule of the module docs; each fortune is
/// its lines joined by `\n` (no trailing newline). Empty input gives no fortunes.
pub fn split_fortunes(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur: Vec<&str> = Vec::new();
    let mut last_nonblank: Option<&str> = None;
    for line in text.lines() {
        let starts_col0 = line.chars().next().is_some_and(|c| !c.is_whitespace());
        let boundary = starts_col0
            && !is_attribution(line)
            && last_nonblank.is_some_and(|p| is_attribution(p) || ends_sentence(p));
        if boundary && !cur.is_empty() {
            out.push(cur.join("\n"));
            cur.clear();
        }
        cur.push(line);
        if !line.trim().is_empty() {
            last_nonblank = Some(line);
        }
    }
    if cur.iter().any(|l| !l.trim().is_empty()) {
        out.push(cur.join("\n"));
    }
    out
}

/// The shipped corpus split into fortunes ([`split_fortunes`]).
pub fn fortunes() -> Result<Vec<String>> {
    Ok(split_fortunes(&fortunes_text()?))
}

/// The char-LM split of SoftMoE §1.4: `(train, validation)` bytes, the first 90 % of the
/// fortunes and the last 10 %, each fortune followed by `\n`.
pub fn fortunes_split() -> Result<(Vec<u8>, Vec<u8>)> {
    let f = fortunes()?;
    if f.len() < 10 {
        return Err(LapisError::Format {
            what: FORTUNES_FILE.into(),
            msg: format!("has {} fortunes; the 90/10 split needs ≥ 10", f.len()),
        });
    }
    let cut = f.len() * 9 / 10;
    let join = |s: &[String]| {
        let mut v = Vec::new();
        for x in s {
            v.extend_from_slice(x.as_bytes());
            v.push(b'\n');
        }
        v
    };
    Ok((join(&f[..cut]), join(&f[cut..])))
}

/// The sentences of one fortune (see the module docs; no length filter here).
pub fn sentences(fortune: &str) -> Vec<String> {
    let joined: String = fortune
        .lines()
        .filter(|l| !is_attribution(l))
        .flat_map(|l| l.split_whitespace())
        .collect::<Vec<_>>()
        .join(" ");
    let words: Vec<&str> = joined.split(' ').filter(|w| !w.is_empty()).collect();
    let mut out = Vec::new();
    let mut cur: Vec<&str> = Vec::new();
    for (i, w) in words.iter().enumerate() {
        cur.push(w);
        let next_starts = words
            .get(i + 1)
            .and_then(|n| n.chars().next())
            .is_some_and(|c| c.is_uppercase() || c == '"' || c == '\'');
        if ends_sentence(w) && next_starts {
            out.push(cur.join(" "));
            cur.clear();
        }
    }
    if !cur.is_empty() {
        out.push(cur.join(" "));
    }
    out
}

/// Whether a candidate sentence is prose: ≥ 3 words and ≥ 60 % letters among its
/// non-blank characters.
fn is_prose(s: &str) -> bool {
    let words = s.split_whitespace().count();
    let (mut letters, mut total) = (0usize, 0usize);
    for c in s.chars().filter(|c| !c.is_whitespace()) {
        total += 1;
        letters += c.is_alphabetic() as usize;
    }
    words >= 3 && total > 0 && letters * 10 >= total * 6
}

/// Up to `max` distinct prose sentences of the corpus with 4–64 word-pieces by `tok`
/// (MiniLM's tokenizer), in corpus order; when more qualify, a seeded draw (`seed`)
/// picks which.
pub fn corpus_sentences(tok: &Tokenizer, max: usize, seed: u64) -> Result<Vec<String>> {
    let mut seen = HashSet::new();
    let mut all = Vec::new();
    for f in fortunes()? {
        for s in sentences(&f) {
            if !is_prose(&s) || !seen.insert(s.clone()) {
                continue;
            }
            let pieces = tok.encode(&s)?.len().saturating_sub(2);
            if (SENTENCE_PIECES.0..=SENTENCE_PIECES.1).contains(&pieces) {
                all.push(s);
            }
        }
    }
    if all.len() > max {
        let mut idx: Vec<usize> = (0..all.len()).collect();
        SplitMix64::new(seed).shuffle(&mut idx);
        idx.truncate(max);
        idx.sort_unstable();
        all = idx.into_iter().map(|i| all[i].clone()).collect();
    }
    Ok(all)
}

/// English stop words left out of the vocabulary (only those of ≥ 4 letters matter).
const STOP_WORDS: &[&str] = &[
    "about",
    "above",
    "after",
    "again",
    "against",
    "also",
    "always",
    "another",
    "anything",
    "around",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "cannot",
    "could",
    "did",
    "does",
    "doing",
    "done",
    "down",
    "during",
    "each",
    "either",
    "else",
    "enough",
    "even",
    "ever",
    "every",
    "from",
    "further",
    "going",
    "have",
    "having",
    "here",
    "hers",
    "herself",
    "himself",
    "into",
    "itself",
    "just",
    "know",
    "less",
    "like",
    "made",
    "make",
    "many",
    "more",
    "most",
    "much",
    "must",
    "myself",
    "never",
    "nothing",
    "once",
    "only",
    "other",
    "ought",
    "ours",
    "ourselves",
    "over",
    "said",
    "same",
    "says",
    "shall",
    "should",
    "since",
    "some",
    "something",
    "still",
    "such",
    "than",
    "that",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "thing",
    "things",
    "this",
    "those",
    "though",
    "through",
    "thus",
    "together",
    "under",
    "until",
    "upon",
    "very",
    "want",
    "well",
    "were",
    "what",
    "when",
    "where",
    "whether",
    "which",
    "while",
    "whom",
    "whose",
    "will",
    "with",
    "within",
    "without",
    "would",
    "your",
    "yours",
    "yourself",
    "yourselves",
    "didn",
    "doesn",
    "isn",
    "wasn",
    "aren",
    "weren",
    "hasn",
    "haven",
    "hadn",
    "won't",
    "wouldn",
    "couldn",
    "shouldn",
    "don't",
    "that's",
    "it's",
    "i'm",
    "you're",
    "they're",
    "there's",
    "what's",
    "can't",
    "many",
    "whatever",
    "anyone",
    "someone",
    "everyone",
    "away",
    "back",
    "came",
    "come",
    "comes",
    "first",
    "get",
    "gets",
    "give",
    "goes",
    "good",
    "great",
    "keep",
    "last",
    "little",
    "long",
    "look",
    "might",
    "next",
    "once",
    "onto",
    "really",
    "right",
    "seem",
    "seems",
    "take",
    "tell",
    "think",
    "took",
    "went",
    "yet",
    "yeah",
];

/// The `max` most frequent corpus words (lower-cased, alphabetic, ≥ 4 letters, not stop
/// words), most frequent first (ties alphabetical).
pub fn corpus_words(max: usize) -> Result<Vec<String>> {
    let text = fortunes_text()?;
    let stop: HashSet<&str> = STOP_WORDS.iter().copied().collect();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for w in text.split(|c: char| !c.is_ascii_alphabetic()) {
        if w.len() < 4 {
            continue;
        }
        let w = w.to_ascii_lowercase();
        if stop.contains(w.as_str()) {
            continue;
        }
        *counts.entry(w).or_default() += 1;
    }
    let mut v: Vec<(String, usize)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(v.into_iter().take(max).map(|(w, _)| w).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fortunes_split_at_attributions_and_sentence_ends() {
        let t = "A first one.\nB second\n\tcontinued.\n\t\t-- Someone\nC third:\nstill third.\nD fourth";
        let f = split_fortunes(t);
        assert_eq!(
            f,
            vec![
                "A first one.",
                "B second\n\tcontinued.\n\t\t-- Someone",
                "C third:\nstill third.",
                "D fourth"
            ]
        );
        assert_eq!(f.join("\n"), t, "every line is kept, in order");
    }

    #[test]
    fn sentences_split_before_capitals_only() {
        let s = sentences("It is 3.5 km. Then he said \"Go!\" And\nleft. e.g. this.\n\t-- Me");
        assert_eq!(
            s,
            vec![
                "It is 3.5 km.",
                "Then he said \"Go!\"",
                "And left. e.g. this."
            ]
        );
    }

    #[test]
    fn prose_filter_drops_code() {
        assert!(is_prose("Debug is human, de-fix divine."));
        assert!(!is_prose("#define BX_(x) ((x) - (((x)>>1)&0x77777777)"));
        assert!(!is_prose("Two words."));
    }
}
