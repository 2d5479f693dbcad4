//! A verified piece whose bytes on disk no longer match its SHA-1 (found by `swarm`'s
//! first-read check): it leaves the verified set, so that the mount stops reading it and
//! librqbit may write it again, and the fetcher fetches it anew (`lazy::repair`).

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;

use super::{Cache, CacheObject};
use crate::sync::lock;

impl CacheObject {
    /// Records `piece` as not verified, durably. A complete object goes back to `partial/`
    /// with every other piece verified: its sha256 is checked again once the piece is back.
    /// The bits file is written (and synced) before the rename, so a crash between leaves the
    /// complete object (its piece found bad again on its next first read), never bits over
    /// bytes that are not there.
    pub fn unverify(&self, piece: u64) -> io::Result<()> {
        if piece >= self.piece_count() {
            return Ok(());
        }
        let mut verified = lock(&self.verified);
        let mut bits = lock(&self.bits);
        if self.is_complete() {
            let mut b = vec![1u8; verified.len()];
            b[piece as usize] = 0;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(self.dir.bits_path(&self.sha256))?;
            self.tally.made(b.len() as u64);
            file.write_all_at(&b, 0)?;
            file.sync_data()?;
            fs::rename(
                self.dir.complete_path(&self.sha256),
                self.dir.partial_path(&self.sha256),
            )?;
            verified.iter_mut().for_each(|v| *v = true);
            *bits = Some(file);
        } else if let Some(file) = &*bits {
            file.write_all_at(&[0], piece)?;
            file.sync_data()?;
        }
        verified[piece as usize] = false;
        self.complete.store(false, Ordering::Release);
        Ok(())
    }
}

impl Cache {
    /// Lets go of the open object `sha256` (its files stay): the next `object` opens it from
    /// disk again. After `unverify` made a complete object partial, that opens its data file
    /// for writing (a complete one is opened read-only).
    pub fn forget(&self, sha256: &str) {
        lock(&self.objects).remove(sha256);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::cached;
    use super::super::{Cache, CacheDir, PIECE};
    use std::os::unix::fs::FileExt;

    /// A complete object with a bad piece goes back to partial without that piece; the piece
    /// written again (right this time) and the object is complete again.
    #[test]
    fn an_unverified_piece_leaves_a_complete_object_partial_until_fetched_again() {
        let (dir, cache, data, sha, hashes, o) = cached(PIECE as usize * 3 + 10);
        o.pwrite(0, &data).unwrap();
        o.verify(0, data.len() as u64).unwrap();
        assert!(o.promote(None).unwrap());
        // A byte changes on disk behind the cache's back.
        let complete = cache.dir.complete_path(&sha);
        std::fs::File::options()
            .write(true)
            .open(&complete)
            .unwrap()
            .write_all_at(&[data[PIECE as usize + 5] ^ 1], PIECE + 5)
            .unwrap();
        o.unverify(1).unwrap();
        assert!(!o.is_complete() && !complete.exists());
        assert_eq!(o.verified_pieces(), [true, false, true, true]);
        let view = cache
            .dir
            .open_view(&sha, data.len() as u64)
            .unwrap()
            .unwrap();
        assert!(view.has(0, PIECE).unwrap() && !view.has(PIECE, PIECE + 1).unwrap());
        // The same after a restart: the bits file says so.
        drop(o);
        let cache = Cache::new(CacheDir::new(dir.path().to_path_buf()), 1 << 30).unwrap();
        let o = cache.object(&sha, data.len() as u64, &hashes).unwrap();
        assert_eq!(o.verified_pieces(), [true, false, true, true]);
        // Fetched again: written (no longer verified, so not refused), complete again.
        o.pwrite(PIECE, &data[PIECE as usize..2 * PIECE as usize])
            .unwrap();
        o.verify(PIECE, 2 * PIECE).unwrap();
        assert!(o.promote(None).unwrap());
        assert_eq!(std::fs::read(&complete).unwrap(), data);
    }

    /// In a partial object, only that piece's bit goes, on disk too.
    #[test]
    fn an_unverified_piece_of_a_partial_object_loses_its_bit() {
        let (_dir, cache, data, sha, _, o) = cached(PIECE as usize * 3);
        o.pwrite(0, &data[..2 * PIECE as usize]).unwrap();
        o.verify(0, 2 * PIECE).unwrap();
        o.unverify(0).unwrap();
        o.unverify(7).unwrap(); // beyond the object: nothing
        assert_eq!(o.verified_pieces(), [false, true, false]);
        let view = cache
            .dir
            .open_view(&sha, data.len() as u64)
            .unwrap()
            .unwrap();
        assert!(!view.has(0, 1).unwrap() && view.has(PIECE, 2 * PIECE).unwrap());
    }
}
