//! The fetcher's decisions, apart from the swarm so that they can be tested without one:
//! whether a request is well formed, which bytes a read makes it stream, when a reader is
//! sequential, where the sequential stream starts, and which anchor lets go. Each takes the
//! cache's piece bitmap as `verified` (piece index → verified).

use std::time::Instant;

use super::super::cache::pieces;
use super::FetchError;
use crate::fetch::protocol::FetchRequest;
use crate::torrent::PIECE_LENGTH;

const PIECE: u64 = PIECE_LENGTH as u64;

/// Refuses a request that does not name an object by sha256 or whose range is empty or runs
/// past the object's end.
pub(super) fn check_request(req: &FetchRequest) -> Result<(), FetchError> {
    if req.fetch.len() != 64 || !req.fetch.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(FetchError::BadRequest("not a sha256".into()));
    }
    if req.from >= req.to || req.to > req.size {
        return Err(FetchError::BadRequest(format!(
            "range {}..{} of a {}-byte object",
            req.from, req.to, req.size
        )));
    }
    Ok(())
}

/// Whether a request reading `[.., to)` and asking for read-ahead up to `ahead` comes from a
/// sequential reader: it reads `readahead` or more past what it needs. Only an object that
/// takes at most half the cache (`cache_limit`) is streamed whole.
pub(super) fn is_sequential(
    to: u64,
    ahead: u64,
    readahead: u64,
    size: u64,
    cache_limit: u64,
) -> bool {
    ahead.saturating_sub(to) >= readahead && size <= cache_limit / 2
}

/// The bytes to stream so that `[from, to)` of a `size`-byte object is cached: from the start
/// of the first piece covering it that is not verified to the end of the last such piece
/// (verified pieces between them come along: one stream). None if nothing is missing, or the
/// range is empty.
pub(super) fn missing_span(
    from: u64,
    to: u64,
    size: u64,
    verified: impl Fn(u64) -> bool,
) -> Option<(u64, u64)> {
    if from >= to {
        return None;
    }
    let mut missing = pieces(from, to).filter(|&p| !verified(p));
    let first = missing.next()?;
    let last = missing.last().unwrap_or(first);
    Some((first * PIECE, ((last + 1) * PIECE).min(size)))
}

/// What a read-ahead from `from` to `ahead` fetches when read-aheads already reach `reached`:
/// `[max(from, reached), min(ahead, size))`, or None if that is empty or every piece of it is
/// verified.
pub(super) fn read_ahead_span(
    from: u64,
    ahead: u64,
    size: u64,
    reached: u64,
    verified: impl Fn(u64) -> bool,
) -> Option<(u64, u64)> {
    let ahead = ahead.min(size);
    let start = from.max(reached);
    if ahead <= start || pieces(start, ahead).all(verified) {
        return None;
    }
    Some((start, ahead))
}

/// The start of the first piece at or after the one holding `from` that is not verified, in a
/// `size`-byte object. None: every piece from there to the end is.
pub(super) fn first_missing(from: u64, size: u64, verified: impl Fn(u64) -> bool) -> Option<u64> {
    (from / PIECE..size.div_ceil(PIECE))
        .find(|&p| !verified(p))
        .map(|p| p * PIECE)
}

/// Where the sequential stream opens, `first` being `first_missing`: there, unless it is within
/// `prefix` of the start and a piece before it is still missing (a read-ahead in flight); then
/// at 0, so that the stream sees every byte in order and the sha256 needs no re-read.
pub(super) fn stream_start(first: u64, prefix: u64, verified: impl Fn(u64) -> bool) -> u64 {
    if first <= prefix && !pieces(0, first).all(verified) {
        0
    } else {
        first
    }
}

