//! The checkpoint store: one JSON document in the state directory holding everything a restart needs
//! (file positions with their parser headers, the window and alert state), written atomically. The window's
//! groups (and the context's prevalence maps) are not in it but in the binary group store it names
//! ([`groups`]), appended to incrementally; this document's atomic rename is what commits both together.
//! Checkpoints of earlier builds hold the groups inline, and are still read (once: the next one is binary).
//!
//! Write: serialize to `checkpoint.json.tmp`, fsync it, rename over `checkpoint.json`, fsync the directory.
//! A crash at any point leaves either the previous good checkpoint or the new one, never a torn file
//! (tailing scenario 19); the temp file a crash leaves behind is removed when the next daemon takes the
//! directory, and a failed write removes its own.
//!
//! The document ends with `"checksum":"sha256:<hex>"`, the SHA-256 of every byte before it (without the
//! comma), so a flipped byte that still parses as JSON (a digit in an offset) is caught. Reading: the
//! `version` first, on its own, so a checkpoint of another build is named as such; then the checksum; then the
//! state. A checkpoint without a checksum (written before it existed) is accepted with a warning. A damaged
//! checkpoint or one of another version is set aside as `checkpoint.json.bad.<unix-time>` (the last
//! [`KEEP_BAD`] are kept) and the daemon starts without it, loudly. A checkpoint that cannot be read at all
//! (permission denied, an I/O error) is an error, not absence: the daemon refuses to start rather than
//! begin again and overwrite it.

pub mod config;
pub mod groups;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "checkpoint.json";
/// How many set-aside checkpoints (`checkpoint.json.bad.*`) are kept; older ones are removed.
pub const KEEP_BAD: usize = 5;
/// The key of the checksum, the last one of the document.
const CHECKSUM_KEY: &[u8] = b"\"checksum\":\"sha256:";
/// `"checksum":"sha256:` + 64 hex digits + `"}`.
const CHECKSUM_TAIL: usize = CHECKSUM_KEY.len() + 64 + 2;

/// Why a checkpoint was not restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The file is there but cannot be read (permission, I/O): not absence. Starting without it would read
    /// every log again and overwrite it; the caller should refuse to start.
    #[error("{0}")]
    Unreadable(String),
    /// Damaged or of another version: set aside (the message says where); start without it.
    #[error("{0}")]
    SetAside(String),
}

/// Only the version, read before anything else.
#[derive(Deserialize)]
struct VersionOnly {
    version: Option<u64>,
}

/// Writes to `inner` and hashes what it writes, holding back the last byte (the document's closing `}`)
/// so the checksum can be put before it.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    held: Option<u8>,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    fn emit(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all(bytes)?;
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Writes the checksum and the closing brace.
    fn finish(mut self) -> io::Result<W> {
        if self.held != Some(b'}') {
            return Err(io::Error::other("a checkpoint must be a JSON object"));
        }
        if self.written > 1 {
            // Not the hashed part: the reader drops the comma before the key.
            self.inner.write_all(b",")?;
        }
        let hex: String = self
            .hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.inner.write_all(CHECKSUM_KEY)?;
        self.inner.write_all(hex.as_bytes())?;
        self.inner.write_all(b"\"}")?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some((&last, head)) = buf.split_last() else {
            return Ok(0);
        };
        if let Some(b) = self.held.take() {
            self.emit(&[b])?;
        }
        self.emit(head)?;
        self.held = Some(last);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Whether the end of `bytes` holds what is left of a damaged checksum (one flipped byte cannot erase both
/// the key and the `sha256:` tag): such a file is damaged, not one written before checksums.
fn has_checksum_remains(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(CHECKSUM_TAIL + 1)..];
    memchr::memmem::find(tail, b"\"checksum\"").is_some()
        || memchr::memmem::find(tail, b"sha256:").is_some()
}

/// What the checksum at the end of `bytes` says: `None` without one, else whether it matches.
fn checksum_matches(bytes: &[u8]) -> Option<bool> {
    if bytes.len() < CHECKSUM_TAIL + 1 {
        return None;
    }
    let tail_at = bytes.len() - CHECKSUM_TAIL;
    let tail = &bytes[tail_at..];
    if !tail.starts_with(CHECKSUM_KEY) || !tail.ends_with(b"\"}") {
        return None;
    }
    let hex = &tail[CHECKSUM_KEY.len()..CHECKSUM_KEY.len() + 64];
    let body = &bytes[..tail_at];
    let body = body.strip_suffix(b",").unwrap_or(body);
    let want: String = Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Some(hex == want.as_bytes())
}
/// The file locked by the daemon that owns the state directory.
pub const LOCK_NAME: &str = "longconn.lock";

#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
}

