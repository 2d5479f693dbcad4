//! Tests of `superseed` (a file of their own: the module is long enough).

use super::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

const PIECE: u32 = 32 << 10;

fn peer(id: u8) -> PeerHandle {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, id)), 6881)
}

fn client(id: u8) -> Id20 {
    Id20::new([id; 20])
}

fn seed(pieces: u32) -> SuperSeed<u32> {
    SuperSeed::new(Lengths::new(u64::from(pieces * PIECE), PIECE).unwrap())
}

/// Shown-everything count of a tick (what it released is dropped).
fn tick(s: &mut SuperSeed<u32>, now: Instant) -> usize {
    s.tick(now).0
}

fn shown(rx: &mut UnboundedReceiver<ValidPieceIndex>) -> Vec<u32> {
    let mut v = Vec::new();
    while let Ok(p) = rx.try_recv() {
        v.push(p.get());
    }
    v
}

fn join(s: &mut SuperSeed<u32>, id: u8, now: Instant) -> UnboundedReceiver<ValidPieceIndex> {
    let (tx, rx) = unbounded_channel();
    assert!(s.join(peer(id), client(id), tx, now));
    s.on_interest(peer(id), true);
    rx
}

/// Whether the request is served at once (not deferred).
fn request(s: &mut SuperSeed<u32>, id: u8, p: u32, now: Instant) -> bool {
    let piece = s.lengths.validate_piece_index(p).unwrap();
    s.on_request(peer(id), piece, p, now).is_some()
}

#[test]
fn a_peer_alone_is_shown_more_and_the_next_on_each_request() {
    let now = Instant::now();
    let mut s = seed(20);
    let mut a = join(&mut s, 1, now);
    assert_eq!(shown(&mut a), (0..PENDING_ALONE as u32).collect::<Vec<_>>());
    request(&mut s, 1, 0, now);
    assert_eq!(shown(&mut a), vec![PENDING_ALONE as u32]);
}

#[test]
fn peers_are_shown_distinct_pieces_in_order() {
    let now = Instant::now();
    let mut s = seed(14);
    let mut a = join(&mut s, 1, now);
    let mut b = join(&mut s, 2, now);
    assert_eq!(shown(&mut a), (0..8).collect::<Vec<_>>(), "alone at first");
    assert_eq!(shown(&mut b), vec![8, 9]);
    // b starts on piece 8: the next fresh piece is revealed to it.
    request(&mut s, 2, 8, now);
    assert_eq!(shown(&mut b), vec![10]);
    // b got piece 0 from a (its HAVE): it still has two pending, nothing changes.
    s.on_have(peer(2), 0, now);
    assert_eq!(shown(&mut b), Vec::<u32>::new());
}

#[test]
fn a_piece_whose_holders_left_is_fresh_again() {
    let now = Instant::now();
    let mut s = seed(4);
    let mut a = join(&mut s, 1, now);
    assert_eq!(shown(&mut a), vec![0, 1, 2, 3]);
    request(&mut s, 1, 0, now);
    request(&mut s, 1, 1, now);
    let mut b = join(&mut s, 2, now);
    assert_eq!(
        shown(&mut b),
        Vec::<u32>::new(),
        "a holds or has pending all"
    );
    s.leave(peer(1));
    request(&mut s, 2, 0, now); // any request makes b look again
    assert_eq!(shown(&mut b), vec![1, 2, 3]);
}

#[test]
fn a_peer_that_waits_for_what_it_was_not_shown_is_shown_everything() {
    let now = Instant::now();
    let mut s = seed(12);
    let mut a = join(&mut s, 1, now);
    assert_eq!(shown(&mut a), (0..8).collect::<Vec<_>>());
    assert_eq!(tick(&mut s, now + IDLE_ALONE / 2), 0);
    assert_eq!(tick(&mut s, now + IDLE_ALONE), 1);
    assert_eq!(shown(&mut a), vec![8, 9, 10, 11]);
    // With others to share with it waits longer; a HAVE is progress.
    let mut b = join(&mut s, 2, now);
    let _ = shown(&mut b);
    s.on_have(peer(2), 0, now + IDLE_SHARED);
    assert_eq!(tick(&mut s, now + IDLE_SHARED + IDLE_SHARED / 2), 0);
    assert_eq!(tick(&mut s, now + IDLE_SHARED * 2), 1);
}

