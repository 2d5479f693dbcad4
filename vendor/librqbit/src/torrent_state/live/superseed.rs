//! Super-seeding (after BEP 16), added for repofs: a seeder that is the first and only source
//! of a torrent, with many peers fetching it at once, hands each peer pieces that no other
//! peer holds or is being given, so that its upload stays close to one copy and the peers
//! trade the rest among themselves.
//!
//! The seeder sends no bitfield; it reveals pieces one HAVE at a time (on a channel the peer's
//! writer sends before anything else). Each peer is kept `PENDING` revealed pieces it has
//! not started to request; when it requests one, the next is revealed: the lowest piece that
//! no live peer holds and none has pending ("fresh"). What a peer holds is known from its
//! bitfield, its HAVEs and the pieces it requested from us. A piece whose holders all left is
//! fresh again, and so is one pending too long (a reader fetches only what it reads). A peer
//! that stays interested but neither requests nor reports a piece for a while wants something
//! it was not shown (a reader far into the file, or a piece whose holder stalls): it is shown
//! everything, and is from then on served like a peer of an ordinary seeder. That keeps every
//! read live, at the cost of sharing.
//!
//! A peer still owed chunks it requested is waiting on our uplink, not on a piece it was not
//! shown, so neither clock runs for it until we have sent them. Nor is a peer stuck while we
//! are still sending another peer a piece it lacks: it may be waiting for that peer to have
//! it (readers starting at once all want the first piece, revealed to one of them). Under load
//! (a busy host, a congested link) both waits take seconds, and showing everything to the
//! peers that waited made them fetch the rest from us (a fleet test saw 3.13 copies, not 1).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use librqbit_core::lengths::{Lengths, ValidPieceIndex};
use tokio::sync::mpsc::UnboundedSender;

use crate::type_aliases::PeerHandle;

/// Revealed pieces a peer has not started to request. Small: a peer's pending pieces are
/// designated to it, and others wait for it to fetch them. More for a peer alone: a reveal
/// reaches it behind the data queued for it, and with too few it would sit idle meanwhile
/// (measured: a mirror alone at 50 Mbit/s took 1.9 times as long as curl with 2).
const PENDING: usize = 2;
const PENDING_ALONE: usize = 8;
/// A pending piece the peer has not requested within this long stops being its alone (it is
/// fresh again for the next peer that asks): a reader fetches only what it reads, and a piece
/// pending at a peer whose reader is elsewhere would hold up every other reader that needs it.
const PENDING_TTL: Duration = Duration::from_secs(1);
/// How long an interested peer may go without requesting or reporting a piece before it is
/// shown everything: when it is the only peer (no one to share with; a reader's first read
/// waits this long), and when there are others (a piece may be on its way from one of them).
const IDLE_ALONE: Duration = Duration::from_millis(250);
const IDLE_SHARED: Duration = Duration::from_secs(2);
/// Request window offered to super-seeded peers (chunks of 16 KiB). A reveal reaches a peer
/// behind the data already queued for it, and every piece in a peer's queue waits for that
/// peer's share of the uplink: a short queue keeps the order in which pieces reach the swarm
/// close to the order readers need them.
pub(crate) const REQUEST_WINDOW: u32 = 64;

struct View {
    reveal: UnboundedSender<ValidPieceIndex>,
    has: Vec<bool>,
    shown: Vec<bool>,
    /// Revealed, not yet requested, and since when.
    pending: HashMap<u32, Instant>,
    /// Everything was revealed (the fallback).
    all: bool,
    interested: bool,
    /// Its last request or report of a piece, or when we last finished sending it all it
    /// asked for.
    active: Instant,
    /// The pieces of the chunks it requested that we have not sent yet, in request order
    /// (the order they go out).
    owed: VecDeque<u32>,
}

pub(crate) struct SuperSeed {
    lengths: Lengths,
    /// Live peers holding each piece, and live peers it is pending at.
    holders: Vec<u32>,
    pending: Vec<u32>,
    /// Chunks of each piece requested by live peers and not sent yet.
    in_flight: Vec<u32>,
    /// No piece below this is fresh.
    fresh_from: u32,
    peers: HashMap<PeerHandle, View>,
}

