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
//! Until every piece has reached some peer, the seeder's upload goes to pieces that have not:
//! a request for a piece another live peer holds or is being sent (a peer shown everything,
//! or one that asks late for a piece re-offered to another) waits (`DEFER_MAX` at most, less
//! once every piece is out, its holder left, the peer got it elsewhere, or we have nothing
//! else to send). Served at once, such requests took a fleet's first copy: a primary killed
//! after sending one package's worth left 8 of 64 pieces on no mirror (bench/RESULTS.md).
//!
//! A peer still owed chunks it requested is waiting on our uplink, not on a piece it was not
//! shown, so neither clock runs for it until we have sent them. Nor is a peer stuck while we
//! are still sending another peer a piece it lacks: it may be waiting for that peer to have
//! it (readers starting at once all want the first piece, revealed to one of them). Under load
//! (a busy host, a congested link) both waits take seconds, and showing everything to the
//! peers that waited made them fetch the rest from us (a fleet test saw 3.13 copies, not 1).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use librqbit_core::hash_id::Id20;
use librqbit_core::lengths::{Lengths, ValidPieceIndex};
use tokio::sync::mpsc::UnboundedSender;

use tracing::{debug, trace};

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
/// The longest a request for a piece another peer holds waits while some piece has reached
/// no peer: its holder is another mirror it can fetch it from (librqbit steals a piece in
/// flight from a slow peer), and a reader never waits longer than this on us.
const DEFER_MAX: Duration = Duration::from_secs(2);

/// A chunk request held back (`on_request`), with what it takes to send it later.
struct Deferred<R> {
    peer: PeerHandle,
    piece: u32,
    since: Instant,
    item: R,
}

struct View {
    id: Id20,
    reveal: UnboundedSender<ValidPieceIndex>,
    has: Vec<bool>,
    shown: Vec<bool>,
    /// Revealed, not yet requested, and since when.
    pending: HashMap<u32, Instant>,
    /// Everything was revealed (the fallback).
    all: bool,
    interested: bool,
    /// It has requested something, or never let a revealed piece go unrequested: it gets
    /// reveals. A connection that lets its first pieces expire unasked (a mirror's second
    /// connection to us: each side dials the other, and it asks on the other) would hold
    /// each new reveal a second before others got it; it is revealed nothing more until it
    /// asks for something (it is still shown everything when it waits).
    asks: bool,
    /// Its last request or report of a piece, or when we last finished sending it all it
    /// asked for.
    active: Instant,
    /// The pieces of the chunks it requested that we have not sent yet, in request order
    /// (the order they go out), and how many chunks it was ever served.
    owed: VecDeque<u32>,
    owed_ever: u64,
}

/// `R` is what the caller sends to serve a chunk request (a writer and its chunk in librqbit):
/// deferred requests are handed back to it when they are served.
pub(crate) struct SuperSeed<R> {
    lengths: Lengths,
    /// Live peers holding each piece (or being sent it), and live peers it is pending at.
    holders: Vec<u32>,
    /// Pieces no live peer holds (`holders` 0).
    uncovered: u32,
    pending: Vec<u32>,
    /// Chunks of each piece requested by live peers and not sent yet.
    in_flight: Vec<u32>,
    /// No piece below this is fresh.
    fresh_from: u32,
    peers: HashMap<PeerHandle, View>,
    deferred: Vec<Deferred<R>>,
    /// Chunks sent, and chunks served of pieces another peer held while some piece reached
    /// none (what the first copy lost to duplicates: in the log once every piece is out).
    chunks_sent: u64,
    early_duplicates: u64,
    /// See `first_copy_out`.
    out: bool,
}

impl<R> SuperSeed<R> {
    pub fn new(lengths: Lengths) -> SuperSeed<R> {
        let n = lengths.total_pieces() as usize;
        SuperSeed {
            lengths,
            uncovered: n as u32,
            holders: vec![0; n],
            pending: vec![0; n],
            in_flight: vec![0; n],
            fresh_from: 0,
            peers: HashMap::new(),
            deferred: Vec::new(),
            chunks_sent: 0,
            early_duplicates: 0,
            out: false,
        }
    }

    /// A peer is live: reveal its first pieces. False, and nothing done, if a live peer has
    /// the same peer id: each side dialled the other (a primary's tracker hands it every new
    /// mirror), and a second connection to one client is a second view of it here, which
    /// pieces were revealed to and which it never asked on (the client asks on the other),
    /// while the others waited for them (a fleet bench: 4 of 128 pieces on no mirror when the
    /// primary died, and everyone shown everything after 2 s when it held piece 0).
    pub fn join(
        &mut self,
        peer: PeerHandle,
        id: Id20,
        reveal: UnboundedSender<ValidPieceIndex>,
        now: Instant,
    ) -> bool {
        let n = self.holders.len();
        if let Some(old) = self.peers.remove(&peer) {
            self.forget(old);
        }
        if self.peers.values().any(|v| v.id == id) {
            return false;
        }
        self.peers.insert(
            peer,
            View {
                id,
                reveal,
                has: vec![false; n],
                shown: vec![false; n],
                pending: HashMap::new(),
                all: false,
                interested: false,
                asks: true,
                active: now,
                owed: VecDeque::new(),
                owed_ever: 0,
            },
        );
        self.fill(peer, now);
        true
    }