#[test]
fn a_piece_not_requested_in_time_goes_to_the_next_peer_that_asks() {
    let now = Instant::now();
    let mut s = seed(4);
    let mut a = join(&mut s, 1, now);
    let mut b = join(&mut s, 2, now);
    assert_eq!(shown(&mut a), vec![0, 1, 2, 3]);
    assert_eq!(shown(&mut b), Vec::<u32>::new());
    assert_eq!(tick(&mut s, now + PENDING_TTL / 2), 0);
    assert_eq!(shown(&mut b), Vec::<u32>::new());
    // a asked for none of its pieces in time: b is offered them, two at a time.
    assert_eq!(tick(&mut s, now + PENDING_TTL), 0);
    assert_eq!(shown(&mut b), vec![0, 1]);
    assert_eq!(shown(&mut a), Vec::<u32>::new());
}

#[test]
fn a_peer_we_owe_chunks_waits_on_us_and_keeps_its_pending_pieces() {
    let now = Instant::now();
    let mut s = seed(8);
    let mut a = join(&mut s, 1, now);
    let mut b = join(&mut s, 2, now);
    assert_eq!(shown(&mut a), (0..8).collect::<Vec<_>>(), "alone at first");
    assert_eq!(shown(&mut b), Vec::<u32>::new());
    s.on_interest(peer(2), false); // only a's clocks are watched here
    // a asks for two chunks of piece 0; our uplink is slow to send them.
    request(&mut s, 1, 0, now);
    request(&mut s, 1, 0, now);
    let late = now + IDLE_SHARED * 3;
    assert_eq!(tick(&mut s, late), 0, "waiting on us is not being stuck");
    assert_eq!(shown(&mut b), Vec::<u32>::new(), "a's pending stay a's");
    s.on_sent(peer(1), late);
    assert_eq!(tick(&mut s, late + PENDING_TTL / 2), 0);
    s.on_sent(peer(1), late);
    // Owed nothing from `late` on: its clocks start there.
    assert_eq!(tick(&mut s, late + PENDING_TTL / 2), 0);
    assert_eq!(shown(&mut b), Vec::<u32>::new());
    assert_eq!(tick(&mut s, late + PENDING_TTL), 0);
    assert_eq!(shown(&mut b), vec![1, 2], "a let its pending pieces go");
    assert_eq!(tick(&mut s, late + IDLE_SHARED), 1, "a is idle at last");
}

#[test]
fn a_peer_waiting_for_a_piece_we_are_sending_another_is_not_stuck() {
    let now = Instant::now();
    let mut s = seed(12);
    let mut a = join(&mut s, 1, now);
    let mut b = join(&mut s, 2, now);
    assert_eq!(shown(&mut a), (0..8).collect::<Vec<_>>(), "alone at first");
    assert_eq!(shown(&mut b), vec![8, 9]);
    // Both readers want piece 0; a asks us for it, b waits for a to have it.
    request(&mut s, 1, 0, now);
    s.on_interest(peer(1), false);
    let late = now + IDLE_SHARED * 3;
    assert_eq!(tick(&mut s, late), 0, "b waits on a, which waits on us");
    assert!(!shown(&mut b).contains(&0));
    s.on_sent(peer(1), late);
    assert_eq!(
        tick(&mut s, late + IDLE_SHARED),
        1,
        "nothing b lacks on its way"
    );
    assert!(shown(&mut b).contains(&0));
}

#[test]
fn an_uninterested_peer_is_left_alone() {
    let now = Instant::now();
    let mut s = seed(6);
    let (tx, mut rx) = unbounded_channel();
    s.join(peer(1), client(1), tx, now);
    assert_eq!(shown(&mut rx), (0..6).collect::<Vec<_>>());
    assert_eq!(tick(&mut s, now + IDLE_SHARED * 10), 0);
    assert_eq!(shown(&mut rx), Vec::<u32>::new());
}

