//! The file output: alert JSON lines appended to a file, reopened (after the next SIGHUP) so logrotate can move
//! it, with an fsync policy: after every alert, after every batch (default), or never.
//!
//! Every line in the file is one whole alert, whatever the disk does. A batch that fails part way (a full file
//! system, an I/O error, a failed fsync) is rolled back: the file is cut back to its length before the batch,
//! so the retry of the same batch writes exactly the alerts that are not in the file, once each. If even the
//! rollback fails, nothing more is written to the file until it succeeds. A file that ends with a partial line
//! when it is opened (a crash mid-write) is cut back to its last newline, with a warning.

use super::{Deliver, DeliverError, DeliverFuture, ReopenGeneration};
use crate::output::config::FsyncPolicy;
use crate::spool::Spooled;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

pub struct FileOutput {
    name: String,
    inner: Arc<Mutex<Inner>>,
    reopen: ReopenGeneration,
}

struct Inner {
    path: PathBuf,
    file: File,
    fsync: FsyncPolicy,
    generation: u64,
    /// A failed batch whose rollback failed too: the file must be cut back to this length before anything
    /// else is written to it.
    rollback_to: Option<u64>,
}

/// How far back a partial last line is looked for, per read.
const TAIL_CHUNK: u64 = 64 * 1024;

