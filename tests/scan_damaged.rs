//! `longconn scan` on damaged input (issue 10, item 9): gzip archives cut short or corrupted, binary files,
//! inputs that cannot be read. The yardstick for a cut gzip is `gzip -dc`: scan must read exactly the
//! complete lines it prints before its "unexpected end of file", count the cut-off partial line as
//! truncated, and name the compressed byte offset of the cut. Only parsed rows are records; an input that
//! failed is not counted as a file read, and no empty table is printed when nothing was read.
//!
//! Test names follow the parser edge cases of `../shared/ZEEK_NOTES.md` (7: truncated last line).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use longconn::input::{self, GzipError, InputPath};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_longconn")
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).expect("compress");
    enc.finish().expect("compress")
}

/// A real conn.log made longer than scan's 1 MiB read chunk: its header block once, then its data rows
/// `times` times over (the `#close` line dropped, as in a log still being written).
fn repeated_rows(name: &str, times: usize) -> Vec<u8> {
    let text = std::fs::read_to_string(data(name)).expect("read test data");
    let (head, rows): (Vec<&str>, Vec<&str>) = text.lines().partition(|l| l.starts_with('#'));
    let mut out = String::new();
    for h in head.iter().filter(|h| !h.starts_with("#close")) {
        out.push_str(h);
        out.push('\n');
    }
    for _ in 0..times {
        for r in &rows {
            out.push_str(r);
            out.push('\n');
        }
    }
    out.into_bytes()
}

/// What `gzip -dc` prints for `path` (its exit status is not looked at: a cut file makes it fail).
fn gzip_dc(path: &Path) -> Vec<u8> {
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(path)
        .stderr(Stdio::null())
        .output()
        .expect("run gzip -dc (gzip is needed for this test)");
    out.stdout
}

/// From decompressed bytes: the complete data lines (`gzip -dc | grep -vc '^#'` minus a cut-off last line)
/// and whether a cut-off partial data line follows them.
fn complete_and_partial(text: &[u8]) -> (u64, bool) {
    let mut complete = 0;
    let mut rest = text;
    while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
        if rest.first() != Some(&b'#') {
            complete += 1;
        }
        rest = &rest[nl + 1..];
    }
    (complete, !rest.is_empty() && rest[0] != b'#')
}

struct Scan {
    stdout: String,
    stderr: String,
    code: i32,
}

impl Scan {
    fn summary(&self) -> &str {
        self.stderr
            .lines()
            .rev()
            .find(|l| l.starts_with("longconn scan: ") && l.contains(" records read"))
            .unwrap_or_else(|| panic!("no summary line in {}", self.stderr))
    }

    /// The number before `what` in the summary line.
    fn count(&self, what: &str) -> u64 {
        let s = self.summary();
        let at = s
            .find(what)
            .unwrap_or_else(|| panic!("no {what:?} in {s:?}"));
        let digits: String = s[..at]
            .trim_end()
            .chars()
            .rev()
            .take_while(char::is_ascii_digit)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        digits
            .parse()
            .unwrap_or_else(|_| panic!("no number before {what:?} in {s:?}"))
    }

    fn records(&self) -> u64 {
        self.count(" records read")
    }