/// The fleet bench's failure (bench/RESULTS.md, "The primary dies part-way"): a piece
/// revealed to a peer that did not ask in time goes to another; both then asked for it,
/// and the primary's first copy held it twice while other pieces reached no one.
#[test]
fn while_a_piece_reached_no_peer_a_piece_another_holds_waits() {
    let now = Instant::now();
    let mut s = seed(4);
    let mut a = join(&mut s, 1, now);
    let mut b = join(&mut s, 2, now);
    assert_eq!(shown(&mut a), vec![0, 1, 2, 3], "alone at first");
    assert!(request(&mut s, 1, 0, now));
    s.on_sent(peer(1), now);
    // a's reader is on piece 0: its other pieces go to b.
    assert_eq!(tick(&mut s, now + PENDING_TTL), 0);
    assert_eq!(shown(&mut b), vec![1, 2]);
    assert!(request(&mut s, 2, 1, now + PENDING_TTL));
    // a asks late for piece 1, which b is being sent; piece 3 has reached no one.
    let late = now + PENDING_TTL * 2;
    assert!(
        !request(&mut s, 1, 1, late),
        "piece 1 is out, piece 3 is not"
    );
    assert!(!request(&mut s, 1, 1, late), "every chunk of it waits");
    assert!(
        request(&mut s, 1, 2, late),
        "piece 2 reached no one: served"
    );
    assert!(s.tick(late).1.is_empty());
    // The last piece is asked for; until it has gone out, a second copy of it waits too.
    assert!(request(&mut s, 2, 3, late));
    assert!(s.tick(late).1.is_empty());
    assert!(!request(&mut s, 1, 3, late));
    // Everything owed goes out: the first copy is whole, the waits are over.
    s.on_sent(peer(1), late);
    s.on_sent(peer(2), late);
    s.on_sent(peer(2), late);
    assert_eq!(s.tick(late).1, vec![1, 1, 3]);
    assert!(
        request(&mut s, 2, 0, late),
        "nothing waits once the first copy is out"
    );
}

#[test]
fn a_connection_that_never_asks_is_revealed_nothing_more() {
    let now = Instant::now();
    let mut s = seed(12);
    let mut a = join(&mut s, 1, now);
    let mut b = join(&mut s, 2, now);
    assert_eq!(shown(&mut a), (0..8).collect::<Vec<_>>(), "alone at first");
    assert_eq!(shown(&mut b), vec![8, 9]);
    assert!(request(&mut s, 1, 0, now));
    s.on_sent(peer(1), now);
    s.on_interest(peer(1), false);
    s.on_interest(peer(2), false);
    // b asks for nothing: its pieces go to a, and b gets no others in their place.
    assert_eq!(tick(&mut s, now + PENDING_TTL), 0);
    assert_eq!(shown(&mut b), Vec::<u32>::new());
    assert!(request(&mut s, 1, 1, now + PENDING_TTL));
    assert_eq!(shown(&mut a), vec![8, 9]);
    // Once it asks (for a piece it was shown), it is revealed pieces again.
    assert!(request(&mut s, 2, 9, now + PENDING_TTL));
    assert_eq!(shown(&mut b), vec![2, 3]);
}

#[test]
fn a_deferred_request_is_served_when_waiting_no_longer_helps() {
    let now = Instant::now();
    let mut s = seed(6);
    let _a = join(&mut s, 1, now);
    let _b = join(&mut s, 2, now);
    let _c = join(&mut s, 3, now);
    for p in [0, 1, 2] {
        assert!(request(&mut s, 1, p, now));
    }
    assert!(!request(&mut s, 2, 0, now));
    assert!(!request(&mut s, 2, 1, now));
    assert!(!request(&mut s, 3, 2, now));
    // b got piece 1 from a: its request is dropped. a leaves: piece 0 is b's alone.
    s.on_have(peer(2), 1, now);
    s.leave(peer(1));
    // Nor does piece 2 have another holder now: c's request goes out too.
    assert_eq!(s.tick(now).1, vec![0, 2]);
    assert!(request(&mut s, 2, 3, now));
    assert!(!request(&mut s, 3, 3, now));
    assert!(s.tick(now + DEFER_MAX / 2).1.is_empty());
    assert_eq!(s.tick(now + DEFER_MAX).1, vec![3], "waited long enough");
}

#[test]
fn a_deferred_request_is_served_when_we_have_nothing_else_to_send() {
    let now = Instant::now();
    let mut s = seed(4);
    let _a = join(&mut s, 1, now);
    let _b = join(&mut s, 2, now);
    assert!(request(&mut s, 1, 0, now));
    assert!(!request(&mut s, 2, 0, now));
    assert!(s.tick(now).1.is_empty(), "a is still owed its chunk");
    s.on_sent(peer(1), now);
    assert_eq!(s.tick(now).1, vec![0], "else our uplink would idle");
}

#[test]
fn a_second_connection_of_the_same_client_is_refused() {
    let now = Instant::now();
    let mut s = seed(8);
    let _a = join(&mut s, 1, now);
    let twin = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 7000);
    let (tx, mut rx) = unbounded_channel();
    assert!(!s.join(twin, client(1), tx.clone(), now), "same peer id");
    assert_eq!(shown(&mut rx), Vec::<u32>::new());
    s.leave(peer(1));
    assert!(s.join(twin, client(1), tx, now), "the first is gone");
    assert_eq!(shown(&mut rx), (0..8).collect::<Vec<_>>());
}
