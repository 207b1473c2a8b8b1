//! The file output: alert JSON lines appended to a file, reopened (after the next SIGHUP) so logrotate can move
//! it, with an fsync policy: after every alert, after every batch (default), or never.

use super::{Deliver, DeliverError, DeliverFuture, ReopenGeneration, Spooled};
use crate::config::FsyncPolicy;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
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
}

fn open_append(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
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
            })),
            reopen,
        })
    }
}

impl Inner {
    fn write_batch(&mut self, batch: &[Arc<str>], generation: u64) -> io::Result<()> {
        if generation != self.generation {
            self.file = open_append(&self.path)?;
            self.generation = generation;
            tracing::info!(file = %self.path.display(), "alert file reopened");
        }
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
}