impl SuperSeed {
    pub fn new(lengths: Lengths) -> SuperSeed {
        let n = lengths.total_pieces() as usize;
        SuperSeed {
            lengths,
            holders: vec![0; n],
            pending: vec![0; n],
            in_flight: vec![0; n],
            fresh_from: 0,
            peers: HashMap::new(),
        }
    }

    /// A peer is live: reveal its first pieces.
    pub fn join(
        &mut self,
        peer: PeerHandle,
        reveal: UnboundedSender<ValidPieceIndex>,
        now: Instant,
    ) {
        let n = self.holders.len();
        if let Some(old) = self.peers.remove(&peer) {
            self.forget(old);
        }
        self.peers.insert(
            peer,
            View {
                reveal,
                has: vec![false; n],
                shown: vec![false; n],
                pending: HashMap::new(),
                all: false,
                interested: false,
                active: now,
                owed: VecDeque::new(),
            },
        );
        self.fill(peer, now);
    }

    pub fn leave(&mut self, peer: PeerHandle) {
        if let Some(v) = self.peers.remove(&peer) {
            self.forget(v);
        }
    }

    fn forget(&mut self, v: View) {
        for p in &v.owed {
            self.in_flight[*p as usize] -= 1;
        }
        for (i, has) in v.has.iter().enumerate() {
            if *has {
                self.holders[i] -= 1;
                self.maybe_fresh(i as u32);
            }
        }
        for p in v.pending.into_keys() {
            self.pending[p as usize] -= 1;
            self.maybe_fresh(p);
        }
    }

    fn maybe_fresh(&mut self, p: u32) {
        if self.holders[p as usize] == 0 && self.pending[p as usize] == 0 {
            self.fresh_from = self.fresh_from.min(p);
        }
    }

    pub fn on_bitfield(&mut self, peer: PeerHandle, has: impl Iterator<Item = usize>, now: Instant) {
        for p in has {
            self.mark_has(peer, p as u32, now);
        }
        self.fill(peer, now);
    }

    pub fn on_have(&mut self, peer: PeerHandle, piece: u32, now: Instant) {
        self.mark_has(peer, piece, now);
        self.fill(peer, now);
    }

    pub fn on_interest(&mut self, peer: PeerHandle, interested: bool) {
        if let Some(v) = self.peers.get_mut(&peer) {
            v.interested = interested;
        }
    }

    /// The peer requested a chunk of `piece`: it is getting it, a holder from now on (its
    /// first request of a pending piece reveals the next one).
    pub fn on_request(&mut self, peer: PeerHandle, piece: ValidPieceIndex, now: Instant) {
        if let Some(v) = self.peers.get_mut(&peer) {
            v.owed.push_back(piece.get());
            self.in_flight[piece.get_usize()] += 1;
        }
        self.mark_has(peer, piece.get(), now);
        self.fill(peer, now);
    }

    /// A chunk the peer requested went out. Once it is owed nothing, its clocks start: it is
    /// idle, and its pending pieces unrequested, only from then on.
    pub fn on_sent(&mut self, peer: PeerHandle, now: Instant) {
        let Some(v) = self.peers.get_mut(&peer) else {
            return;
        };
        if let Some(p) = v.owed.pop_front() {
            self.in_flight[p as usize] -= 1;
        }
        if v.owed.is_empty() {
            v.active = now;
            for at in v.pending.values_mut() {
                *at = now;
            }
        }
    }

    fn mark_has(&mut self, peer: PeerHandle, p: u32, now: Instant) {
        let Some(v) = self.peers.get_mut(&peer) else {
            return;
        };
        let Some(has) = v.has.get_mut(p as usize) else {
            return;
        };
        v.active = now;
        if !*has {
            *has = true;
            self.holders[p as usize] += 1;
        }
        if v.pending.remove(&p).is_some() {
            self.pending[p as usize] -= 1;
        }
    }

