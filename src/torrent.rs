//! One BitTorrent v1 (BEP 3) torrent per published file.
//!
//! Pieces are hashed while an upload is staged (`store::Hashing`), in the one read of the
//! upload, so publication makes the torrent without reading the file again. The catalog keeps
//! the bencoded info dictionary, which is what the infohash is the SHA-1 of; trackers live
//! outside it, so they can change without changing any infohash. The .torrent file itself is
//! put together when read (`torrent_file`).

use librqbit_bencode::raw_value::RawValue;
use librqbit_bencode::{bencode_serialize_to_writer, ByteBufOwned};
use librqbit_core::torrent_metainfo::TorrentMetaV1Info;
use serde::Serialize;
use sha1::{Digest, Sha1};

/// Small pieces: a ranged read fetches at most a piece more than it asked for on each side
/// (256 KiB; the platform notes measured 2 MiB pieces fetching far more for small reads).
/// A 1 GiB file has 4096 pieces: an 80 KiB info dictionary.
pub const PIECE_LENGTH: u32 = 256 << 10;

/// SHA-1 of each `PIECE_LENGTH` run of a stream, fed in chunks of any size.
pub struct PieceHasher {
    sha: Sha1,
    in_piece: u32,
    pieces: Vec<u8>,
}

impl Default for PieceHasher {
    fn default() -> Self {
        PieceHasher {
            sha: Sha1::new(),
            in_piece: 0,
            pieces: Vec::new(),
        }
    }
}

impl PieceHasher {
    pub fn update(&mut self, mut b: &[u8]) {
        while !b.is_empty() {
            let take = b.len().min((PIECE_LENGTH - self.in_piece) as usize);
            self.sha.update(&b[..take]);
            self.in_piece += take as u32;
            b = &b[take..];
            if self.in_piece == PIECE_LENGTH {
                let full = std::mem::replace(&mut self.sha, Sha1::new());
                self.pieces.extend_from_slice(&full.finalize());
                self.in_piece = 0;
            }
        }
    }

    /// The concatenated 20-byte piece hashes (the last piece may be short).
    pub fn finish(mut self) -> Vec<u8> {
        if self.in_piece > 0 {
            self.pieces.extend_from_slice(&self.sha.finalize());
        }
        self.pieces
    }
}

/// So a whole file can be hashed with `io::copy`.
impl std::io::Write for PieceHasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A file's info dictionary, bencoded, and its infohash (lower-case hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub bytes: Vec<u8>,
    pub info_hash: String,
}

#[derive(Debug, thiserror::Error)]
#[error("making a torrent: {0}")]
pub struct TorrentError(String);

/// The single-file info dictionary for `name` (the published file name). `None` for an empty
/// file: there is nothing to share, and BitTorrent clients refuse zero-length torrents.
pub fn info(name: &str, length: u64, pieces: &[u8]) -> Result<Option<Info>, TorrentError> {
    if length == 0 {
        return Ok(None);
    }
    let expected = length.div_ceil(u64::from(PIECE_LENGTH)) * 20;
    if pieces.len() as u64 != expected {
        return Err(TorrentError(format!(
            "{} bytes of piece hashes for a {length}-byte file, expected {expected}",
            pieces.len()
        )));
    }
    let info = TorrentMetaV1Info::<ByteBufOwned> {
        name: Some(name.as_bytes().into()),
        pieces: pieces.into(),
        piece_length: PIECE_LENGTH,
        length: Some(length),
        attr: None,
        sha1: None,
        symlink_path: None,
        md5sum: None,
        files: None,
        private: false,
    };
    let mut bytes = Vec::new();
    bencode_serialize_to_writer(&info, &mut bytes).map_err(|e| TorrentError(e.to_string()))?;
    let info_hash = hex::encode(Sha1::digest(&bytes));
    Ok(Some(Info { bytes, info_hash }))
}