    pub fn leave(&mut self, peer: PeerHandle) {
        self.deferred.retain(|d| d.peer != peer);
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
                if self.holders[i] == 0 {
                    self.uncovered += 1;
                    self.out = false;
                }
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

    pub fn on_bitfield(
        &mut self,
        peer: PeerHandle,
        has: impl Iterator<Item = usize>,
        now: Instant,
    ) {
        for p in has {
            self.mark_has(peer, p as u32, now);
        }
        self.fill(peer, now);
    }

    pub fn on_have(&mut self, peer: PeerHandle, piece: u32, now: Instant) {
        // It got the piece elsewhere: what it asked us for of it is no longer wanted.
        self.deferred.retain(|d| d.peer != peer || d.piece != piece);
        self.mark_has(peer, piece, now);
        self.fill(peer, now);
    }

    pub fn on_interest(&mut self, peer: PeerHandle, interested: bool) {
        if let Some(v) = self.peers.get_mut(&peer) {
            v.interested = interested;
        }
    }

    /// The peer requested a chunk of `piece`: it is getting it, a holder from now on (its
    /// first request of a pending piece reveals the next one). Returns `item` to send now, or
    /// None if it is deferred (another peer holds the piece while some piece reached none):
    /// `tick` hands it back when it is to be sent.
    pub fn on_request(
        &mut self,
        peer: PeerHandle,
        piece: ValidPieceIndex,
        item: R,
        now: Instant,
    ) -> Option<R> {
        let p = piece.get();
        let first_copy_out = self.first_copy_out();
        let Some(v) = self.peers.get_mut(&peer) else {
            return Some(item);
        };
        v.asks = true;
        let getting = v.has.get(p as usize).copied().unwrap_or(true);
        if !getting && self.holders[p as usize] > 0 && !first_copy_out {
            v.active = now;
            if !self.deferred.iter().any(|d| d.peer == peer && d.piece == p) {
                let why = match (v.all, v.shown.get(p as usize).copied().unwrap_or(false)) {
                    (true, _) => "shown everything",
                    (false, true) => "revealed to it, and to another when it did not ask in time",
                    (false, false) => "never revealed to it",
                };
                debug!(
                    piece = p,
                    holders = self.holders[p as usize],
                    uncovered = self.uncovered,
                    why,
                    "super-seeding: deferred a request for a piece another peer holds"
                );
            }
            self.deferred.push(Deferred {
                peer,
                piece: p,
                since: now,
                item,
            });
            return None;
        }
        self.serve(peer, p, now);
        Some(item)
    }

    /// Every piece has reached a peer and gone out whole: no piece without a holder, and
    /// (once) no chunk requested of us left to send (written, that is: some may still be on
    /// the wire). It stays out until a piece loses its last holder.
    fn first_copy_out(&mut self) -> bool {
        if !self.out && self.uncovered == 0 && self.peers.values().all(|v| v.owed.is_empty()) {
            self.out = true;
        }
        self.out
    }

    fn serve(&mut self, peer: PeerHandle, p: u32, now: Instant) {
        if let Some(v) = self.peers.get_mut(&peer) {
            let getting = v.has.get(p as usize).copied().unwrap_or(true);
            if !getting && self.holders[p as usize] > 0 && self.uncovered > 0 {
                self.early_duplicates += 1;
            }
            v.owed.push_back(p);
            v.owed_ever += 1;
            self.in_flight[p as usize] += 1;
        }
        self.mark_has(peer, p, now);
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
        self.chunks_sent += 1;
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
            if self.holders[p as usize] == 1 {
                self.uncovered -= 1;
                if self.uncovered == 0 {
                    debug!(
                        chunks_sent = self.chunks_sent,
                        early_duplicates = self.early_duplicates,
                        chunks = self.lengths.total_chunks(),
                        "super-seeding: every piece reached a peer"
                    );
                }
            }
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
            if v.all || !v.asks || v.pending.len() >= want {
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

    /// Lets go of pending pieces not requested in time (and shows what became fresh), shows
    /// everything to peers that wait for what they were not shown (see the module doc), and
    /// serves the deferred requests whose wait is over. Returns how many peers were shown
    /// everything, and the requests to send now.
    pub fn tick(&mut self, now: Instant) -> (usize, Vec<R>) {
        let released = self.release(now);
        let mut expired = Vec::new();
        for v in self.peers.values_mut().filter(|v| v.owed.is_empty()) {
            let before = expired.len();
            v.pending.retain(|p, at| {
                let keep = now.duration_since(*at) < PENDING_TTL;
                if !keep {
                    expired.push(*p);
                }
                keep
            });
            if expired.len() > before && v.owed_ever == 0 {
                v.asks = false;
            }
        }
        for p in expired {
            trace!(
                piece = p,
                "super-seeding: a pending piece not requested in time"
            );
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
            .filter(|(p, v)| {
                !v.all
                    && v.interested
                    && v.owed.is_empty()
                    && !self.deferred.iter().any(|d| d.peer == **p)
                    && now.duration_since(v.active) >= idle
                    && !self.sending_what_it_lacks(v)
            })
            .map(|(p, _)| *p)
            .collect();
        for peer in &stuck {
            self.show_all(*peer);
        }
        (stuck.len(), released)
    }

    /// The deferred requests to serve now: all of them once we have nothing else to send;
    /// else those whose piece no other peer holds any longer, or that waited `DEFER_MAX`.
    fn release(&mut self, now: Instant) -> Vec<R> {
        if self.deferred.is_empty() {
            return Vec::new();
        }
        // Owing no one anything, we would idle.
        let all = self.first_copy_out() || self.peers.values().all(|v| v.owed.is_empty());
        let (go, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deferred)
            .into_iter()
            .partition(|d| {
                all || self.holders[d.piece as usize] == 0
                    || now.duration_since(d.since) >= DEFER_MAX
            });
        self.deferred = wait;
        go.into_iter()
            .map(|d| {
                self.serve(d.peer, d.piece, now);
                d.item
            })
            .collect()
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
}
