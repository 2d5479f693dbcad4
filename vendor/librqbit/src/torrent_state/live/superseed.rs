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
#[path = "superseed_tests.rs"]
mod tests;
