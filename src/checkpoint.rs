//! The checkpoint store: one JSON document in the state directory holding everything a restart needs
//! (file positions with their parser headers, the window and alert state), written atomically.
//!
//! Write: serialize to `checkpoint.json.tmp`, fsync it, rename over `checkpoint.json`, fsync the directory.
//! A crash at any point leaves either the previous good checkpoint or the new one, never a torn file
//! (tailing scenario 19). A checkpoint that fails to parse is reported and set aside as
//! `checkpoint.json.bad`, and the daemon starts as if there were none.

use serde::{de::DeserializeOwned, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "checkpoint.json";
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
        use std::os::fd::AsRawFd;
        // SAFETY: flock(2) on a descriptor we own and keep open; it touches no memory of ours.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r != 0 {
            let e = io::Error::last_os_error();
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
        Ok(f)
    }

    /// Reads the checkpoint. `Ok(None)` when there is none (first start); an unreadable or corrupt one is
    /// moved aside and reported as `Err` with the reason, so the caller can log it and start fresh.
    pub fn load<T: DeserializeOwned>(&self) -> Result<Option<T>, String> {
        let path = self.path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        match serde_json::from_slice(&bytes) {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                let bad = self.dir.join(format!("{FILE_NAME}.bad"));
                let _ = fs::rename(&path, &bad);
                Err(format!(
                    "{}: not a valid checkpoint ({e}); moved to {} and starting without it",
                    path.display(),
                    bad.display()
                ))
            }
        }
    }

    /// Writes the checkpoint atomically (temp file, fsync, rename, fsync of the directory); returns its size
    /// in bytes.
    pub fn save<T: Serialize>(&self, value: &T) -> io::Result<u64> {
        let tmp = self.dir.join(format!("{FILE_NAME}.tmp"));
        let size;
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            let mut w = io::BufWriter::new(&mut f);
            serde_json::to_writer(&mut w, value).map_err(io::Error::other)?;
            w.flush()?;
            drop(w);
            f.sync_all()?;
            size = f.metadata()?.len();
        }
        fs::rename(&tmp, self.path())?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_and_corrupt_checkpoint_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path());
        assert_eq!(store.load::<Vec<u32>>(), Ok(None));
        store.save(&vec![1u32, 2, 3]).unwrap();
        assert_eq!(store.load::<Vec<u32>>(), Ok(Some(vec![1, 2, 3])));
        fs::write(store.path(), b"{\"torn").unwrap();
        assert!(store.load::<Vec<u32>>().is_err());
        assert!(dir.path().join("checkpoint.json.bad").exists());
        assert_eq!(store.load::<Vec<u32>>(), Ok(None));
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
        store.save(&vec![7u32]).unwrap();
        // A crash mid-write leaves only a partial temp file behind.
        fs::write(dir.path().join("checkpoint.json.tmp"), b"[8, 9").unwrap();
        assert_eq!(store.load::<Vec<u32>>(), Ok(Some(vec![7])));
    }
}