/// The anchor to let go once more than `max` are held: the least recently used (ties: the
/// least key). None while `max` or fewer are.
pub(super) fn anchor_to_drop<K: Ord>(anchored: Vec<(Instant, K)>, max: usize) -> Option<K> {
    if anchored.len() <= max {
        return None;
    }
    anchored.into_iter().min().map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn request(fetch: &str, from: u64, to: u64, size: u64) -> FetchRequest {
        FetchRequest {
            fetch: fetch.into(),
            from,
            to,
            size,
            ahead: to,
        }
    }

    /// `verified` over a list of verified pieces.
    fn have(pieces: &[u64]) -> impl Fn(u64) -> bool + '_ {
        move |p| pieces.contains(&p)
    }

    #[test]
    fn a_request_needs_a_sha256_and_a_non_empty_range_inside_the_object() {
        assert!(check_request(&request(SHA, 0, 1, 1)).is_ok());
        assert!(check_request(&request(SHA, 10, 20, 20)).is_ok());
        let code = |r: FetchRequest| check_request(&r).unwrap_err().to_string();
        assert_eq!(
            code(request(&SHA[1..], 0, 1, 1)),
            "bad request: not a sha256"
        );
        let not_hex = SHA.replace('a', "g");
        assert_eq!(
            code(request(&not_hex, 0, 1, 1)),
            "bad request: not a sha256"
        );
        assert_eq!(
            code(request(SHA, 5, 5, 10)),
            "bad request: range 5..5 of a 10-byte object"
        );
        assert_eq!(
            code(request(SHA, 6, 5, 10)),
            "bad request: range 6..5 of a 10-byte object"
        );
        assert_eq!(
            code(request(SHA, 0, 11, 10)),
            "bad request: range 0..11 of a 10-byte object"
        );
    }

    #[test]
    fn a_reader_is_sequential_when_it_reads_a_whole_readahead_ahead() {
        let mib = 1 << 20;
        // Exactly `readahead` past what it needs.
        assert!(is_sequential(mib, 5 * mib, 4 * mib, 10 * mib, 100 * mib));
        assert!(!is_sequential(
            mib,
            5 * mib - 1,
            4 * mib,
            10 * mib,
            100 * mib
        ));
        // No read-ahead at all (ahead before to must not wrap around).
        assert!(!is_sequential(5 * mib, mib, 4 * mib, 10 * mib, 100 * mib));
        // An object larger than half the cache is never streamed whole.
        assert!(is_sequential(0, 4 * mib, 4 * mib, 50 * mib, 100 * mib));
        assert!(!is_sequential(0, 4 * mib, 4 * mib, 50 * mib + 1, 100 * mib));
    }

    #[test]
    fn a_read_inside_one_piece_streams_that_piece() {
        let size = 10 * PIECE;
        assert_eq!(
            missing_span(PIECE + 10, PIECE + 20, size, have(&[])),
            Some((PIECE, 2 * PIECE))
        );
        // The piece's last byte, and the first byte of the next.
        assert_eq!(
            missing_span(2 * PIECE - 1, 2 * PIECE, size, have(&[])),
            Some((PIECE, 2 * PIECE))
        );
        assert_eq!(
            missing_span(2 * PIECE, 2 * PIECE + 1, size, have(&[])),
            Some((2 * PIECE, 3 * PIECE))
        );
    }

    #[test]
    fn an_empty_or_cached_range_streams_nothing() {
        let size = 10 * PIECE;
        assert_eq!(missing_span(5, 5, size, have(&[])), None);
        assert_eq!(missing_span(PIECE, PIECE, size, have(&[])), None);
        assert_eq!(
            missing_span(PIECE + 1, 3 * PIECE, size, have(&[1, 2])),
            None
        );
    }

    #[test]
    fn a_range_spanning_pieces_streams_from_the_first_missing_to_the_last() {
        let size = 10 * PIECE;
        // Pieces 1..=4; 1 and 4 are there: only 2 and 3.
        assert_eq!(
            missing_span(PIECE + 5, 5 * PIECE - 5, size, have(&[1, 4])),
            Some((2 * PIECE, 4 * PIECE))
        );
        // A verified piece between two missing ones comes along.
        assert_eq!(
            missing_span(0, 4 * PIECE, size, have(&[1, 2])),
            Some((0, 4 * PIECE))
        );
        // One missing piece among verified ones.
        assert_eq!(
            missing_span(0, 4 * PIECE, size, have(&[0, 1, 3])),
            Some((2 * PIECE, 3 * PIECE))
        );
    }

    #[test]
    fn the_last_partial_piece_ends_at_the_object_end() {
        let size = 3 * PIECE + 100;
        assert_eq!(
            missing_span(3 * PIECE + 50, size, size, have(&[])),
            Some((3 * PIECE, size))
        );
        assert_eq!(
            missing_span(PIECE, size, size, have(&[1])),
            Some((2 * PIECE, size))
        );
        assert_eq!(missing_span(0, size, size, have(&[0, 1, 2, 3])), None);
    }

    #[test]
    fn a_read_ahead_starts_where_the_last_one_reached_and_stops_at_the_end() {
        let size = 10 * PIECE;
        assert_eq!(
            read_ahead_span(PIECE, 4 * PIECE, size, 0, have(&[])),
            Some((PIECE, 4 * PIECE))
        );
        assert_eq!(
            read_ahead_span(PIECE, 4 * PIECE, size, 3 * PIECE, have(&[])),
            Some((3 * PIECE, 4 * PIECE))
        );
        // Clamped to the object.
        assert_eq!(
            read_ahead_span(9 * PIECE, 20 * PIECE, size, 0, have(&[])),
            Some((9 * PIECE, size))
        );
        // Covered already: by earlier read-aheads, or by verified pieces.
        assert_eq!(
            read_ahead_span(PIECE, 4 * PIECE, size, 4 * PIECE, have(&[])),
            None
        );
        assert_eq!(read_ahead_span(PIECE, PIECE, size, 0, have(&[])), None);
        assert_eq!(
            read_ahead_span(PIECE, 3 * PIECE, size, 0, have(&[1, 2])),
            None
        );
        assert_eq!(
            read_ahead_span(size, size + PIECE, size, 0, have(&[])),
            None
        );
    }

    #[test]
    fn the_sequential_stream_starts_at_the_first_missing_piece() {
        let size = 5 * PIECE + 7;
        assert_eq!(first_missing(0, size, have(&[])), Some(0));
        // From inside a piece: that piece's start.
        assert_eq!(first_missing(PIECE + 3, size, have(&[])), Some(PIECE));
        assert_eq!(
            first_missing(PIECE + 3, size, have(&[1, 2])),
            Some(3 * PIECE)
        );
        // The last, partial piece counts.
        assert_eq!(
            first_missing(0, size, have(&[0, 1, 2, 3, 4])),
            Some(5 * PIECE)
        );
        assert_eq!(first_missing(PIECE, size, have(&[1, 2, 3, 4, 5])), None);
        // Missing pieces before `from` do not matter.
        assert_eq!(first_missing(2 * PIECE, size, have(&[2, 3, 4, 5])), None);
    }

    #[test]
    fn a_stream_near_the_start_with_a_hole_before_it_starts_at_zero() {
        let prefix = 4 * PIECE;
        assert_eq!(stream_start(0, prefix, have(&[])), 0);
        assert_eq!(stream_start(2 * PIECE, prefix, have(&[0, 1])), 2 * PIECE);
        assert_eq!(stream_start(2 * PIECE, prefix, have(&[0])), 0);
        // Exactly at the prefix still restarts; past it never does.
        assert_eq!(stream_start(prefix, prefix, have(&[0, 1, 2])), 0);
        assert_eq!(
            stream_start(prefix + PIECE, prefix, have(&[])),
            prefix + PIECE
        );
    }

    #[test]
    fn the_least_recently_used_anchor_lets_go_only_past_the_bound() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let anchored = || vec![(at(5), "b"), (at(1), "c"), (at(9), "a")];
        assert_eq!(anchor_to_drop(anchored(), 3), None);
        assert_eq!(anchor_to_drop(anchored(), 2), Some("c"));
        assert_eq!(anchor_to_drop(Vec::<(Instant, &str)>::new(), 0), None);
        // Same instant: the least key.
        assert_eq!(
            anchor_to_drop(vec![(at(1), "y"), (at(1), "x")], 1),
            Some("x")
        );
    }
}
