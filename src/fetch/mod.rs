//! BitTorrent distribution and (later) mirror sync.
//!
//! `torrent` makes one BEP 3 torrent per published file from the piece hashes taken while the
//! upload was staged. Seeding, the signed index and lazy mirror fetches are the next stage.

pub mod torrent;
