//! The fuzz targets' checks (fuzz/fuzz_targets/checks.rs, included here as is) replayed on stable `cargo
//! test` over each target's real seed inputs (`fuzz/seeds/<target>/`: lines of tests/data, the shipped
//! configs, checkpoints and spool segments written by the daemon), its checked-in corpus
//! (`fuzz/corpus/<target>/`, minimized) and every crash input the fuzzer found (`fuzz/regressions/<target>/`),
//! so a bug the fuzzer found once stays fixed without nightly or cargo-fuzz. Each file's name is printed before it runs: a
//! failure names the input to reproduce with `cargo +nightly fuzz run <target> <file>`.

#[path = "../fuzz/fuzz_targets/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};

/// The inputs checked in for `target`: its seeds, corpus and regressions, each sorted by name.
fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut all = Vec::new();
    for kind in ["seeds", "corpus", "regressions"] {
        let dir = fuzz.join(kind).join(target);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd
            .map(|e| e.expect("corpus entry").path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        all.extend(files);
    }
    all
}

/// Runs `check` on every input of `target`; there must be some (an empty or missing corpus would make
/// the test pass without checking anything).
fn replay(target: &str, mut check: impl FnMut(&[u8])) {
    let files = inputs(target);
    assert!(!files.is_empty(), "no corpus checked in for {target}");
    for path in &files {
        eprintln!("{target}: {}", path.display());
        let data = std::fs::read(path).expect("read corpus file");
        check(&data);
    }
    eprintln!("{target}: {} inputs replayed", files.len());
}

#[test]
fn fuzz_corpus_parse_lines() {
    replay("parse_lines", checks::parse_lines);
}

#[test]
fn fuzz_corpus_config() {
    replay("config", checks::config);
}

#[test]
fn fuzz_corpus_checkpoint() {
    let ws = checks::Workspace::new();
    replay("checkpoint", |d| ws.checkpoint(d));
}

#[test]
fn fuzz_corpus_spool() {
    let ws = checks::Workspace::new();
    replay("spool", |d| ws.spool(d));
}

/// The spool crash the fuzzer found, by name: a record numbered `u64::MAX` (the last number, which the
/// spool never hands out) in the last segment overflowed `seq + 1` in `scan_segment` at open (a panic in
/// a debug build; in release the next number wrapped to 0 and numbers were handed out twice).
#[test]
fn fuzz_spool_record_numbered_u64_max() {
    let ws = checks::Workspace::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/spool");
    for name in ["seq_u64_max.seg", "seq_u64_max_v1.seg"] {
        let data = std::fs::read(dir.join(name)).expect("regression input");
        ws.spool(&data);
    }
}
