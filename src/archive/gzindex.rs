//! Stand-in until the zran-style index lands: no seek points, so gzip payloads are read
//! through the unpack cache (correct, slower for the first read).

use std::fs::File;
use std::io::{self, Read};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeekPoint {
    pub out: u64,
    pub inp: u64,
    pub bits: u8,
    pub window: Vec<u8>,
}

pub struct IndexingReader<R: Read> {
    inner: flate2::read::MultiGzDecoder<R>,
    out: u64,
}

impl<R: Read> IndexingReader<R> {
    pub fn new(inner: R, _spacing: u64) -> Self {
        IndexingReader {
            inner: flate2::read::MultiGzDecoder::new(inner),
            out: 0,
        }
    }

    pub fn finish(mut self) -> io::Result<(Vec<SeekPoint>, u64)> {
        self.out += io::copy(&mut self.inner, &mut io::sink())?;
        Ok((Vec::new(), self.out))
    }
}

impl<R: Read> Read for IndexingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out += n as u64;
        Ok(n)
    }
}

pub struct GzCursor;

impl GzCursor {
    pub fn new(_file: Arc<File>, _base: u64, _points: Arc<[SeekPoint]>) -> Self {
        GzCursor
    }
    pub fn with_len(self, _len: u64) -> Self {
        self
    }
    pub fn read_at(&mut self, _offset: u64, _buf: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::other("no seek points"))
    }
}
