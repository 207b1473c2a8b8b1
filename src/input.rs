//! Opening a log input for one-shot reading (`scan`, `replay`): a file or `-` for stdin, decompressed when
//! its first bytes are the gzip magic (zeekctl's `.log.gz` archives, also several concatenated members),
//! whatever its name says.
//!
//! The gzip framing is read here, around flate2's raw [`Decompress`], rather than through its
//! `MultiGzDecoder`, because archives get damaged (a copy cut short by a full disk, a transfer that stopped)
//! and the analyst wants what can be read: every byte the decoder produced is delivered before the error
//! is returned (`MultiGzDecoder` drops the output of a read that ends in a corrupt block), and the error
//! names the compressed byte offset where the data stopped, as a [`GzipError`] inside the `io::Error`.

use flate2::{Crc, Decompress, FlushDecompress, Status};
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
    pub fn kind(&self) -> crate::zeek::SourceKind {
        match self {
            InputPath::File(p) => crate::zeek::SourceKind::from_path(p),
            InputPath::Stdin => crate::zeek::SourceKind::Conn,
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
        Ok(Box::new(GzipReader::new(buffered)))
    } else {
        Ok(Box::new(buffered))
    }
}

/// Why gzip data stopped before its end; `at` is the offset in the compressed input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GzipError {
    #[error(
        "gzip data cut off at compressed byte {at} (unexpected end of file): the lines before the cut were read"
    )]
    Cut { at: u64 },
    #[error("corrupt gzip data at compressed byte {at}: the lines before it were read")]
    Corrupt { at: u64 },
    #[error(
        "the gzip member ending at compressed byte {at} fails its CRC or length check: its lines were read \
         but may be damaged"
    )]
    Check { at: u64 },
    #[error("invalid gzip header at compressed byte {at} ({what}): the lines before it were read")]
    Header { at: u64, what: &'static str },
}

impl GzipError {
    /// The compressed byte offset where reading stopped.
    pub fn offset(&self) -> u64 {
        match self {
            GzipError::Cut { at }
            | GzipError::Corrupt { at }
            | GzipError::Check { at }
            | GzipError::Header { at, .. } => *at,
        }
    }
}

