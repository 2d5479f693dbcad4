//! Inflated gzip spans and zstd frames, shared by every open file of every package: the
//! cache `content`'s readers go through, made only as far as reads reach, bounded in bytes,
//! with one background thread that fills the next span of a walk ahead of its reader.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::sync::wait_until;

/// How a span is made: `fill` appends its bytes to `out` until it holds at least `upto` of
/// them (or the whole span), and says whether the span is now whole. The cache keeps `out`
/// as it is between calls (never copied or reallocated), so a fill that decodes into it in
/// place (zstd's) can reserve the whole span on its first call and rely on that.
pub trait SpanFill: Send {
    fn fill(&mut self, out: &mut Vec<u8>, upto: usize) -> io::Result<bool>;
    /// Bytes the fill itself holds while kept with a span made in part (its decoder's
    /// state and buffers), counted against the cache's budget with the span.
    fn held(&self) -> usize;
}

/// Inflated gzip spans and zstd frames shared by every reader of every package, within a
/// byte budget; least recently used out.
///
/// A span is made only as far as reads have reached: a reader that needs bytes past what is
/// there continues the span's fill (the inflater or decoder kept with it) up to its read's
/// end. A cold read of a small file 40 % into its span thus costs 40 % of the span, and a walk
/// in archive order still inflates each byte once. A span being extended is `Filling`, so
/// a second reader waits for it instead of filling it again.
///
/// Locks: `worker` is taken before `inner` or a slot; `inner` and a slot are never held
/// together.
pub struct Spans {
    budget: u64,
    inner: Mutex<SpanLru>,
    /// The thread that fills spans ahead of their readers, once started, and whether it is
    /// at work (it takes a span only when idle).
    worker: Mutex<Option<std::sync::mpsc::Sender<Ahead>>>,
    busy: Arc<AtomicBool>,
}

/// A span for the background thread to fill whole; its slot is `Filling` until then.
struct Ahead {
    key: SpanKey,
    slot: Slot,
    start: Box<dyn FnOnce() -> io::Result<Box<dyn SpanFill>> + Send>,
}

/// Package and the span's (or frame's) first uncompressed offset.
pub type SpanKey = (i64, u64);
type SpanData = Arc<Vec<u8>>;
type Slot = Arc<SlotCell>;

/// How long a reader waits for another thread's fill of the same span. The fill's own reads
/// have deadlines (a mirror's fetch gives up after `read_timeout`), so this only bounds a
/// fill stuck elsewhere.
const FILL_WAIT: Duration = Duration::from_secs(120);

#[derive(Default)]
struct SlotCell {
    state: Mutex<SlotState>,
    changed: Condvar,
}

#[derive(Default)]
enum SlotState {
    #[default]
    Empty,
    /// A thread is making more of it.
    Filling,
    /// Made up to `out.len()`; the fill continues from there.
    Partial(Vec<u8>, Box<dyn SpanFill>),
    Ready(SpanData),
}

#[derive(Default)]
struct SpanLru {
    tick: u64,
    bytes: u64,
    /// Slot, the bytes it holds (its whole reserved room while partial), and when it was
    /// last used.
    map: HashMap<SpanKey, (Slot, u64, u64)>,
}

/// The part of `span` from `from` that fits in `buf`, copied; 0 past its end.
fn copy_out(span: &[u8], from: usize, buf: &mut [u8]) -> usize {
    let Some(have) = span.get(from..) else {
        return 0;
    };
    let n = have.len().min(buf.len());
    buf[..n].copy_from_slice(&have[..n]);
    n
}