    /// Lines skipped as truncated (0 when the summary names none).
    fn truncated(&self) -> u64 {
        let s = self.summary();
        s.find("truncated: ").map_or(0, |at| {
            s[at + "truncated: ".len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .expect("truncated count")
        })
    }
}

fn scan(args: &[&str], files: &[&Path]) -> Scan {
    let out = Command::new(bin())
        .arg("scan")
        .args(args)
        .args(files)
        .output()
        .expect("run longconn scan");
    Scan {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code().unwrap_or(-1),
    }
}

/// `longconn replay` over `path` at the shipped config: (records seen, lines skipped as truncated).
fn replay_counts(path: &Path) -> (u64, u64) {
    let out = Command::new(bin())
        .arg("replay")
        .arg("--config")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/longconn.toml"))
        .arg(path)
        .output()
        .expect("run longconn replay");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let number_after = |key: &str| -> u64 {
        stderr.find(key).map_or(0, |at| {
            stderr[at + key.len()..]
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap_or_else(|_| panic!("no number after {key:?} in {stderr}"))
        })
    };
    (number_after("records seen"), number_after("truncated "))
}

/// Cut offsets across a compressed file of `len` bytes: in the header, early, middle, late, in the trailer.
fn cuts(len: usize) -> Vec<usize> {
    vec![
        5,
        len / 7,
        len / 3,
        len / 2,
        len * 2 / 3,
        len * 9 / 10,
        len - 8,
        len - 3,
    ]
}

/// What our reader delivers from `path`, `plain` gzipped and cut at `cut`, checked against `gzip -dc`:
/// it prints the same bytes, or a few less where its decoder stops on a last code it cannot finish (zlib
/// decodes every complete code: a few more bytes, still a prefix of the original data).
fn decoded_before_cut(plain: &[u8], path: &Path, cut: usize) -> Vec<u8> {
    let by_gzip = gzip_dc(path);
    let (ours, e) = read_to_error(path);
    assert!(
        plain.starts_with(&ours),
        "cut at {cut}: a prefix of the data"
    );
    assert!(
        ours.starts_with(&by_gzip) && ours.len() - by_gzip.len() <= MAX_MATCH,
        "cut at {cut}: what gzip -dc prints ({} bytes), or up to one deflate match more ({} bytes)",
        by_gzip.len(),
        ours.len()
    );
    assert_eq!(
        input::gzip_error(&e),
        Some(&GzipError::Cut { at: cut as u64 }),
        "cut at {cut}: {e}"
    );
    ours
}

/// The longest deflate match: at most this many bytes follow from one code gzip -dc did not finish.
const MAX_MATCH: usize = 258;

/// Every cut of a real conn.log's gzip gives exactly the complete lines `gzip -dc` prints, the partial
/// line counted as truncated, and an error that names the file and the offset of the cut.
fn check_cuts(name: &str, plain: &[u8]) {
    let full = gzip(plain);
    let tmp = tempfile::tempdir().expect("tempdir");
    // The whole file first: every data line is a record, none is skipped.
    let whole = tmp.path().join("whole.log.gz");
    std::fs::write(&whole, &full).expect("write");
    let (lines, partial) = complete_and_partial(&gzip_dc(&whole));
    assert!(!partial);
    let s = scan(&["--format", "tsv"], &[&whole]);
    assert_eq!(s.code, 0, "{name}: whole file: {}", s.stderr);
    assert_eq!(s.records(), lines, "{name}: whole file: {}", s.summary());
    for cut in cuts(full.len()) {
        let path = tmp.path().join(format!("cut{cut}.log.gz"));
        std::fs::write(&path, &full[..cut]).expect("write");
        let decoded = decoded_before_cut(plain, &path, cut);
        let (complete, partial) = complete_and_partial(&decoded);
        let s = scan(&["--format", "tsv"], &[&path]);
        let ctx = format!("{name} cut at {cut} of {}: {}", full.len(), s.stderr);
        // At these cuts the complete lines are those of `gzip -dc | grep -vc '^#'` (the bytes it may
        // not print are part of the last, partial line).
        let (by_gzip, _) = complete_and_partial(&gzip_dc(&path));
        assert_eq!(complete, by_gzip, "complete lines as gzip -dc: {ctx}");
        assert_eq!(s.code, 1, "{ctx}");
        assert_eq!(s.records(), complete, "records = complete lines: {ctx}");
        assert_eq!(s.truncated(), u64::from(partial), "cut-off line: {ctx}");
        assert_eq!(
            replay_counts(&path),
            (complete, u64::from(partial)),
            "replay reads and counts the same lines as scan: {ctx}"
        );
        let message = format!(
            "longconn scan: {}: gzip data cut off at compressed byte {cut} ",
            path.display()
        );
        assert!(s.stderr.contains(&message), "names file and offset: {ctx}");
        if complete == 0 {
            assert!(
                s.stdout.is_empty(),
                "no tables when nothing was read: {ctx}"
            );
        }
    }
}

#[test]
fn edge_7_truncated_gzip_tsv_yields_every_complete_line_before_the_cut() {
    let plain = std::fs::read(data("zat_bro2.conn.log")).expect("read test data");
    check_cuts("zat_bro2.conn.log", &plain);
}

#[test]
fn edge_7_truncated_gzip_longer_than_a_read_chunk() {
    // About 1.8 MB of rows: the cut falls past scan's first 1 MiB chunk.
    check_cuts(
        "zat_bro2.conn.log x40",
        &repeated_rows("zat_bro2.conn.log", 40),
    );
}

#[test]
fn edge_7_truncated_gzip_json_yields_every_complete_line_before_the_cut() {
    let plain = std::fs::read(data("otrf_apt29_day1_NASHUA.conn.ndjson")).expect("read test data");
    let plain = plain.repeat(5);
    check_cuts("otrf_apt29_day1_NASHUA.conn.ndjson x5", &plain);
}

/// Everything the reader delivers from a cut gzip, and the error it ends with.
fn read_to_error(path: &Path) -> (Vec<u8>, std::io::Error) {
    let mut r = input::open(&InputPath::File(path.to_path_buf()), Arc::default()).expect("open");
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => panic!("{}: ended without an error", path.display()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return (got, e),
        }
    }
}