impl From<GzipError> for io::Error {
    fn from(e: GzipError) -> io::Error {
        let kind = match e {
            GzipError::Cut { .. } => io::ErrorKind::UnexpectedEof,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, e)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GzState {
    /// At the start of a member (the first, or one after a trailer with more input).
    Header,
    Body,
    Trailer,
    /// After a trailer: the end of the input, or another member.
    Between,
    /// The end, or an error was returned: nothing more is read.
    Done,
}

/// Decompresses gzip data (one or several members) from `inner`, counting the compressed bytes consumed.
struct GzipReader<R> {
    inner: R,
    /// Compressed bytes consumed from `inner`.
    pos: u64,
    state: GzState,
    inflate: Decompress,
    crc: Crc,
    /// An error met in a read that also produced bytes: those are returned first, this on the next read.
    pending: Option<GzipError>,
}

const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const FRESERVED: u8 = 0xe0;

impl<R: BufRead> GzipReader<R> {
    fn new(inner: R) -> GzipReader<R> {
        GzipReader {
            inner,
            pos: 0,
            state: GzState::Header,
            inflate: Decompress::new(false),
            crc: Crc::new(),
            pending: None,
        }
    }

    /// The buffered input (empty at its end), retried when interrupted.
    fn fill(&mut self) -> io::Result<&[u8]> {
        loop {
            match self.inner.fill_buf() {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.inner.consume(n);
        self.pos += n as u64;
    }

    /// Exactly `out.len()` bytes of the framing; the input ending first is a cut.
    fn framing(&mut self, out: &mut [u8]) -> io::Result<()> {
        let mut got = 0;
        while got < out.len() {
            let at = self.pos;
            let buf = self.fill()?;
            if buf.is_empty() {
                return Err(GzipError::Cut { at }.into());
            }
            let k = buf.len().min(out.len() - got);
            out[got..got + k].copy_from_slice(&buf[..k]);
            self.consume(k);
            got += k;
        }
        Ok(())
    }

    /// Skips a zero-terminated header field (file name, comment).
    fn skip_zero_terminated(&mut self) -> io::Result<()> {
        loop {
            let at = self.pos;
            let buf = self.fill()?;
            if buf.is_empty() {
                return Err(GzipError::Cut { at }.into());
            }
            match memchr::memchr(0, buf) {
                Some(i) => {
                    self.consume(i + 1);
                    return Ok(());
                }
                None => {
                    let n = buf.len();
                    self.consume(n);
                }
            }
        }
    }

    /// A member header (RFC 1952 section 2.3).
    fn header(&mut self) -> io::Result<()> {
        let at = self.pos;
        let mut fixed = [0u8; 10];
        self.framing(&mut fixed)?;
        let bad = |what| -> io::Error { GzipError::Header { at, what }.into() };
        if fixed[..2] != GZIP_MAGIC {
            return Err(bad("not the gzip magic"));
        }
        if fixed[2] != 8 {
            return Err(bad("not deflate"));
        }
        let flags = fixed[3];
        if flags & FRESERVED != 0 {
            return Err(bad("reserved flags set"));
        }
        if flags & FEXTRA != 0 {
            let mut len = [0u8; 2];
            self.framing(&mut len)?;
            let mut left = usize::from(u16::from_le_bytes(len));
            while left > 0 {
                let at = self.pos;
                let buf = self.fill()?;
                if buf.is_empty() {
                    return Err(GzipError::Cut { at }.into());
                }
                let k = buf.len().min(left);
                self.consume(k);
                left -= k;
            }
        }
        if flags & FNAME != 0 {
            self.skip_zero_terminated()?;
        }
        if flags & FCOMMENT != 0 {
            self.skip_zero_terminated()?;
        }
        if flags & FHCRC != 0 {
            self.framing(&mut [0u8; 2])?;
        }
        Ok(())
    }

    /// Decompressed bytes into `out`: `Ok(0)` when the member's deflate data ended.
    fn body(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            // Borrow the buffered input and the decoder apart (one is a field of the other's owner).
            let at = self.pos;
            let input = loop {
                match self.inner.fill_buf() {
                    Ok(b) => break b,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            };
            let eof = input.is_empty();
            let (in0, out0) = (self.inflate.total_in(), self.inflate.total_out());
            let ret = self.inflate.decompress(input, out, FlushDecompress::None);
            let used = (self.inflate.total_in() - in0) as usize;
            let n = (self.inflate.total_out() - out0) as usize;
            self.consume(used);
            self.crc.update(&out[..n]);
            match ret {
                Ok(Status::StreamEnd) => {
                    self.state = GzState::Trailer;
                    return Ok(n);
                }
                Ok(_) if n > 0 => return Ok(n),
                Ok(_) if eof => return Err(GzipError::Cut { at: self.pos }.into()),
                Ok(_) if used > 0 => {}
                // No progress with input and room for output: the decoder is stuck, call it corrupt.
                Ok(_) => return Err(GzipError::Corrupt { at }.into()),
                Err(_) => {
                    let e = GzipError::Corrupt { at: self.pos };
                    if n > 0 {
                        self.pending = Some(e);
                        return Ok(n);
                    }
                    return Err(e.into());
                }
            }
        }
    }

    /// The member trailer: CRC-32 and size of the data, both checked.
    fn trailer(&mut self) -> io::Result<()> {
        let mut t = [0u8; 8];
        self.framing(&mut t)?;
        let crc = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
        let size = u32::from_le_bytes([t[4], t[5], t[6], t[7]]);
        if crc != self.crc.sum() || size != self.crc.amount() {
            return Err(GzipError::Check { at: self.pos }.into());
        }
        self.crc.reset();
        self.inflate.reset(false);
        Ok(())
    }

    fn step(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = self.pending.take() {
            return Err(e.into());
        }
        loop {
            match self.state {
                GzState::Header => {
                    self.header()?;
                    self.state = GzState::Body;
                }
                GzState::Body => {
                    let n = self.body(buf)?;
                    if n > 0 {
                        return Ok(n);
                    }
                }
                GzState::Trailer => {
                    self.trailer()?;
                    self.state = GzState::Between;
                }
                GzState::Between => {
                    if self.fill()?.is_empty() {
                        self.state = GzState::Done;
                    } else {
                        self.state = GzState::Header;
                    }
                }
                GzState::Done => return Ok(0),
            }
        }
    }
}

impl<R: BufRead> Read for GzipReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.state == GzState::Done {
            return Ok(0);
        }
        let r = self.step(buf);
        if r.as_ref()
            .is_err_and(|e| e.kind() != io::ErrorKind::Interrupted)
        {
            self.state = GzState::Done;
        }
        r
    }
}

/// The [`GzipError`] inside an error returned by an input's reader, if that is what it is.
pub fn gzip_error(e: &io::Error) -> Option<&GzipError> {
    e.get_ref().and_then(|x| x.downcast_ref::<GzipError>())
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

    fn member(text: &str, builder: flate2::GzBuilder) -> Vec<u8> {
        let mut enc = builder.write(Vec::new(), flate2::Compression::default());
        enc.write_all(text.as_bytes()).unwrap();
        enc.finish().unwrap()
    }

    /// Everything read from `bytes`, and the error it ended with.
    fn read_all(bytes: &[u8]) -> (Vec<u8>, Option<GzipError>) {
        let mut r = GzipReader::new(bytes);
        let mut out = Vec::new();
        let mut buf = [0u8; 7]; // small reads: members and blocks end in the middle of one
        loop {
            match r.read(&mut buf) {
                Ok(0) => return (out, None),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (out, gzip_error(&e).cloned()),
            }
        }
    }

    #[test]
    fn gzip_header_fields_are_skipped() {
        let b = flate2::GzBuilder::new()
            .filename("conn.log")
            .comment("zeekctl archive")
            .extra(vec![1, 2, 3, 4])
            .mtime(1_700_000_000);
        let mut all = member("a\tb\n", b);
        // FHCRC (rarely written; GzBuilder does not): set the flag and insert two bytes after the fields.
        let mut with_hcrc = member("c\n", flate2::GzBuilder::new());
        with_hcrc[3] |= FHCRC;
        with_hcrc.splice(10..10, [0xab, 0xcd]);
        all.extend(with_hcrc);
        assert_eq!(read_all(&all), (b"a\tb\nc\n".to_vec(), None));
    }

    #[test]
    fn gzip_damage_is_named_with_its_offset() {
        let one = member("first line\nsecond line\n", flate2::GzBuilder::new());
        let len = one.len() as u64;
        // A wrong CRC in the trailer: the data is delivered, then the check fails.
        let mut bad_crc = one.clone();
        let at = bad_crc.len() - 8;
        bad_crc[at] ^= 1;
        assert_eq!(
            read_all(&bad_crc),
            (
                b"first line\nsecond line\n".to_vec(),
                Some(GzipError::Check { at: len })
            )
        );
        // Bytes after a member that are not another member.
        let mut trailing = one.clone();
        trailing.extend_from_slice(b"garbage after the data");
        assert_eq!(
            read_all(&trailing).1,
            Some(GzipError::Header {
                at: len,
                what: "not the gzip magic"
            })
        );
        // Cut in the second member's header: the first member is whole.
        let mut two = one.clone();
        two.extend_from_slice(&one[..4]);
        assert_eq!(
            read_all(&two),
            (
                b"first line\nsecond line\n".to_vec(),
                Some(GzipError::Cut { at: len + 4 })
            )
        );
        // Not deflate.
        let mut method = one.clone();
        method[2] = 7;
        assert_eq!(
            read_all(&method),
            (
                Vec::new(),
                Some(GzipError::Header {
                    at: 0,
                    what: "not deflate"
                })
            )
        );
    }
}
