//! The sequential stream's check (`lazy::sequential`): an object's bytes hashed as one
//! in-order stream returns them.

use std::io::{self, Read};
use std::sync::Arc;

use aws_lc_rs::digest::{Context as Sha1, SHA1_FOR_LEGACY_USE_ONLY};
use sha2::{Digest, Sha256};

use super::{CacheObject, FileRange, PIECE};

/// Checks an object's bytes as one in-order stream returns them (`lazy`'s sequential
/// stream), so nothing is read back for it: each piece's SHA-1 from those bytes, the piece
/// readable as soon as it matched and recorded a batch at a time (one sync); and the
/// whole object's sha256 when the stream covers it from its start (a verified prefix before
/// the stream is read once), so that `promote` need not re-read the object.
pub struct StreamCheck {
    object: Arc<CacheObject>,
    /// The next byte the stream returns.
    pos: u64,
    /// The current piece, unless it was verified before the stream reached it.
    piece: Option<Sha1>,
    whole: Option<Sha256>,
    /// Pieces whose SHA-1 matched, not yet handed to the recorder.
    pending: Vec<u64>,
    /// Where the batch being gathered started, and how many bytes it takes.
    batch_from: u64,
    batch: u64,
}

impl StreamCheck {
    /// A check of the stream starting at `pos` (a piece boundary), recording every `batch`
    /// bytes.
    pub fn new(object: Arc<CacheObject>, pos: u64, batch: u64) -> io::Result<StreamCheck> {
        if !pos.is_multiple_of(PIECE) || pos > object.size {
            return Err(io::Error::other(
                "a stream check starts at a piece boundary",
            ));
        }
        // The prefix is in the page cache (it was just fetched) and costs one read here
        // instead of the whole object's at promotion.
        let whole = if object.has(0, pos) {
            let mut h = Sha256::new();
            let mut r = io::BufReader::with_capacity(1 << 20, FileRange(&object.data, 0));
            io::copy(&mut Read::take(&mut r, pos), &mut h)?;
            Some(h)
        } else {
            None
        };
        let piece = (!object.is_verified(pos / PIECE)).then(sha1);
        Ok(StreamCheck {
            object,
            pos,
            piece,
            whole,
            pending: Vec::new(),
            batch_from: pos,
            batch: batch.max(1),
        })
    }

    /// The stream's next bytes. Err(InvalidData) if a piece's bytes are not that piece. The
    /// pieces they complete become readable together (one wake-up of the readers).
    pub fn update(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut done = Vec::new();
        let r = self.check(buf, &mut done);
        self.object.readable(&done)?;
        self.pending.append(&mut done);
        if self.pos - self.batch_from >= self.batch || self.pos == self.object.size {
            self.object.record_later(&std::mem::take(&mut self.pending));
            self.batch_from = self.pos;
        }
        r
    }

    /// Hashes `buf`; pushes onto `done` each piece it completes that matched its SHA-1.
    fn check(&mut self, mut buf: &[u8], done: &mut Vec<u64>) -> io::Result<()> {
        let o = self.object.clone();
        if buf.len() as u64 > o.size - self.pos {
            return Err(io::Error::other("the stream ran past the object's end"));
        }
        while !buf.is_empty() {
            let p = self.pos / PIECE;
            let (_, end) = o.piece_range(p);
            let take = ((end - self.pos) as usize).min(buf.len());
            let (now, rest) = buf.split_at(take);
            if let Some(h) = &mut self.piece {
                h.update(now);
            }
            if let Some(h) = &mut self.whole {
                h.update(now);
            }
            self.pos += take as u64;
            buf = rest;
            if self.pos < end {
                continue;
            }
            if let Some(h) = self.piece.take() {
                if h.finish().as_ref() != o.piece_hash(p)? {
                    return Err(o.bad_piece(p));
                }
                done.push(p);
            }
            if self.pos < o.size {
                self.piece = (!o.is_verified(p + 1)).then(sha1);
            }
        }
        Ok(())
    }

