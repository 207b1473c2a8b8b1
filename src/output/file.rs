//! The file output: alert JSON lines appended to a file, reopened on SIGHUP so logrotate can move it.

use super::Output;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

pub struct FileOutput {
    path: PathBuf,
    out: BufWriter<File>,
}

fn open_append(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    OpenOptions::new().create(true).append(true).open(path)
}

impl FileOutput {
    pub fn open(path: &Path) -> io::Result<FileOutput> {
        let f = open_append(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(FileOutput {
            path: path.to_path_buf(),
            out: BufWriter::new(f),
        })
    }
}

impl Output for FileOutput {
    fn name(&self) -> String {
        format!("file {}", self.path.display())
    }
    fn write_alert(&mut self, json: &str) -> io::Result<()> {
        self.out.write_all(json.as_bytes())?;
        self.out.write_all(b"\n")
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()
    }
    fn reopen(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.out = BufWriter::new(open_append(&self.path)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_and_reopens_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.json");
        let mut o = FileOutput::open(&path).unwrap();
        o.write_alert("{\"a\":1}").unwrap();
        o.flush().unwrap();
        std::fs::rename(&path, dir.path().join("alerts.json.1")).unwrap();
        o.reopen().unwrap();
        o.write_alert("{\"a\":2}").unwrap();
        o.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":2}\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("alerts.json.1")).unwrap(),
            "{\"a\":1}\n"
        );
    }
}
