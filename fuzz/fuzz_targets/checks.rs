//! The checks the fuzz targets run, one function per target, shared with `tests/fuzz_regressions.rs` (which
//! includes this file with `#[path]`), so stable `cargo test` replays the checked-in corpus and every crash
//! input found through exactly the code the fuzzer ran. Each check panics (the fuzzer's finding) when the
//! code under test panics or breaks the invariant named in its doc; anything else an input does is fine.
//!
//! The checkpoint and spool checks work on files, like the daemon: a [`Workspace`] (a temp dir, on
//! `/dev/shm` when there is one, so a run does not wear a disk) is made once per process and reused.

#![allow(dead_code)] // each target uses one check

use longconn::checkpoint::{CheckpointStore, LoadError};
use longconn::config::Config;
use longconn::daemon::SavedState;
use longconn::detector::{parse_options, Detector};
use longconn::spool::{Spool, SpoolOptions, MIN_SEGMENT_BYTES};
use longconn::tail::{SourceCheckpoint, TailEvent, Tailer};
use longconn::zeek::{LogParser, ParseOptions, TsvHeader};
use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};

/// The Zeek reader: any bytes, split into lines, through one parser (headers, TSV rows, JSON) must never
/// panic, and a header block saved and rebuilt (as a checkpoint does) must parse the same.
pub fn parse_lines(data: &[u8]) {
    let mut parser = LogParser::new(ParseOptions::default());
    for line in data.split(|b| *b == b'\n') {
        let a = parser.parse_line(line);
        let mut rebuilt = LogParser::new(ParseOptions::default());
        rebuilt.set_header(TsvHeader::from_lines(parser.header().lines().to_vec()));
        if !line.starts_with(b"#") {
            assert_eq!(format!("{a:?}"), format!("{:?}", rebuilt.parse_line(line)));
        }
    }
}

/// The config loader `check` and `run` use on the file's text (`Config::from_toml_str`; the preflight
/// after it looks at the machine and is left out): never a panic, and a config it accepts prints (as
/// `check` does) an effective config that loads again to the same config. Inline secrets are printed as
/// `"***"` on purpose (`check`'s output must not leak them), so with one of those the config loaded again
/// differs in that secret only: then its effective config must print the same text.
pub fn config(data: &[u8]) {
    // `Config::load` reads the file as UTF-8: other bytes never reach the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::from_toml_str(text) else {
        return;
    };
    let effective = config.to_effective_toml();
    let again = match Config::from_toml_str(&effective) {
        Ok(again) => again,
        Err(e) => panic!("the effective config does not load: {e}\n{effective}"),
    };
    assert_eq!(
        effective,
        again.to_effective_toml(),
        "the effective config loads to another config"
    );
    if !effective.contains("\"***\"") {
        assert_eq!(
            config, again,
            "the effective config loads to another config:\n{effective}"
        );
    }
}

/// A temp dir holding what the file-based checks need, made once per process.
pub struct Workspace {
    dir: tempfile::TempDir,
    config: Config,
    state_dir: PathBuf,
    /// Where a checkpoint loaded by the daemon is saved again.
    resave_dir: PathBuf,
    spool_dir: PathBuf,
    /// The conn.log's position as a fresh tailer saves it after reading it all.
    real: SourceCheckpoint,
}

/// A few rows of the demo log, long ones among them (so alerts are raised), with its header and `#close`.
fn small_conn_log() -> Vec<u8> {
    let full: &[u8] = include_bytes!("../../config/demo/conn.log");
    let mut out = Vec::new();
    let mut rows = 0;
    for line in full.split_inclusive(|b| *b == b'\n') {
        let keep = if line.starts_with(b"#") {
            true
        } else {
            rows += 1;
            // The duration is the 9th field.
            let long = line
                .split(|b| *b == b'\t')
                .nth(8)
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| d.parse::<f64>().ok())
                .is_some_and(|d| d >= 30.0);
            rows <= 10 || long
        };
        if keep {
            out.extend_from_slice(line);
        }
    }
    out
}