#[test]
fn edge_7_cut_gzip_delivers_every_byte_before_the_cut() {
    let plain = repeated_rows("zat_bro2.conn.log", 8);
    let full = gzip(&plain);
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("conn.log.gz");
    let mut same = 0;
    let cuts: Vec<usize> = (2..full.len()).step_by(full.len() / 61).collect();
    for &cut in &cuts {
        std::fs::write(&path, &full[..cut]).expect("write");
        let ours = decoded_before_cut(&plain, &path, cut);
        same += usize::from(ours == gzip_dc(&path));
    }
    // Most cuts give byte for byte what gzip -dc prints.
    assert!(
        same * 2 > cuts.len(),
        "{same} of {} cuts as gzip -dc",
        cuts.len()
    );
}

#[test]
fn corrupt_gzip_delivers_at_least_what_gzip_dc_prints() {
    let plain = repeated_rows("zat_bro2.conn.log", 8);
    let full = gzip(&plain);
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("conn.log.gz");
    for at in [full.len() / 4, full.len() / 2, full.len() * 3 / 4] {
        let mut bad = full.clone();
        bad[at] ^= 0x5a;
        bad[at + 1] ^= 0xff;
        std::fs::write(&path, &bad).expect("write");
        let want = gzip_dc(&path);
        let (got, e) = read_to_error(&path);
        assert!(
            got.len() >= want.len() && got[..want.len()] == want[..],
            "flip at {at}: what gzip -dc prints is a prefix of what we read ({} vs {} bytes)",
            got.len(),
            want.len()
        );
        let offset = input::gzip_error(&e)
            .unwrap_or_else(|| panic!("flip at {at}: a gzip error: {e}"))
            .offset();
        assert!(
            offset as usize <= full.len(),
            "flip at {at}: offset {offset}"
        );
        let s = scan(&["--format", "tsv"], &[&path]);
        assert_eq!(s.code, 1, "flip at {at}: {}", s.stderr);
        assert!(
            s.stderr.contains(&format!("compressed byte {offset}")),
            "flip at {at}: the message names the offset: {}",
            s.stderr
        );
    }
}

#[test]
fn binary_file_lines_are_skipped_not_records() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Pseudo-random bytes (xorshift), and the start of a real ELF binary (this test's own longconn).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..256 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut elf = vec![0u8; 256 * 1024];
    let n = std::fs::File::open(bin())
        .and_then(|mut f| f.read(&mut elf))
        .expect("read the binary");
    elf.truncate(n);
    for (name, bytes) in [("noise.bin", noise), ("longconn.elf", elf)] {
        let path = tmp.path().join(name);
        std::fs::write(&path, &bytes).expect("write");
        let s = scan(&[], &[&path]);
        assert_eq!(s.code, 1, "{name}: {}", s.stderr);
        assert_eq!(s.records(), 0, "{name}: {}", s.summary());
        assert!(
            s.count(" skipped as malformed") > 0,
            "{name}: {}",
            s.summary()
        );
        assert!(s.stdout.is_empty(), "{name}: no empty tables: {}", s.stdout);
        assert!(
            s.summary().ends_with(", 0 files, 1 failed"),
            "{name}: {}",
            s.summary()
        );
    }
}