impl CheckpointStore {
    pub fn new(dir: &Path) -> CheckpointStore {
        CheckpointStore {
            dir: dir.to_path_buf(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Creates the state directory if needed.
    pub fn prepare(&self) -> io::Result<()> {
        fs::create_dir_all(&self.dir)
    }

    /// Takes the state directory for this process: an exclusive lock on `longconn.lock` in it, held until
    /// the returned file is dropped (or the process ends, however it ends). A second daemon on the same
    /// directory would interleave checkpoints and spool segments with ours; it is refused, with the pid
    /// of the one that holds the lock.
    pub fn lock(&self) -> Result<File, String> {
        let path = self.dir.join(LOCK_NAME);
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        use rustix::fs::{flock, FlockOperation};
        if let Err(e) = flock(&f, FlockOperation::NonBlockingLockExclusive) {
            let e = io::Error::from(e);
            if e.kind() != io::ErrorKind::WouldBlock {
                return Err(format!("{}: {e}", path.display()));
            }
            let holder = fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            return Err(format!(
                "state directory {} is in use by another longconn{}: one daemon per state directory \
                 (give this one its own [state] dir)",
                self.dir.display(),
                if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {holder})")
                }
            ));
        }
        // The holder's pid, for the message above (the lock, not this text, is what counts).
        f.set_len(0)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        writeln!(f, "{}", std::process::id()).map_err(|e| format!("{}: {e}", path.display()))?;
        // Ours now: what a previous holder left half written goes.
        self.remove_interrupted_save();
        Ok(f)
    }

    /// The temp file of a save in progress.
    fn tmp_path(&self) -> PathBuf {
        self.dir.join(format!("{FILE_NAME}.tmp"))
    }

    /// Removes the temp file an interrupted save left behind (a crash or SIGKILL while writing). Only the
    /// holder of the lock may call it: another daemon's save in progress is not ours to remove.
    fn remove_interrupted_save(&self) {
        let tmp = self.tmp_path();
        match fs::remove_file(&tmp) {
            Ok(()) => tracing::warn!(
                file = %tmp.display(),
                "removed checkpoint.json.tmp left by an interrupted checkpoint write; the previous checkpoint stands"
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %tmp.display(), "cannot remove the temp file of an interrupted checkpoint write: {e}")
            }
        }
    }

    /// Reads the checkpoint saved as `version`. `Ok(None)` when there is none (first start). A damaged one,
    /// or one of another version, is set aside ([`LoadError::SetAside`], start without it); one that cannot
    /// be read is [`LoadError::Unreadable`].
    pub fn load<T: DeserializeOwned>(&self, version: u32) -> Result<Option<T>, LoadError> {
        self.load_then(version, Ok)
    }