impl Workspace {
    pub fn new() -> Workspace {
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::Builder::new()
                .prefix("longconn-fuzz-")
                .tempdir_in(shm)
        } else {
            tempfile::Builder::new().prefix("longconn-fuzz-").tempdir()
        }
        .expect("temp dir");
        let logs = dir.path().join("logs");
        let state_dir = dir.path().join("state");
        let resave_dir = dir.path().join("resave");
        let spool_dir = dir.path().join("spool");
        for d in [&logs, &state_dir, &resave_dir, &spool_dir] {
            fs::create_dir_all(d).expect("workspace dir");
        }
        fs::write(logs.join("conn.log"), small_conn_log()).expect("conn.log");
        let toml = format!(
            r#"
[sensor]
name = "fuzz"
[[source]]
path = "{logs}/conn.log"
start_at = "beginning"
[state]
dir = "{state}"
[window]
length = "1h"
group_by = "pair"
[single]
levels = {{ low = "30s", medium = "1m", high = "2m", critical = "5m" }}
[cumulative]
levels = {{ low = "1m", medium = "2m", high = "5m", critical = "10m" }}
[[output]]
type = "stdout"
"#,
            logs = logs.display(),
            state = state_dir.display()
        );
        let config = Config::from_toml_str(&toml).expect("workspace config");
        let mut tailer = Tailer::new(&config.sources[0], parse_options(), None);
        tailer
            .poll(&mut |_| {})
            .expect("read the workspace conn.log");
        let real = tailer.checkpoint();
        assert!(real.live.is_some(), "the workspace conn.log was not opened");
        Workspace {
            dir,
            config,
            state_dir,
            resave_dir,
            spool_dir,
            real,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Checkpoint restore: `data` as `checkpoint.json` through `CheckpointStore::load::<SavedState>` (version,
    /// checksum, then parse) and, when it loads, restored the way `Pipeline::start` does: the detector from
    /// its state, a tailer from the source checkpoint, polled (twice) against a real conn.log, every record
    /// fed to the detector; then saved and loaded again as the next checkpoint would be. Never a panic, and
    /// the state saved after that loads back to the same document.
    ///
    /// A fuzzed byte almost always breaks the checksum, so an input ending in a checksum is also tried
    /// with the checksum made right for its body (what a checkpoint damaged before it was written is). And
    /// since a fuzzed file id never names the workspace's file, each source is also tried with the ids and
    /// fingerprints of its files replaced by those of the real conn.log, so the resume path (fuzzed offset,
    /// line number, header block, skipping flag) runs.
    pub fn checkpoint(&self, data: &[u8]) {
        self.checkpoint_bytes(data);
        if let Some(resigned) = resign(data) {
            if resigned != data {
                self.checkpoint_bytes(&resigned);
            }
        }
    }

    fn checkpoint_bytes(&self, data: &[u8]) {
        let store = CheckpointStore::new(&self.state_dir);
        fs::write(store.path(), data).expect("write checkpoint.json");
        let saved = match store.load::<SavedState>(1) {
            Ok(Some(s)) => s,
            Ok(None) => panic!("checkpoint.json is there but was taken for absent"),
            Err(LoadError::SetAside(_)) => {
                assert!(!store.path().exists(), "a bad checkpoint was not set aside");
                return;
            }
            Err(LoadError::Unreadable(e)) => panic!("a checkpoint we wrote is unreadable: {e}"),
        };
        let mut detector = Detector::restore(&self.config.detector(), saved.detector);
        let source = &self.config.sources[0];
        let mut alerts = Vec::new();
        let mut positions = Vec::new();
        // At most a few sources: the daemon only restores the ones it is configured with.
        for saved_source in saved.sources.into_iter().take(3) {
            let adopted = self.adopt(&saved_source);
            for mut sc in [saved_source, adopted] {
                sc.path = source.path.clone();
                let mut tailer = Tailer::new(source, parse_options(), Some(sc));
                for _ in 0..2 {
                    let _ = tailer.poll(&mut |ev| {
                        if let TailEvent::Record { rec, .. } = ev {
                            detector.process(&rec, source.kind, &mut alerts);
                        }
                    });
                }
                positions.push(tailer.checkpoint());
            }
        }
        for a in &alerts {
            let json = a.to_json();
            serde_json::from_str::<serde_json::Value>(&json).expect("an alert is JSON");
        }
        let state = SavedState {
            version: 1,
            sources: positions,
            detector: detector.snapshot(),
        };
        let resave = CheckpointStore::new(&self.resave_dir);
        resave.save(&state).expect("save the checkpoint again");
        let again = match resave.load::<SavedState>(1) {
            Ok(Some(s)) => s,
            Ok(None) => panic!("the checkpoint saved again is absent"),
            Err(e) => panic!("the checkpoint saved again does not load: {e}"),
        };
        assert_eq!(
            serde_json::to_value(&state).expect("state as JSON"),
            serde_json::to_value(&again).expect("state as JSON"),
            "the checkpoint saved again loads to another state"
        );
    }

    /// `sc` with the ids and fingerprints of its files made those of the workspace's conn.log.
    fn adopt(&self, sc: &SourceCheckpoint) -> SourceCheckpoint {
        let mut sc = sc.clone();
        let Some(real) = self.real.live.as_ref() else {
            return sc;
        };
        for f in sc.live.iter_mut().chain(sc.draining.iter_mut()) {
            f.id = real.id;
            f.fingerprint = real.fingerprint.clone();
        }
        sc
    }

    /// Spool segment reader: `data` as the only segment of a spool, opened by `Spool::open` (which scans
    /// it and cuts a torn tail) and read to the end by an output's reader; then one alert appended, synced
    /// and read. Never a panic or an error; every record read back is a line of the segment with a valid
    /// checksum (or a checksum-less version 1 line), the sequence numbers are strictly increasing, and
    /// the appended record comes after all of them.
    pub fn spool(&self, data: &[u8]) {
        let dir = &self.spool_dir;
        if dir.exists() {
            fs::remove_dir_all(dir).expect("clear the spool dir");
        }
        fs::create_dir_all(dir).expect("spool dir");
        fs::write(dir.join(format!("{:020}.seg", 0)), data).expect("write the segment");
        let valid = valid_lines(data);
        let opts = SpoolOptions {
            max_bytes: 1 << 30,
            segment_bytes: MIN_SEGMENT_BYTES,
        };
        let mut spool = Spool::open(dir, opts).expect("open the spool");
        let mut reader = spool.reader("fuzz").expect("a reader");
        let mut last: Option<u64> = None;
        let mut read = 0usize;
        loop {
            let batch = reader.read(64).expect("read the spool");
            if batch.is_empty() {
                break;
            }
            for r in batch {
                assert!(
                    valid
                        .iter()
                        .any(|(s, j)| *s == r.seq && *j == r.json.as_bytes()),
                    "record {} read back is not a valid line of the segment",
                    r.seq
                );
                if let Some(l) = last {
                    assert!(
                        r.seq > l,
                        "sequence numbers not increasing: {} after {l}",
                        r.seq
                    );
                }
                last = Some(r.seq);
                read += 1;
            }
            assert!(
                read <= valid.len(),
                "more records read than the segment holds"
            );
        }
        let json =
            r#"{"@timestamp":"2024-01-01T00:00:00Z","event":{"id":"fuzz-appended","severity":1}}"#;
        // A spool whose numbers are used up cannot take more: an error, not a panic, is acceptable.
        let Ok(seq) = spool.append_json(json) else {
            return;
        };
        if let Some(l) = last {
            assert!(seq > l, "appended as {seq}, after {l} was read");
        }
        spool.sync().expect("sync the spool");
        let batch = reader.read(64).expect("read the appended alert");
        assert_eq!(
            batch.len(),
            1,
            "the appended alert is not the one record read"
        );
        assert_eq!(batch[0].seq, seq);
        assert_eq!(&*batch[0].json, json);
    }
}

impl Default for Workspace {
    fn default() -> Workspace {
        Workspace::new()
    }
}

/// The records a segment holds by the format (src/spool/record.rs), parsed here on their own: `(seq, json)` of
/// each line `SEQ<TAB>CRC<TAB>JSON` whose CRC-32 of `SEQ<TAB>JSON` matches, and of each line `SEQ<TAB>{...`
/// (version 1, no checksum).
fn valid_lines(data: &[u8]) -> Vec<(u64, &[u8])> {
    let mut out = Vec::new();
    let mut lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    lines.pop(); // after the last LF: not a whole line
    for line in lines {
        let mut parts = line.splitn(2, |b| *b == b'\t');
        let (Some(seq_text), Some(rest)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Some(seq) = std::str::from_utf8(seq_text)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        if rest.first() == Some(&b'{') {
            out.push((seq, rest));
            continue;
        }
        if rest.len() > 9 && rest[8] == b'\t' {
            let Some(want) = std::str::from_utf8(&rest[..8])
                .ok()
                .and_then(|h| u32::from_str_radix(h, 16).ok())
            else {
                continue;
            };
            let json = &rest[9..];
            let mut h = crc32fast::Hasher::new();
            h.update(seq_text);
            h.update(b"\t");
            h.update(json);
            if h.finalize() == want {
                out.push((seq, json));
            }
        }
    }
    out
}

/// `data` with the checksum at its end (`,"checksum":"sha256:<64 hex>"}`) replaced by the right one for
/// the bytes before it; `None` when it does not end in one.
fn resign(data: &[u8]) -> Option<Vec<u8>> {
    const KEY: &[u8] = b"\"checksum\":\"sha256:";
    let tail = KEY.len() + 64 + 2;
    if data.len() < tail + 1 {
        return None;
    }
    let at = data.len() - tail;
    if !data[at..].starts_with(KEY) || !data.ends_with(b"\"}") {
        return None;
    }
    let body = &data[..at];
    let body = body.strip_suffix(b",").unwrap_or(body);
    let hex: String = Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut out = data[..at + KEY.len()].to_vec();
    out.extend_from_slice(hex.as_bytes());
    out.extend_from_slice(b"\"}");
    Some(out)
}