    /// After the stream's last bytes: records what is pending; the object's sha256 if the
    /// stream reached its end and covered it from the start.
    pub fn finish(mut self) -> io::Result<Option<[u8; 32]>> {
        self.object.record_later(&std::mem::take(&mut self.pending));
        Ok(match self.whole.take() {
            Some(h) if self.pos == self.object.size => Some(h.finalize().into()),
            _ => None,
        })
    }
}

/// A piece's SHA-1 (aws-lc: ~1.8x the `sha1` crate's speed here, both with SHA-NI).
fn sha1() -> Sha1 {
    Sha1::new(&SHA1_FOR_LEGACY_USE_ONLY)
}

#[cfg(test)]
mod tests {
    use super::super::tests::cached;
    use super::*;
    use std::fs;

    #[test]
    fn a_stream_check_verifies_what_the_stream_returns_and_yields_the_sha256() {
        let (_dir, cache, data, sha, _, o) = cached(PIECE as usize * 5 + 1000);
        o.pwrite(0, &data).unwrap();
        // Piece 0 was verified before the stream: the check starts after it and reads it once.
        o.verify(0, PIECE).unwrap();
        let mut c = StreamCheck::new(o.clone(), PIECE, 2 * PIECE).unwrap();
        let mut chunks = data[PIECE as usize..].chunks(100_000);
        c.update(chunks.next().unwrap()).unwrap();
        assert!(
            !o.is_verified(1),
            "a piece counts only once all of it was checked"
        );
        for chunk in chunks.by_ref().take(2) {
            c.update(chunk).unwrap();
        }
        assert!(o.is_verified(1), "each piece counts once checked");
        assert!(!o.is_verified(2));
        for chunk in chunks {
            c.update(chunk).unwrap();
        }
        let digest = c.finish().unwrap().expect("the sha256, from the stream");
        assert_eq!(hex::encode(digest), sha);
        assert_eq!(o.verified_count(), o.piece_count());
        let view = cache.dir.open_view(&sha, data.len() as u64).unwrap();
        assert!(view.unwrap().has(0, data.len() as u64).unwrap());
        assert!(o.promote(Some(digest)).unwrap());
        assert_eq!(fs::read(cache.dir.complete_path(&sha)).unwrap(), data);
    }

    #[test]
    fn a_stream_check_refuses_a_bad_piece_and_a_wrong_sha256_is_not_promoted() {
        let (_dir, cache, data, sha, _, o) = cached(PIECE as usize * 3);
        // Piece 0 missing: no sha256 from a stream starting at piece 1.
        let mut bad = data.clone();
        bad[2 * PIECE as usize + 5] ^= 1;
        o.pwrite(PIECE, &bad[PIECE as usize..]).unwrap();
        let mut c = StreamCheck::new(o.clone(), PIECE, PIECE).unwrap();
        c.update(&bad[PIECE as usize..2 * PIECE as usize]).unwrap();
        let e = c.update(&bad[2 * PIECE as usize..]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(o.is_verified(1) && !o.is_verified(2));
        let mut c = StreamCheck::new(o.clone(), 2 * PIECE, PIECE).unwrap();
        o.pwrite(2 * PIECE, &data[2 * PIECE as usize..]).unwrap();
        c.update(&data[2 * PIECE as usize..]).unwrap();
        assert_eq!(
            c.finish().unwrap(),
            None,
            "the stream did not cover piece 0"
        );
        o.pwrite(0, &data[..PIECE as usize]).unwrap();
        o.verify(0, PIECE).unwrap();
        // A digest that is not the object's: dropped, every bit cleared.
        assert!(o.promote(Some([0u8; 32])).is_err());
        assert_eq!(o.verified_count(), 0);
        assert!(!cache.dir.complete_path(&sha).exists());
    }
}
