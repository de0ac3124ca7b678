//! Opening data files that may or may not be gzip-compressed, and turning read failures into
//! errors that name the file.
//!
//! Compression is recognised by the gzip magic bytes rather than the file name, so a `.gz` file
//! that was decompressed in place (or a plain file that happens to be named `.gz`) still loads.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;

use crate::error::{NasError, Result};

/// First two bytes of every gzip member.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Large buffers: the payloads are tens of megabytes and small reads dominate otherwise.
const BUFFER_BYTES: usize = 1 << 18;

/// A byte stream from a file, transparently gunzipped when the file starts with the gzip magic.
pub(crate) struct Source {
    path: PathBuf,
    gzip: bool,
    inner: Inner,
}

enum Inner {
    Plain(BufReader<File>),
    // The outer buffer keeps the 1-byte label reads of CIFAR records from each calling inflate.
    Gzip(Box<BufReader<MultiGzDecoder<BufReader<File>>>>),
}

impl Source {
    /// Opens `path`, sniffing the first bytes for gzip.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| NasError::io(path, e))?;
        let mut reader = BufReader::with_capacity(BUFFER_BYTES, file);
        let head = reader.fill_buf().map_err(|e| NasError::io(path, e))?;
        let gzip = head.starts_with(&GZIP_MAGIC);
        let inner = if gzip {
            let decoder = MultiGzDecoder::new(reader);
            Inner::Gzip(Box::new(BufReader::with_capacity(BUFFER_BYTES, decoder)))
        } else {
            Inner::Plain(reader)
        };
        Ok(Source {
            path: path.to_path_buf(),
            gzip,
            inner,
        })
    }

    /// The file this stream reads.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the file on disk when it is not compressed, so callers can check a record layout
    /// before reading anything. `None` for gzip, whose decoded size is only known at the end.
    pub(crate) fn plain_len(&self) -> Option<u64> {
        match &self.inner {
            Inner::Plain(r) => r.get_ref().metadata().ok().map(|m| m.len()),
            Inner::Gzip(_) => None,
        }
    }

    /// Fills as much of `buf` as the stream allows and returns how many bytes were written;
    /// fewer than `buf.len()` means the stream ended.
    pub(crate) fn read_full(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            let step = match &mut self.inner {
                Inner::Plain(r) => r.read(&mut buf[filled..]),
                Inner::Gzip(r) => r.read(&mut buf[filled..]),
            };
            match step {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.read_error(e)),
            }
        }
        Ok(filled)
    }

    /// Fills `buf` completely or reports which part of the file was expected there.
    pub(crate) fn read_exact_or(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        let got = self.read_full(buf)?;
        if got < buf.len() {
            return Err(NasError::format(
                &self.path,
                format!(
                    "file ends early: expected {} bytes of {what}, found {got}",
                    buf.len()
                ),
            ));
        }
        Ok(())
    }

    /// True when no byte is left, used to reject files longer than their header says.
    pub(crate) fn at_end(&mut self) -> Result<bool> {
        let mut probe = [0u8; 1];
        Ok(self.read_full(&mut probe)? == 0)
    }

    /// A failed read inside a gzip stream almost always means a damaged download, which the user
    /// fixes differently from a permission problem, so it is reported as a format error.
    fn read_error(&self, e: io::Error) -> NasError {
        let corrupt = matches!(
            e.kind(),
            io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::UnexpectedEof
        );
        if self.gzip && corrupt {
            NasError::format(&self.path, format!("corrupt or truncated gzip data: {e}"))
        } else {
            NasError::io(&self.path, e)
        }
    }
}

/// Decompresses `bytes` if they are gzip, otherwise borrows them; for in-memory files.
pub(crate) fn maybe_gunzip<'a>(
    bytes: &'a [u8],
    source: &Path,
) -> Result<std::borrow::Cow<'a, [u8]>> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(std::borrow::Cow::Borrowed(bytes));
    }
    let mut out = Vec::with_capacity(bytes.len() * 4);
    MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| NasError::format(source, format!("corrupt or truncated gzip data: {e}")))?;
    Ok(std::borrow::Cow::Owned(out))
}

/// The first of `candidates` that exists, or a [`NasError::MissingDataset`] listing all of them.
pub(crate) fn find_first(dataset: &str, candidates: &[PathBuf]) -> Result<PathBuf> {
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let list: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    Err(NasError::MissingDataset {
        dataset: dataset.to_string(),
        message: format!("none of these files exists: {}", list.join(", ")),
    })
}

/// Scratch directories and gzip encoding for the unit tests of the readers.
#[cfg(test)]
pub(crate) mod test_files {
    use std::io::Write;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static COUNTER: AtomicUsize = AtomicUsize::new(0);

    /// A fresh, empty directory unique to this process and call.
    pub(crate) fn fresh_dir(tag: &str) -> PathBuf {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("nasrs-data-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create test dir");
        dir
    }

    /// `bytes` as a gzip file.
    pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).expect("in-memory write");
        enc.finish().expect("in-memory gzip")
    }
}

#[cfg(test)]
mod tests {
    use super::test_files::{fresh_dir, gzip};
    use super::*;

    fn read_all(path: &Path) -> Result<Vec<u8>> {
        let mut src = Source::open(path)?;
        let mut buf = vec![0u8; 1 << 16];
        let n = src.read_full(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    #[test]
    fn gzip_is_detected_by_content() {
        let dir = fresh_dir("sniff");
        let data: Vec<u8> = (0..=255).collect();
        std::fs::write(dir.join("a.bin"), gzip(&data)).expect("write");
        std::fs::write(dir.join("b.gz"), &data).expect("write");
        assert_eq!(read_all(&dir.join("a.bin")).expect("gzip"), data);
        assert_eq!(read_all(&dir.join("b.gz")).expect("plain"), data);
        assert_eq!(
            maybe_gunzip(&gzip(&data), &dir).expect("gzip").as_ref(),
            &data[..]
        );
    }

    #[test]
    fn damaged_gzip_is_a_format_error() {
        let dir = fresh_dir("corrupt");
        let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let good = gzip(&data);
        let mut flipped = good.clone();
        flipped[20] ^= 0xff;
        flipped[21] ^= 0x55;
        let cut = &good[..good.len() / 2];
        for (name, bytes) in [("flipped.gz", &flipped[..]), ("cut.gz", cut)] {
            let path = dir.join(name);
            std::fs::write(&path, bytes).expect("write");
            let err = read_all(&path).expect_err("damaged gzip must fail");
            let msg = err.to_string();
            assert!(matches!(err, NasError::Format { .. }), "{name}: {msg}");
            assert!(msg.contains(name) && msg.contains("gzip"), "{msg}");
        }
    }

    #[test]
    fn missing_files_are_listed() {
        let dir = fresh_dir("missing");
        let err = find_first("mnist", &[dir.join("x"), dir.join("x.gz")]).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, NasError::MissingDataset { .. }));
        assert!(msg.contains("x.gz") && msg.contains(&dir.join("x").display().to_string()));
        let err = Source::open(&dir.join("nope")).err().expect("missing file");
        assert!(matches!(err, NasError::Io { .. }));
    }
}