/// Keys in bencode's sorted order.
#[derive(Serialize)]
struct TorrentFile<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    announce: Option<&'a str>,
    #[serde(rename = "announce-list", skip_serializing_if = "Vec::is_empty")]
    announce_list: Vec<Vec<&'a str>>,
    #[serde(rename = "created by")]
    created_by: &'a str,
    info: RawValue<&'a [u8]>,
    /// BEP 19 web seeds: outside `info`, so naming them changes no infohash.
    #[serde(rename = "url-list", skip_serializing_if = "Vec::is_empty")]
    url_list: Vec<String>,
}

/// Where an endpoint at `base` (`http://HOST:PORT`) serves object `sha256`: the web seed URL
/// of its torrent (a whole-file URL, BEP 19; content-addressed, so any cache may keep it, and
/// of one length for every object, so a .torrent's size is known without its path).
pub fn web_seed(base: &str, sha256: &str) -> String {
    format!("{}/by-sha256/{sha256}", base.trim_end_matches('/'))
}

/// The .torrent: the stored info dictionary, verbatim, with the trackers to announce to
/// (BEP 12: one tier each, so a client tries them all) and the endpoints (`web_seeds`, base
/// URLs) that serve object `sha256` over HTTP.
pub fn torrent_file(
    info: &[u8],
    trackers: &[String],
    web_seeds: &[String],
    sha256: &str,
) -> Result<Vec<u8>, TorrentError> {
    let t = TorrentFile {
        url_list: web_seeds.iter().map(|b| web_seed(b, sha256)).collect(),
        announce: trackers.first().map(String::as_str),
        announce_list: if trackers.len() > 1 {
            trackers.iter().map(|t| vec![t.as_str()]).collect()
        } else {
            Vec::new()
        },
        created_by: concat!("repofs ", env!("CARGO_PKG_VERSION")),
        info: RawValue(info),
    };
    let mut out = Vec::new();
    bencode_serialize_to_writer(&t, &mut out).map_err(|e| TorrentError(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_do_not_depend_on_how_the_stream_is_cut() {
        let data: Vec<u8> = (0..(PIECE_LENGTH as usize * 2 + 1234))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut whole = PieceHasher::default();
        whole.update(&data);
        let mut bits = PieceHasher::default();
        for c in data.chunks(1000) {
            bits.update(c);
        }
        let (a, b) = (whole.finish(), bits.finish());
        assert_eq!(a, b);
        assert_eq!(a.len(), 60);
        assert_eq!(
            &a[40..],
            Sha1::digest(&data[2 * PIECE_LENGTH as usize..]).as_slice()
        );
    }

    #[test]
    fn the_torrent_embeds_the_info_it_was_hashed_from() {
        let mut h = PieceHasher::default();
        h.update(b"hello");
        let i = info("hello.txt", 5, &h.finish()).unwrap().unwrap();
        let t = torrent_file(&i.bytes, &["http://127.0.0.1:1/announce".into()], &[], "ab").unwrap();
        let parsed = librqbit_core::torrent_metainfo::torrent_from_bytes(&t).unwrap();
        assert_eq!(hex::encode(parsed.info_hash.0), i.info_hash);
        // A web seed is outside the info dictionary: the infohash stays.
        let seeded = torrent_file(&i.bytes, &[], &["http://h:1/".into()], "ab").unwrap();
        let parsed = librqbit_core::torrent_metainfo::torrent_from_bytes(&seeded).unwrap();
        assert_eq!(hex::encode(parsed.info_hash.0), i.info_hash);
        let text = String::from_utf8_lossy(&seeded);
        assert!(
            text.contains("8:url-listl23:http://h:1/by-sha256/abe"),
            "{text}"
        );
        assert_eq!(parsed.info.data.length, Some(5));
        assert!(info("empty", 0, &[]).unwrap().is_none());
        assert!(info("short", 5, &[0; 19]).is_err());
    }
}