fn with_path(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn open_append(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    let file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(|e| with_path(path, e))?;
    cut_partial_line(&file, path).map_err(|e| with_path(path, e))?;
    Ok(file)
}

/// Cuts a partial last line (a crash in the middle of a write) back to the last newline.
fn cut_partial_line(file: &File, path: &Path) -> io::Result<()> {
    let len = file.metadata()?.len();
    let mut end = len;
    let mut buf = vec![0u8; TAIL_CHUNK as usize];
    let keep = loop {
        if end == 0 {
            break 0;
        }
        let start = end.saturating_sub(TAIL_CHUNK);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = memchr::memrchr(b'\n', chunk) {
            break start + i as u64 + 1;
        }
        end = start;
    };
    if keep < len {
        file.set_len(keep)?;
        tracing::warn!(
            file = %path.display(),
            removed_bytes = len - keep,
            "alert file ended with a partial line (an interrupted write): cut back to the last complete line"
        );
    }
    Ok(())
}

impl FileOutput {
    pub fn open(
        name: String,
        path: &Path,
        fsync: FsyncPolicy,
        reopen: ReopenGeneration,
    ) -> io::Result<FileOutput> {
        let file = open_append(path)?;
        Ok(FileOutput {
            name,
            inner: Arc::new(Mutex::new(Inner {
                path: path.to_path_buf(),
                file,
                fsync,
                generation: reopen.load(Ordering::Relaxed),
                rollback_to: None,
            })),
            reopen,
        })
    }
}

impl Inner {
    /// Writes the whole batch or, on failure, nothing of it.
    fn write_batch(&mut self, batch: &[Arc<str>], generation: u64) -> io::Result<()> {
        if let Some(len) = self.rollback_to {
            // The previous failure left part of a batch in the (possibly rotated) file we hold.
            self.file
                .set_len(len)
                .map_err(|e| with_path(&self.path, e))?;
            self.rollback_to = None;
            tracing::info!(file = %self.path.display(), length = len, "alert file rolled back to its last complete alert");
        }
        if generation != self.generation {
            self.file = open_append(&self.path)?;
            self.generation = generation;
            tracing::info!(file = %self.path.display(), "alert file reopened");
        }
        let before = self
            .file
            .metadata()
            .map_err(|e| with_path(&self.path, e))?
            .len();
        let Err(e) = self.append(batch) else {
            return Ok(());
        };
        if let Err(te) = self.file.set_len(before) {
            tracing::warn!(
                file = %self.path.display(),
                length = before,
                "cannot roll back a failed write yet, will retry before the next one: {te}"
            );
            self.rollback_to = Some(before);
        }
        Err(with_path(&self.path, e))
    }

    fn append(&mut self, batch: &[Arc<str>]) -> io::Result<()> {
        match self.fsync {
            FsyncPolicy::Always => {
                for json in batch {
                    let mut line = Vec::with_capacity(json.len() + 1);
                    line.extend_from_slice(json.as_bytes());
                    line.push(b'\n');
                    self.file.write_all(&line)?;
                    self.file.sync_data()?;
                }
            }
            FsyncPolicy::Batch | FsyncPolicy::Never => {
                let mut buf = Vec::new();
                for json in batch {
                    buf.extend_from_slice(json.as_bytes());
                    buf.push(b'\n');
                }
                self.file.write_all(&buf)?;
                if self.fsync == FsyncPolicy::Batch {
                    self.file.sync_data()?;
                }
            }
        }
        Ok(())
    }
}

impl Deliver for FileOutput {
    fn name(&self) -> &str {
        &self.name
    }
    fn deliver<'a>(&'a mut self, batch: &'a [Spooled]) -> DeliverFuture<'a> {
        let lines: Vec<Arc<str>> = batch.iter().map(|s| s.json.clone()).collect();
        let inner = self.inner.clone();
        let generation = self.reopen.load(Ordering::Relaxed);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut inner = inner.lock().unwrap_or_else(|p| p.into_inner());
                inner.write_batch(&lines, generation)
            })
            .await
            .map_err(|e| DeliverError::Transient(format!("writer task: {e}")))?
            .map_err(|e| DeliverError::Transient(e.to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    fn spooled(seq: u64, json: &str) -> Spooled {
        Spooled {
            seq,
            event_id: format!("id{seq}"),
            timestamp: "2024-01-01T00:00:00.000000Z".to_string(),
            severity: 1,
            json: Arc::from(json),
        }
    }

    #[tokio::test]
    async fn appends_and_reopens_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.json");
        let gen: ReopenGeneration = Arc::new(AtomicU64::new(0));
        for fsync in [FsyncPolicy::Always, FsyncPolicy::Batch, FsyncPolicy::Never] {
            let _ = std::fs::remove_file(&path);
            let mut o = FileOutput::open("f".into(), &path, fsync, gen.clone()).unwrap();
            o.deliver(&[spooled(0, "{\"a\":1}")]).await.unwrap();
            std::fs::rename(&path, dir.path().join("alerts.json.1")).unwrap();
            gen.fetch_add(1, Ordering::Relaxed);
            o.deliver(&[spooled(1, "{\"a\":2}"), spooled(2, "{\"a\":3}")])
                .await
                .unwrap();
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                "{\"a\":2}\n{\"a\":3}\n"
            );
            assert_eq!(
                std::fs::read_to_string(dir.path().join("alerts.json.1")).unwrap(),
                "{\"a\":1}\n"
            );
        }
    }

    #[tokio::test]
    async fn partial_last_line_is_cut_back_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.json");
        let gen: ReopenGeneration = Arc::new(AtomicU64::new(0));
        let long = "x".repeat(3 * TAIL_CHUNK as usize);
        for (before, after) in [
            ("{\"a\":1}\n{\"a\":2}\n{\"a\":3", "{\"a\":1}\n{\"a\":2}\n"),
            ("{\"a\":1", ""),
            ("{\"a\":1}\n", "{\"a\":1}\n"),
            ("", ""),
            (&format!("{{\"a\":1}}\n{long}"), "{\"a\":1}\n"),
        ] {
            std::fs::write(&path, before).unwrap();
            let mut o =
                FileOutput::open("f".into(), &path, FsyncPolicy::Batch, gen.clone()).unwrap();
            assert_eq!(std::fs::read_to_string(&path).unwrap(), after);
            o.deliver(&[spooled(9, "{\"b\":9}")]).await.unwrap();
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                format!("{after}{{\"b\":9}}\n")
            );
        }
    }
}