    /// Reveals fresh pieces to `peer` until it has its share pending (or none is left).
    fn fill(&mut self, peer: PeerHandle, now: Instant) {
        let want = match self.peers.len() {
            1 => PENDING_ALONE,
            _ => PENDING,
        };
        loop {
            let Some(v) = self.peers.get(&peer) else {
                return;
            };
            if v.all || v.pending.len() >= want {
                return;
            }
            let (has, shown) = (&v.has, &v.shown);
            let Some(p) = next_fresh(&self.holders, &self.pending, &mut self.fresh_from, |p| {
                !has[p] && !shown[p]
            }) else {
                return;
            };
            self.reveal(peer, p, Some(now));
        }
    }

    /// Shows `p` to `peer`; pending there since `designated`, if given.
    fn reveal(&mut self, peer: PeerHandle, p: u32, designated: Option<Instant>) {
        let Some(v) = self.peers.get_mut(&peer) else {
            return;
        };
        let Some(piece) = self.lengths.validate_piece_index(p) else {
            return;
        };
        v.shown[p as usize] = true;
        if let Some(at) = designated
            && v.pending.insert(p, at).is_none()
        {
            self.pending[p as usize] += 1;
        }
        // A closed channel: the peer is going away; `leave` follows.
        let _ = v.reveal.send(piece);
    }

    /// Lets go of pending pieces not requested in time (and shows what became fresh), and
    /// shows everything to peers that wait for what they were not shown (see the module doc).
    /// Returns how many peers were shown everything.
    pub fn tick(&mut self, now: Instant) -> usize {
        let mut expired = Vec::new();
        for v in self.peers.values_mut().filter(|v| v.owed.is_empty()) {
            v.pending.retain(|p, at| {
                let keep = now.duration_since(*at) < PENDING_TTL;
                if !keep {
                    expired.push(*p);
                }
                keep
            });
        }
        for p in expired {
            self.pending[p as usize] -= 1;
            self.maybe_fresh(p);
        }
        let peers: Vec<PeerHandle> = self.peers.keys().copied().collect();
        for peer in peers {
            self.fill(peer, now);
        }
        let idle = match self.peers.len() {
            0 | 1 => IDLE_ALONE,
            _ => IDLE_SHARED,
        };
        let stuck: Vec<PeerHandle> = self
            .peers
            .iter()
            .filter(|(_, v)| {
                !v.all
                    && v.interested
                    && v.owed.is_empty()
                    && now.duration_since(v.active) >= idle
                    && !self.sending_what_it_lacks(v)
            })
            .map(|(p, _)| *p)
            .collect();
        for peer in &stuck {
            self.show_all(*peer);
        }
        stuck.len()
    }

    /// Whether we are sending some peer a piece `v` lacks (it may be waiting for that peer).
    fn sending_what_it_lacks(&self, v: &View) -> bool {
        let lacks = |(f, has): (&u32, &bool)| *f > 0 && !has;
        self.in_flight.iter().zip(&v.has).any(lacks)
    }

    fn show_all(&mut self, peer: PeerHandle) {
        let Some(v) = self.peers.get_mut(&peer) else {
            return;
        };
        v.all = true;
        let hidden: Vec<u32> = (0..v.has.len())
            .filter(|&p| !v.has[p] && !v.shown[p])
            .map(|p| p as u32)
            .collect();
        for p in hidden {
            self.reveal(peer, p, None);
        }
    }
}

