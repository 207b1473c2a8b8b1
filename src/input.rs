//! Opening a log input for one-shot reading (`scan`, `replay`): a file or `-` for stdin, decompressed when
//! its first bytes are the gzip magic (zeekctl's `.log.gz` archives, also several concatenated members),
//! whatever its name says.

use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Where an input comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputPath {
    Stdin,
    File(PathBuf),
}

impl InputPath {
    /// The log kind from the file name, as for a `[[source]]` (stdin is a conn log).
    pub fn kind(&self) -> crate::config::SourceKind {
        match self {
            InputPath::File(p) => crate::config::SourceKind::from_path(p),
            InputPath::Stdin => crate::config::SourceKind::Conn,
        }
    }

    pub fn from_arg(arg: &Path) -> InputPath {
        if arg.as_os_str() == "-" {
            InputPath::Stdin
        } else {
            InputPath::File(arg.to_path_buf())
        }
    }
    /// The name used in messages.
    pub fn display(&self) -> String {
        match self {
            InputPath::Stdin => "<stdin>".to_string(),
            InputPath::File(p) => p.display().to_string(),
        }
    }
    /// The size in bytes on disk, when known (for progress).
    pub fn size(&self) -> Option<u64> {
        match self {
            InputPath::Stdin => None,
            InputPath::File(p) => std::fs::metadata(p).ok().map(|m| m.len()),
        }
    }
}

/// Counts the raw (compressed) bytes read, for progress reporting.
struct Counting<R> {
    inner: R,
    counter: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Opens an input, with gzip detected from its content. `raw_bytes` counts bytes read before decompression.
pub fn open(input: &InputPath, raw_bytes: Arc<AtomicU64>) -> io::Result<Box<dyn Read + Send>> {
    let raw: Box<dyn Read + Send> = match input {
        InputPath::Stdin => Box::new(io::stdin()),
        InputPath::File(p) => Box::new(File::open(p)?),
    };
    let mut buffered = BufReader::with_capacity(
        256 * 1024,
        Counting {
            inner: raw,
            counter: raw_bytes,
        },
    );
    let head = buffered.fill_buf()?;
    if head.starts_with(&GZIP_MAGIC) {
        Ok(Box::new(MultiGzDecoder::new(buffered)))
    } else {
        Ok(Box::new(buffered))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    #[test]
    fn concatenated_gzip_members_read_whole() {
        let mut all = Vec::new();
        for part in ["first\n", "second\n"] {
            let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(part.as_bytes()).unwrap();
            all.extend(enc.finish().unwrap());
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conn.log"); // no .gz: detection is by content
        std::fs::write(&path, &all).unwrap();
        let mut out = String::new();
        open(&InputPath::File(path), Arc::default())
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "first\nsecond\n");
    }
}