/// The background thread is taken while this lives.
struct Busy(Arc<AtomicBool>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Spans {
    pub fn new(budget: u64) -> Spans {
        Spans {
            budget,
            inner: Mutex::new(SpanLru::default()),
            worker: Mutex::new(None),
            busy: Arc::default(),
        }
    }

    /// Fills the span at `key` whole on the background thread, unless it is held or that
    /// thread is busy. A walk in archive order then finds the next span ready while it
    /// handles this one: the inflation runs beside the reader's own work instead of between
    /// its requests. One long-lived thread, so its buffers come from one malloc arena.
    pub fn ahead(
        self: &Arc<Self>,
        key: SpanKey,
        start: impl FnOnce() -> io::Result<Box<dyn SpanFill>> + Send + 'static,
    ) {
        if crate::vfs::lock(&self.inner).map.contains_key(&key) {
            return;
        }
        if self
            .busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let busy = Busy(self.busy.clone());
        let mut worker = crate::vfs::lock(&self.worker);
        if worker.is_none() {
            let (tx, rx) = std::sync::mpsc::channel::<Ahead>();
            // The thread holds only a weak reference: it ends when the spans are dropped.
            let spans = Arc::downgrade(self);
            let spawned = std::thread::Builder::new()
                .name("span-ahead".into())
                .spawn(move || {
                    for job in rx {
                        let Some(spans) = spans.upgrade() else { return };
                        let _done = Busy(spans.busy.clone());
                        // A failed fill leaves the slot empty; the reader that needs the
                        // span meets the error itself.
                        let _ = spans.fill(
                            job.key,
                            &job.slot,
                            SlotState::Empty,
                            usize::MAX,
                            None,
                            job.start,
                        );
                    }
                });
            if spawned.is_err() {
                return;
            }
            *worker = Some(tx);
        }
        let Some(tx) = worker.as_ref() else { return };
        // Taken now, so that its reader waits for this fill instead of making its own.
        let slot = self.slot(key);
        {
            let mut state = crate::vfs::lock(&slot.state);
            if !matches!(*state, SlotState::Empty) {
                return;
            }
            *state = SlotState::Filling;
        }
        let job = Ahead {
            key,
            slot,
            start: Box::new(start),
        };
        match tx.send(job) {
            Ok(()) => std::mem::forget(busy),
            // The thread is gone: give the slot back.
            Err(std::sync::mpsc::SendError(job)) => {
                self.store(job.key, &job.slot, SlotState::Empty);
            }
        }
    }

    /// Bytes of spans held now (never above the budget, except the one span just filled when
    /// a single span is larger than the whole budget).
    pub fn held(&self) -> u64 {
        crate::vfs::lock(&self.inner).bytes
    }

    /// Whether some of the span at `key` is made.
    pub fn holds(&self, key: SpanKey) -> bool {
        crate::vfs::lock(&self.inner)
            .map
            .get(&key)
            .is_some_and(|e| e.1 > 0)
    }

    /// The slot of `key`, made if new, marked as used now.
    fn slot(&self, key: SpanKey) -> Slot {
        let mut lru = crate::vfs::lock(&self.inner);
        lru.tick += 1;
        let tick = lru.tick;
        let e = lru
            .map
            .entry(key)
            .or_insert_with(|| (Arc::default(), 0, tick));
        e.2 = tick;
        e.0.clone()
    }

    /// Reads `buf` from offset `from` of the span at `key`; 0 past its end. Bytes not made
    /// yet are made first, by the span's kept fill or by `start`'s.
    pub fn read(
        &self,
        key: SpanKey,
        from: usize,
        buf: &mut [u8],
        start: impl FnOnce() -> io::Result<Box<dyn SpanFill>>,
    ) -> io::Result<usize> {
        let slot = self.slot(key);
        let need = from.saturating_add(buf.len());
        self.extend(key, &slot, need, Some((from, buf)), start)
    }

    /// Makes the span in `slot` up to `need` bytes (or whole), then copies into `copy`'s
    /// buffer from its offset; how many bytes were copied.
    fn extend(
        &self,
        key: SpanKey,
        slot: &Slot,
        need: usize,
        copy: Option<(usize, &mut [u8])>,
        start: impl FnOnce() -> io::Result<Box<dyn SpanFill>>,
    ) -> io::Result<usize> {
        let deadline = std::time::Instant::now() + FILL_WAIT;
        let mut state = crate::vfs::lock(&slot.state);
        let taken = loop {
            match &*state {
                SlotState::Ready(d) => return Ok(copy.map_or(0, |(at, b)| copy_out(d, at, b))),
                SlotState::Partial(out, _) if out.len() >= need => {
                    return Ok(copy.map_or(0, |(at, b)| copy_out(out, at, b)))
                }
                SlotState::Filling => {
                    let what = "another reader's fill of this span took too long";
                    state = wait_until(&slot.changed, state, deadline, what)?;
                }
                SlotState::Empty | SlotState::Partial(..) => {
                    break std::mem::replace(&mut *state, SlotState::Filling)
                }
            }
        };
        drop(state);
        self.fill(key, slot, taken, need, copy, start)
    }

    /// Fills `slot`, which this thread has marked `Filling`, from what it held (`taken`).
    fn fill(
        &self,
        key: SpanKey,
        slot: &Slot,
        taken: SlotState,
        need: usize,
        copy: Option<(usize, &mut [u8])>,
        start: impl FnOnce() -> io::Result<Box<dyn SpanFill>>,
    ) -> io::Result<usize> {
        let (mut out, kept) = match taken {
            SlotState::Partial(out, filler) => (out, Some(filler)),
            _ => (Vec::new(), None),
        };
        let filled = kept.map_or_else(start, Ok).and_then(|mut filler| {
            let whole = filler.fill(&mut out, need)?;
            Ok((whole, filler))
        });
        let n = copy.map_or(0, |(at, b)| copy_out(&out, at, b));
        match filled {
            Ok((true, _)) => self.store(key, slot, SlotState::Ready(Arc::new(out))),
            Ok((false, filler)) => self.store(key, slot, SlotState::Partial(out, filler)),
            Err(e) => {
                self.store(key, slot, SlotState::Empty);
                return Err(e);
            }
        }
        Ok(n)
    }

    /// Puts `state` in `slot` after a fill, wakes its waiters, and accounts for it: an empty
    /// slot leaves the cache (the next reader tries again), a filled one may push the least
    /// recently used others out.
    fn store(&self, key: SpanKey, slot: &Slot, state: SlotState) {
        let size = match &state {
            SlotState::Ready(d) => d.len() as u64,
            SlotState::Partial(out, filler) => (out.capacity() + filler.held()) as u64,
            SlotState::Empty | SlotState::Filling => 0,
        };
        *crate::vfs::lock(&slot.state) = state;
        slot.changed.notify_all();
        let mut lru = crate::vfs::lock(&self.inner);
        let ours = lru.map.get(&key).is_some_and(|e| Arc::ptr_eq(&e.0, slot));
        if size == 0 {
            if ours {
                if let Some((_, old, _)) = lru.map.remove(&key) {
                    lru.bytes -= old;
                }
            }
            return;
        }
        lru.tick += 1;
        let tick = lru.tick;
        match lru.map.get_mut(&key) {
            Some(e) if ours => {
                let old = std::mem::replace(&mut e.1, size);
                lru.bytes = lru.bytes - old + size;
            }
            // Another fill's slot took the key; it accounts for itself.
            Some(_) => return,
            // Evicted while it was being made, or dropped when an earlier fill failed.
            None => {
                lru.map.insert(key, (slot.clone(), size, tick));
                lru.bytes += size;
            }
        }
        while lru.bytes > self.budget {
            let victim = lru
                .map
                .iter()
                .filter(|(k, e)| **k != key && e.1 > 0)
                .min_by_key(|(_, e)| e.2)
                .map(|(k, _)| *k);
            let Some(v) = victim else { break };
            if let Some((_, size, _)) = lru.map.remove(&v) {
                lru.bytes -= size;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fill from bytes at hand that records each `upto` it is asked for, and fails from
    /// call `fail_at` on.
    struct Given {
        bytes: Vec<u8>,
        calls: Arc<Mutex<Vec<usize>>>,
        fail_at: usize,
    }

    impl Given {
        fn boxed(bytes: &[u8], calls: &Arc<Mutex<Vec<usize>>>) -> Box<dyn SpanFill> {
            Box::new(Given {
                bytes: bytes.to_vec(),
                calls: calls.clone(),
                fail_at: usize::MAX,
            })
        }
    }

    impl SpanFill for Given {
        fn held(&self) -> usize {
            0
        }

        fn fill(&mut self, out: &mut Vec<u8>, upto: usize) -> io::Result<bool> {
            let mut calls = self.calls.lock().unwrap();
            calls.push(upto);
            if calls.len() > self.fail_at {
                return Err(io::Error::other("the disk said no"));
            }
            let end = upto.min(self.bytes.len()).max(out.len());
            out.extend_from_slice(&self.bytes[out.len()..end]);
            Ok(end == self.bytes.len())
        }
    }

    fn numbers(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    fn read(s: &Spans, key: u64, from: usize, len: usize, fill: &[u8]) -> Vec<u8> {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let mut buf = vec![0u8; len];
        let n = s.read((1, key), from, &mut buf, || Ok(Given::boxed(fill, &calls)));
        buf.truncate(n.unwrap());
        buf
    }

    #[test]
    fn spans_stay_within_budget_least_recently_used_out() {
        let s = Spans::new(10);
        read(&s, 0, 0, 4, &[0; 4]);
        read(&s, 1, 0, 4, &[1; 4]);
        assert_eq!(s.held(), 8);
        // A hit (its fill is not asked): 0 is now the most recently used.
        assert_eq!(read(&s, 0, 0, 4, &[9; 4]), vec![0; 4]);
        read(&s, 2, 0, 4, &[2; 4]); // 12 > 10: 1 goes
        assert_eq!(s.held(), 8);
        assert_eq!(read(&s, 0, 0, 4, &[9; 4]), vec![0; 4]);
        assert_eq!(
            read(&s, 1, 0, 4, &[5; 4]),
            vec![5; 4],
            "1 was evicted and made again"
        );
        // One span over the whole budget is kept while it is the one in use, alone.
        read(&s, 3, 0, 25, &[3; 25]);
        assert_eq!(s.held(), 25);
        read(&s, 4, 0, 1, &[4; 1]);
        assert_eq!(s.held(), 1);
    }

    #[test]
    fn a_cold_read_makes_only_its_own_bytes_and_later_reads_continue_the_fill() {
        let s = Spans::new(1 << 20);
        let bytes = numbers(1000);
        let calls = Arc::new(Mutex::new(Vec::new()));
        let mut starts = 0;
        let mut read_at = |from: usize, len: usize| {
            let mut buf = vec![0u8; len];
            let n = s.read((1, 0), from, &mut buf, || {
                starts += 1;
                Ok(Given::boxed(&bytes, &calls))
            });
            buf.truncate(n.unwrap());
            buf
        };
        assert_eq!(read_at(100, 10), bytes[100..110]);
        assert_eq!(read_at(0, 10), bytes[..10], "within what is made: no fill");
        assert_eq!(read_at(500, 10), bytes[500..510]);
        assert_eq!(read_at(990, 20), bytes[990..]);
        assert_eq!(read_at(2000, 20), b"", "past the span's end");
        assert_eq!(starts, 1, "one fill, continued");
        assert_eq!(*calls.lock().unwrap(), vec![110, 510, 1010]);
        assert_eq!(s.held(), 1000);
    }

    #[test]
    fn a_fill_that_fails_part_way_is_made_again_by_the_next_reader() {
        let s = Spans::new(1 << 20);
        let bytes = numbers(1000);
        let calls = Arc::new(Mutex::new(Vec::new()));
        let failing = Given {
            bytes: bytes.clone(),
            calls: calls.clone(),
            fail_at: 1,
        };
        let mut buf = [0u8; 10];
        let n = s.read((1, 0), 0, &mut buf, || Ok(Box::new(failing)));
        assert_eq!(n.unwrap(), 10);
        let err = s.read((1, 0), 500, &mut buf, || panic!("the kept fill goes on"));
        assert_eq!(err.unwrap_err().to_string(), "the disk said no");
        assert_eq!(s.held(), 0, "nothing is kept of a failed fill");
        assert_eq!(read(&s, 0, 500, 10, &bytes), bytes[500..510]);
    }

    #[test]
    fn concurrent_readers_of_one_span_fill_it_once() {
        let s = Arc::new(Spans::new(1 << 20));
        let starts = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (s, starts) = (s.clone(), starts.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 1000];
                    let n = s.read((7, 0), 0, &mut buf, || {
                        starts.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(50));
                        Ok(Given::boxed(&[42; 1000], &Arc::default()))
                    });
                    assert_eq!(n.unwrap(), 1000);
                    buf
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), [42; 1000]);
        }
        assert_eq!(starts.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_span_filled_ahead_is_not_filled_again_by_its_reader() {
        let s = Arc::new(Spans::new(1 << 20));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let c = calls.clone();
        s.ahead((3, 0), move || Ok(Given::boxed(&[7; 100], &c)));
        let mut buf = [0u8; 100];
        let n = s.read((3, 0), 0, &mut buf, || {
            Err(io::Error::other("filled twice"))
        });
        // The reader found the slot taken (or filled) by the background thread and waited.
        assert_eq!(n.unwrap(), 100);
        assert_eq!(buf, [7; 100]);
        assert_eq!(*calls.lock().unwrap(), vec![usize::MAX]);
    }
}