    /// [`CheckpointStore::load`], then `then` on what was read (the daemon reads the group store it names):
    /// its [`LoadError::SetAside`] sets the checkpoint aside as a damaged one would be, with that reason;
    /// its [`LoadError::Unreadable`] is passed on.
    pub fn load_then<T: DeserializeOwned, U>(
        &self,
        version: u32,
        then: impl FnOnce(T) -> Result<U, LoadError>,
    ) -> Result<Option<U>, LoadError> {
        let path = self.path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(LoadError::Unreadable(format!(
                    "{}: cannot read the checkpoint: {e}",
                    path.display()
                )))
            }
        };
        let problem = match self.check(&bytes, version) {
            Ok(()) => match serde_json::from_slice(&bytes) {
                Ok(v) => match then(v) {
                    Ok(u) => return Ok(Some(u)),
                    Err(LoadError::SetAside(problem)) => problem,
                    Err(e @ LoadError::Unreadable(_)) => return Err(e),
                },
                Err(e) => format!("not a valid checkpoint ({e})"),
            },
            Err(problem) => problem,
        };
        let aside = match self.set_aside() {
            Ok(bad) => format!("moved to {}", bad.display()),
            Err(e) => format!("could not be moved aside ({e}), it will be overwritten"),
        };
        Err(LoadError::SetAside(format!(
            "{}: {problem}; {aside}, starting without it",
            path.display()
        )))
    }

    /// The version, then the checksum.
    fn check(&self, bytes: &[u8], version: u32) -> Result<(), String> {
        let found = match serde_json::from_slice::<VersionOnly>(bytes) {
            Ok(v) => v.version,
            Err(e) => return Err(format!("not a valid checkpoint ({e})")),
        };
        match found {
            Some(v) if v == u64::from(version) => {}
            Some(v) => {
                return Err(format!(
                    "checkpoint version {v} is not supported (this build reads {version})"
                ))
            }
            None => return Err("not a valid checkpoint (it has no version)".to_string()),
        }
        match checksum_matches(bytes) {
            Some(true) => Ok(()),
            Some(false) => Err("damaged checkpoint: its checksum does not match".to_string()),
            None if !has_checksum_remains(bytes) => {
                tracing::warn!(file = %self.path().display(), "checkpoint has no checksum (written by an older longconn): accepted");
                Ok(())
            }
            None => Err("damaged checkpoint: its checksum is missing or damaged".to_string()),
        }
    }

    /// Renames the checkpoint to `checkpoint.json.bad.<unix-time>` (`.N` added after the first of a second)
    /// and removes all but the last [`KEEP_BAD`] of them.
    fn set_aside(&self) -> io::Result<PathBuf> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let prefix = format!("{FILE_NAME}.bad.");
        let mut kept: Vec<((u64, u64), PathBuf)> = fs::read_dir(&self.dir)?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let rest = name.strip_prefix(&prefix)?;
                let (t, n) = rest.split_once('.').unwrap_or((rest, "0"));
                Some(((t.parse().ok()?, n.parse().ok()?), e.path()))
            })
            .collect();
        kept.sort();
        // After every name taken, so the order of the names is the order they were set aside in.
        let key = match kept.last() {
            Some(&((t, n), _)) if t >= now => (t, n + 1),
            _ => (now, 0),
        };
        let bad = match key {
            (t, 0) => self.dir.join(format!("{prefix}{t}")),
            (t, n) => self.dir.join(format!("{prefix}{t}.{n}")),
        };
        fs::rename(self.path(), &bad)?;
        kept.push((key, bad.clone()));
        let excess = kept.len().saturating_sub(KEEP_BAD);
        for (_, old) in kept.into_iter().take(excess) {
            if let Err(e) = fs::remove_file(&old) {
                tracing::warn!(file = %old.display(), "cannot remove an old set-aside checkpoint: {e}");
            }
        }
        Ok(bad)
    }

    /// Writes the checkpoint atomically (temp file, fsync, rename, fsync of the directory), with its
    /// checksum; returns its size in bytes. On failure the temp file is removed and the previous checkpoint
    /// stands. `value` must serialize to a JSON object.
    pub fn save<T: Serialize>(&self, value: &T) -> io::Result<u64> {
        let tmp = self.tmp_path();
        let result = self.write_tmp(&tmp, value).and_then(|size| {
            fs::rename(&tmp, self.path())?;
            Ok(size)
        });
        match result {
            Ok(size) => {
                if let Ok(d) = File::open(&self.dir) {
                    let _ = d.sync_all();
                }
                Ok(size)
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    fn write_tmp<T: Serialize>(&self, tmp: &Path, value: &T) -> io::Result<u64> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(tmp)?;
        let mut w = HashingWriter {
            inner: io::BufWriter::new(&mut f),
            hasher: Sha256::new(),
            held: None,
            written: 0,
        };
        serde_json::to_writer(&mut w, value).map_err(io::Error::from)?;
        let mut inner = w.finish()?;
        inner.flush()?;
        drop(inner);
        f.sync_all()?;
        Ok(f.metadata()?.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct State {
        version: u32,
        offsets: Vec<u64>,
        path: String,
    }

    fn state(offsets: Vec<u64>) -> State {
        State {
            version: 1,
            offsets,
            path: "/var/log/zeek/conn.log".into(),
        }
    }

    fn bad_names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("checkpoint.json.bad"))
            .collect();
        v.sort();
        v
    }

    fn set_aside_message(r: Result<Option<State>, LoadError>) -> String {
        match r {
            Err(LoadError::SetAside(m)) => m,
            other => panic!("not set aside: {other:?}"),
        }
    }

    #[test]
    fn save_load_and_corrupt_checkpoint_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path());
        assert_eq!(store.load::<State>(1), Ok(None));
        store.save(&state(vec![1, 2, 3])).unwrap();
        let text = fs::read_to_string(store.path()).unwrap();
        assert!(text.starts_with("{\"version\":1,"), "{text}");
        assert!(text.contains(",\"checksum\":\"sha256:"), "{text}");
        serde_json::from_str::<serde_json::Value>(&text).expect("still plain JSON");
        assert_eq!(store.load::<State>(1), Ok(Some(state(vec![1, 2, 3]))));
        fs::write(store.path(), b"{\"torn").unwrap();
        let msg = set_aside_message(store.load::<State>(1));
        assert!(msg.contains("not a valid checkpoint"), "{msg}");
        assert_eq!(bad_names(dir.path()).len(), 1);
        assert_eq!(store.load::<State>(1), Ok(None));
    }

    #[test]
    fn any_byte_changed_is_caught_by_the_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path());
        store.save(&state(vec![12345, 678])).unwrap();
        let good = fs::read(store.path()).unwrap();
        for at in 0..good.len() {
            for flip in [0x01u8, 0x04, 0x80] {
                let mut bytes = good.clone();
                bytes[at] ^= flip;
                fs::write(store.path(), &bytes).unwrap();
                match store.load::<State>(1) {
                    Err(LoadError::SetAside(_)) => {}
                    // The flip hit only the checksum's own framing in a way that still checks out: the
                    // state read must be the saved one.
                    Ok(Some(s)) => assert_eq!(s, state(vec![12345, 678]), "byte {at} ^ {flip:#x}"),
                    other => panic!("byte {at} ^ {flip:#x}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn unknown_version_is_named_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path());
        fs::write(store.path(), b"{\"version\":7,\"elsewhere\":[]}").unwrap();
        let msg = set_aside_message(store.load::<State>(1));
        assert!(
            msg.contains("checkpoint version 7 is not supported (this build reads 1)"),
            "{msg}"
        );
        assert!(!msg.contains("missing field"), "{msg}");
        assert_eq!(bad_names(dir.path()).len(), 1);
    }

    #[test]
    fn checkpoint_without_checksum_from_an_older_build_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path());
        fs::write(store.path(), serde_json::to_vec(&state(vec![4])).unwrap()).unwrap();
        assert_eq!(store.load::<State>(1), Ok(Some(state(vec![4]))));
    }

    #[test]
    fn the_last_few_bad_checkpoints_are_kept_under_distinct_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path());
        for i in 0..(KEEP_BAD + 3) {
            fs::write(store.path(), format!("{{\"torn {i}")).unwrap();
            set_aside_message(store.load::<State>(1));
        }
        let names = bad_names(dir.path());
        assert_eq!(names.len(), KEEP_BAD, "{names:?}");
        let mut kept: Vec<String> = names
            .iter()
            .map(|n| fs::read_to_string(dir.path().join(n)).unwrap())
            .collect();
        kept.sort();
        let want: Vec<String> = (3..KEEP_BAD + 3).map(|i| format!("{{\"torn {i}")).collect();
        assert_eq!(kept, want, "the newest are kept");
    }

    #[test]
    fn unreadable_checkpoint_is_an_error_not_absence() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path());
        // A directory where the file should be: read fails with something other than "not found".
        fs::create_dir(store.path()).unwrap();
        assert!(matches!(
            store.load::<State>(1),
            Err(LoadError::Unreadable(_))
        ));
        assert!(store.path().exists(), "left where it is");
    }

    #[test]
    fn failed_save_leaves_no_temp_file_and_the_previous_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path());
        store.save(&state(vec![1])).unwrap();
        // Not an object: refused after the temp file was started.
        assert!(store.save(&vec![1u32, 2]).is_err());
        assert!(!dir.path().join("checkpoint.json.tmp").exists());
        assert_eq!(store.load::<State>(1), Ok(Some(state(vec![1]))));
    }

    #[test]
    fn one_holder_per_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path());
        let held = store.lock().unwrap();
        let again = CheckpointStore::new(dir.path()).lock();
        let msg = again.expect_err("a second lock is refused");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(held);
        assert!(store.lock().is_ok(), "free again once the holder is gone");
    }

    #[test]
    fn scenario_19_crash_while_writing_keeps_previous() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path());
        store.save(&state(vec![7])).unwrap();
        // A crash mid-write leaves only a partial temp file behind.
        let tmp = dir.path().join("checkpoint.json.tmp");
        fs::write(&tmp, b"{\"version\":1,\"offs").unwrap();
        let _lock = store.lock().unwrap();
        assert!(!tmp.exists(), "removed by the next holder");
        assert_eq!(store.load::<State>(1), Ok(Some(state(vec![7]))));
    }
}