#[test]
fn every_input_failing_prints_no_tables() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("missing.conn.log");
    let cut = tmp.path().join("cut.conn.log.gz");
    let full = gzip(&std::fs::read(data("zat_bro2.conn.log")).expect("read"));
    std::fs::write(&cut, &full[..6]).expect("write");
    for format in ["table", "tsv", "json"] {
        let s = scan(&["--format", format], &[&missing, &cut]);
        assert_eq!(s.code, 1, "{}", s.stderr);
        assert!(s.stdout.is_empty(), "{format}: no tables: {}", s.stdout);
        assert!(
            s.stderr.contains(&format!("{}: ", missing.display())),
            "{}",
            s.stderr
        );
        assert_eq!(s.records(), 0);
        assert!(
            s.summary().ends_with(", 0 files, 2 failed"),
            "{}",
            s.summary()
        );
    }
}

#[test]
fn one_failing_input_one_good() {
    let good = data("zat_bro2.conn.log");
    let missing = Path::new("/nonexistent/conn.log");
    let alone = scan(&["--format", "tsv", "--top", "0"], &[&good]);
    assert_eq!(alone.code, 0);
    assert!(alone.summary().ends_with(", 1 file"), "{}", alone.summary());
    let s = scan(&["--format", "tsv", "--top", "0"], &[missing, &good]);
    assert_eq!(s.code, 1, "{}", s.stderr);
    assert_eq!(s.stdout, alone.stdout, "the good file's tables");
    assert_eq!(s.records(), alone.records());
    assert!(s.stderr.contains("/nonexistent/conn.log: "), "{}", s.stderr);
    assert!(
        s.summary().ends_with(", 1 file, 1 failed"),
        "{}",
        s.summary()
    );
}

#[test]
fn a_cut_file_read_in_part_counts_as_read_up_to_an_error() {
    let good = data("zat_bro2.conn.log");
    let tmp = tempfile::tempdir().expect("tempdir");
    let full = gzip(&std::fs::read(&good).expect("read"));
    let cut = tmp.path().join("cut.conn.log.gz");
    std::fs::write(&cut, &full[..full.len() / 2]).expect("write");
    let s = scan(&["--format", "tsv"], &[&good, &cut]);
    assert_eq!(s.code, 1, "{}", s.stderr);
    assert!(!s.stdout.is_empty());
    assert!(
        s.summary()
            .ends_with(", 2 files (1 read only up to an error)"),
        "{}",
        s.summary()
    );
}

#[test]
fn edge_7_line_cut_inside_its_last_column_is_truncated_not_a_record() {
    // The cut stops in `tunnel_parents`: "(emp" would parse as a value, but a cut line is never a record.
    let text = std::fs::read_to_string(data("zat_bro2.conn.log")).expect("read test data");
    let rows = text.lines().filter(|l| !l.starts_with('#')).count() as u64;
    let upto = text
        .rfind("(empty)\n#close")
        .expect("last row ends with (empty)")
        + "(emp".len();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&text.as_bytes()[..upto]).expect("compress");
    enc.flush()
        .expect("sync flush: every byte so far is decodable");
    let cut = enc.get_ref().clone();
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("conn.log.gz");
    std::fs::write(&path, &cut).expect("write");
    let s = scan(&["--format", "tsv"], &[&path]);
    assert_eq!(s.code, 1, "{}", s.stderr);
    assert_eq!(s.records(), rows - 1, "{}", s.summary());
    assert_eq!(s.truncated(), 1, "{}", s.summary());
    // The same bytes uncompressed, without a newline at the end: the last line is read as it parses.
    let plain = tmp.path().join("conn.log");
    std::fs::write(&plain, &text.as_bytes()[..upto]).expect("write");
    let s = scan(&["--format", "tsv"], &[&plain]);
    assert_eq!(s.code, 0, "{}", s.stderr);
    assert_eq!(s.records(), rows, "{}", s.summary());
}