/// The lowest fresh piece (no live holder, pending at no live peer) that `ok` accepts;
/// `from` (no piece below it is fresh) moves up past the pieces that are not.
fn next_fresh(
    holders: &[u32],
    pending: &[u32],
    from: &mut u32,
    ok: impl Fn(usize) -> bool,
) -> Option<u32> {
    let fresh = |p: u32| holders[p as usize] == 0 && pending[p as usize] == 0;
    let n = holders.len() as u32;
    while *from < n && !fresh(*from) {
        *from += 1;
    }
    (*from..n).find(|&p| fresh(p) && ok(p as usize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

    const PIECE: u32 = 32 << 10;

    fn peer(id: u8) -> PeerHandle {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, id)), 6881)
    }

    fn seed(pieces: u32) -> SuperSeed {
        SuperSeed::new(Lengths::new(u64::from(pieces * PIECE), PIECE).unwrap())
    }

    fn shown(rx: &mut UnboundedReceiver<ValidPieceIndex>) -> Vec<u32> {
        let mut v = Vec::new();
        while let Ok(p) = rx.try_recv() {
            v.push(p.get());
        }
        v
    }

    fn join(s: &mut SuperSeed, id: u8, now: Instant) -> UnboundedReceiver<ValidPieceIndex> {
        let (tx, rx) = unbounded_channel();
        s.join(peer(id), tx, now);
        s.on_interest(peer(id), true);
        rx
    }

    fn request(s: &mut SuperSeed, id: u8, p: u32, now: Instant) {
        let piece = s.lengths.validate_piece_index(p).unwrap();
        s.on_request(peer(id), piece, now);
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
        assert_eq!(shown(&mut b), Vec::<u32>::new(), "a holds or has pending all");
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
        assert_eq!(s.tick(now + IDLE_ALONE / 2), 0);
        assert_eq!(s.tick(now + IDLE_ALONE), 1);
        assert_eq!(shown(&mut a), vec![8, 9, 10, 11]);
        // With others to share with it waits longer; a HAVE is progress.
        let mut b = join(&mut s, 2, now);
        let _ = shown(&mut b);
        s.on_have(peer(2), 0, now + IDLE_SHARED);
        assert_eq!(s.tick(now + IDLE_SHARED + IDLE_SHARED / 2), 0);
        assert_eq!(s.tick(now + IDLE_SHARED * 2), 1);
    }

    #[test]
    fn a_piece_not_requested_in_time_goes_to_the_next_peer_that_asks() {
        let now = Instant::now();
        let mut s = seed(4);
        let mut a = join(&mut s, 1, now);
        let mut b = join(&mut s, 2, now);
        assert_eq!(shown(&mut a), vec![0, 1, 2, 3]);
        assert_eq!(shown(&mut b), Vec::<u32>::new());
        assert_eq!(s.tick(now + PENDING_TTL / 2), 0);
        assert_eq!(shown(&mut b), Vec::<u32>::new());
        // a asked for none of its pieces in time: b is offered them, two at a time.
        assert_eq!(s.tick(now + PENDING_TTL), 0);
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
        assert_eq!(s.tick(late), 0, "waiting on us is not being stuck");
        assert_eq!(shown(&mut b), Vec::<u32>::new(), "a's pending stay a's");
        s.on_sent(peer(1), late);
        assert_eq!(s.tick(late + PENDING_TTL / 2), 0);
        s.on_sent(peer(1), late);
        // Owed nothing from `late` on: its clocks start there.
        assert_eq!(s.tick(late + PENDING_TTL / 2), 0);
        assert_eq!(shown(&mut b), Vec::<u32>::new());
        assert_eq!(s.tick(late + PENDING_TTL), 0);
        assert_eq!(shown(&mut b), vec![1, 2], "a let its pending pieces go");
        assert_eq!(s.tick(late + IDLE_SHARED), 1, "a is idle at last");
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
        assert_eq!(s.tick(late), 0, "b waits on a, which waits on us");
        assert!(!shown(&mut b).contains(&0));
        s.on_sent(peer(1), late);
        assert_eq!(s.tick(late + IDLE_SHARED), 1, "nothing b lacks on its way");
        assert!(shown(&mut b).contains(&0));
    }

    #[test]
    fn an_uninterested_peer_is_left_alone() {
        let now = Instant::now();
        let mut s = seed(6);
        let (tx, mut rx) = unbounded_channel();
        s.join(peer(1), tx, now);
        assert_eq!(shown(&mut rx), (0..6).collect::<Vec<_>>());
        assert_eq!(s.tick(now + IDLE_SHARED * 10), 0);
        assert_eq!(shown(&mut rx), Vec::<u32>::new());
    }
}
