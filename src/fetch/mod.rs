//! Mirror sync and BitTorrent distribution.
//!
//! Not built yet: a later stage. The catalog already records the sizes, hashes and payload
//! locations that torrents and lazy ranged fetches will be built from.
