//! The counters a pick reads (status bits and requests in flight) and the request count, for
//! every target of a group, in dense fixed-size chunks.
//!
//! Why: a power-of-two-choices pick reads two random targets. With each target's live state in
//! its own allocation, every candidate costs a cache miss (and often a TLB miss) on a large
//! group; here what a pick needs is one word, read with one load, 8 bytes from the next
//! target's: 10 000 targets take 80 KB, which stays in a core's second-level cache. A dispatch
//! counts a request in flight and a request in total with one compare-and-swap on the same
//! word, and releases it with one subtraction, without reading the target's entry or state.
//! Chunks never move (a group grows by adding chunks), so the counters survive every snapshot
//! and every request in flight can release into them.
//!
//! A slot belongs to one [`TargetState`](super::TargetState) and returns to its pool when that
//! state is dropped, that is when no snapshot and no request refers to the target any more.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::snapshot::Entry;
use super::status::Status;

/// Targets per chunk.
pub(crate) const CHUNK: usize = 1024;

/// Bits of [`Hot`]'s word that count requests in flight; the status bits sit above them.
pub(crate) const IN_FLIGHT_MASK: u32 = (1 << STATUS_SHIFT) - 1;
/// Where the status bits start. 24 bits of count allow 16 777 215 requests in flight to one
/// target (a target at that count takes no more); 8 bits of status hold every flag.
pub(crate) const STATUS_SHIFT: u32 = 24;

/// One request in the request count (the high 32 bits of [`Hot`]'s word).
pub(crate) const REQUEST: u64 = 1 << 32;

/// The live word of one target: requests in flight (bits 0–23), the status bits (24–31: the
/// bit set of reasons the target must not be picked; 0 means available) and the number of
/// requests ever sent, modulo 2³² (32–63; the target's state keeps the wraps).
#[derive(Debug, Default)]
pub(crate) struct Hot {
    pub(crate) word: AtomicU64,
}

/// What [`Hot::try_count`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquire {
    /// Counted.
    Done,
    /// Refused: the target has `max` requests in flight.
    Full,
    /// Not counted: the request count is about to wrap, which the target's state must see
    /// (see `state::acquire`).
    Wrap,
}

impl Hot {
    /// The word's step of an acquire (`state::acquire`, the one acquire path, is its only
    /// caller): counts one more request in flight and one more request, unless `max` (at most
    /// [`IN_FLIGHT_MASK`]) are in flight already or the request count would wrap.
    #[inline(always)]
    pub(crate) fn try_count(&self, max: u32) -> Acquire {
        // A compare-and-swap rather than an add: the count must never carry into the status.
        match self
            .word
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                (Hot::in_flight_of(w as u32) < max && w >> 32 != u64::from(u32::MAX))
                    .then(|| w + REQUEST + 1)
            }) {
            Ok(_) => Acquire::Done,
            Err(w) if Hot::in_flight_of(w as u32) >= max => Acquire::Full,
            Err(_) => Acquire::Wrap,
        }
    }

    /// Counts one request in flight fewer; returns the low half of the word before.
    #[inline(always)]
    pub(crate) fn release(&self) -> u32 {
        let prev = self.word.fetch_sub(1, Ordering::AcqRel) as u32;
        debug_assert!(Hot::in_flight_of(prev) > 0, "release without acquire");
        prev
    }

    /// The status bits of a word.
    #[inline(always)]
    pub(crate) fn status_of(word: u32) -> Status {
        Status::from_bits(word >> STATUS_SHIFT)
    }

    /// The requests in flight of a word.
    #[inline(always)]
    pub(crate) fn in_flight_of(word: u32) -> u32 {
        word & IN_FLIGHT_MASK
    }

    /// The low half of the word: status and requests in flight (what a pick reads).
    #[inline(always)]
    pub(crate) fn load(&self, order: Ordering) -> u32 {
        self.word.load(order) as u32
    }
}

pub(crate) type Chunk = Arc<[Hot]>;

fn new_chunk(len: usize) -> Chunk {
    (0..len).map(|_| Hot::default()).collect()
}

/// A group's slot allocator.
#[derive(Debug, Default)]
pub(crate) struct SlotPool {
    inner: Mutex<PoolInner>,
}

#[derive(Debug, Default)]
struct PoolInner {
    chunks: Vec<Chunk>,
    /// Freed slots: (chunk number, index).
    free: Vec<(u32, u32)>,
    /// Slots ever used in the last chunk.
    used: usize,
}

impl SlotPool {
    /// A pool whose first chunk holds at least `n` targets, so that a group built in one go
    /// has all its counters in one table.
    pub(crate) fn with_capacity(n: usize) -> Self {
        SlotPool {
            inner: Mutex::new(PoolInner {
                chunks: vec![new_chunk(n.max(CHUNK))],
                free: Vec::new(),
                used: 0,
            }),
        }
    }

    /// Takes a slot, zeroed. Off the request path (a target joining the group).
    pub(crate) fn alloc(self: &Arc<Self>) -> Slot {
        let mut p = crate::util::lock(&self.inner);
        let (c, index) = match p.free.pop() {
            Some(place) => place,
            None => {
                if p.chunks.last().is_none_or(|c| p.used == c.len()) {
                    p.chunks.push(new_chunk(CHUNK));
                    p.used = 0;
                }
                p.used += 1;
                ((p.chunks.len() - 1) as u32, (p.used - 1) as u32)
            }
        };
        let chunk = p.chunks[c as usize].clone();
        chunk[index as usize].word.store(0, Ordering::Relaxed);
        Slot {
            chunk,
            index,
            number: c,
            pool: Arc::downgrade(self),
        }
    }
}

/// One target's place in a pool (or a chunk of its own, for a state built outside a group).
#[derive(Debug)]
pub(crate) struct Slot {
    chunk: Chunk,
    index: u32,
    /// The chunk's number in its pool.
    number: u32,
    pool: Weak<SlotPool>,
}

impl Default for Slot {
    /// A slot outside any pool.
    fn default() -> Self {
        Slot {
            chunk: new_chunk(1),
            index: 0,
            number: 0,
            pool: Weak::new(),
        }
    }
}

impl Slot {
    #[inline]
    pub(crate) fn hot(&self) -> &Hot {
        &self.chunk[self.index as usize]
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            let mut p = crate::util::lock(&pool.inner);
            p.free.push((self.number, self.index));
        }
    }
}

/// A snapshot's view of its targets' slots: the chunks they live in, in a dense table.
#[derive(Debug, Default, Clone)]
pub(crate) struct LiveTable {
    chunks: Box<[Chunk]>,
    /// Every target `i` of the snapshot sits at index `i` of this one chunk (a group built in
    /// one go): its counters are found without reading its entry.
    dense: Option<Chunk>,
    /// Otherwise, when every target's counters sit in one chunk (a group that changed after
    /// it was built, up to a chunk's worth of targets): that chunk and each target's index in
    /// it, so a pick still reads one word per target rather than the target's entry.
    mapped: Option<(Chunk, Box<[u32]>)>,
}

impl LiveTable {
    /// Builds the table for `slots` (in snapshot order); returns it and, per target, the
    /// chunk number (here) and index within the chunk.
    pub(crate) fn build<'a>(slots: impl Iterator<Item = &'a Slot>) -> (LiveTable, Vec<(u32, u32)>) {
        let mut chunks: Vec<Chunk> = Vec::new();
        // Chunk address → its number here (states built outside a group each have their own).
        let mut numbers: HashMap<usize, u32> = HashMap::new();
        let mut places = Vec::with_capacity(slots.size_hint().0);
        let mut dense = true;
        let mut last: Option<(usize, u32)> = None;
        for (i, slot) in slots.enumerate() {
            let addr = Arc::as_ptr(&slot.chunk).cast::<Hot>() as usize;
            // Neighbours usually share a chunk: skip the map then.
            let c = match last {
                Some((a, c)) if a == addr => c,
                _ => *numbers.entry(addr).or_insert_with(|| {
                    chunks.push(slot.chunk.clone());
                    (chunks.len() - 1) as u32
                }),
            };
            last = Some((addr, c));
            dense &= c == 0 && slot.index as usize == i;
            places.push((c, slot.index));
        }
        let (dense, mapped) = match chunks.first() {
            Some(first) if dense => (Some(first.clone()), None),
            Some(first) if chunks.len() == 1 => {
                let map = places.iter().map(|&(_, index)| index).collect();
                (None, Some((first.clone(), map)))
            }
            _ => (None, None),
        };
        (
            LiveTable {
                chunks: chunks.into_boxed_slice(),
                dense,
                mapped,
            },
            places,
        )
    }

    /// The one chunk holding target `i` at index `i`, if there is one.
    #[cfg(test)]
    pub(crate) fn dense(&self) -> Option<&[Hot]> {
        self.dense.as_deref()
    }

    /// The one chunk holding every target, and target `i`'s index in it, if there is one
    /// (and the table is not [`dense`](Self::dense)).
    #[cfg(test)]
    pub(crate) fn mapped(&self) -> Option<(&[Hot], &[u32])> {
        self.mapped.as_ref().map(|(c, m)| (&c[..], &m[..]))
    }

    #[cfg(test)]
    pub(crate) fn at(&self, chunk: u32, index: u32) -> &Hot {
        &self.chunks[chunk as usize][index as usize]
    }

    /// What finding a word needs, borrowed once: a pick keeps it for all its lookups.
    #[inline(always)]
    pub(crate) fn words(&self) -> Words<'_> {
        Words {
            dense: self.dense.as_deref(),
            mapped: self.mapped.as_ref().map(|(c, m)| (&c[..], &m[..])),
            chunks: &self.chunks,
        }
    }

    /// Target `i`'s word: [`Words::hot`] (the one way to find it).
    #[inline(always)]
    pub(crate) fn hot<'a>(&'a self, i: usize, entries: &[Entry]) -> &'a Hot {
        self.words().hot(i, entries)
    }
}

/// A [`LiveTable`] borrowed for one pick or one release: the dense chunk, or the one mapped
/// chunk and its map, or every chunk.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Words<'a> {
    dense: Option<&'a [Hot]>,
    mapped: Option<(&'a [Hot], &'a [u32])>,
    chunks: &'a [Chunk],
}

impl<'a> Words<'a> {
    /// Target `i`'s word, `entries` being the snapshot's entries the table was built for:
    /// the one way the request path finds a target's counters (a pick through `Context`, an
    /// acquire through `Snapshot::try_acquire`, a release through the balancer's table). The
    /// entry is read only when the table is neither dense nor mapped.
    #[inline(always)]
    pub(crate) fn hot(self, i: usize, entries: &[Entry]) -> &'a Hot {
        if let Some(dense) = self.dense {
            return &dense[i];
        }
        if let Some((chunk, map)) = self.mapped {
            return &chunk[map[i] as usize];
        }
        let e = &entries[i];
        &self.chunks[e.chunk as usize][e.slot as usize]
    }

    /// The one chunk holding target `i` at index `i`, if there is one.
    #[inline(always)]
    pub(crate) fn dense(self) -> Option<&'a [Hot]> {
        self.dense
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_dense_reused_and_zeroed() {
        let pool = Arc::new(SlotPool::with_capacity(3));
        let slots: Vec<Slot> = (0..CHUNK + 3).map(|_| pool.alloc()).collect();
        assert_eq!(pool.inner.lock().unwrap().chunks.len(), 2);
        let (table, places) = LiveTable::build(slots[..CHUNK].iter());
        assert!(table.dense().is_some(), "one chunk, in order");
        assert_eq!(places[7], (0, 7));
        slots[5].hot().word.store(7, Ordering::Relaxed);
        assert_eq!(table.dense().unwrap()[5].load(Ordering::Relaxed), 7);
        assert_eq!(table.at(0, 5).load(Ordering::Relaxed), 7);
        let (table, places) = LiveTable::build(slots.iter());
        assert!(table.dense().is_none(), "two chunks");
        assert_eq!(places[CHUNK + 1], (1, 1));

        let mut slots = slots;
        drop(slots.remove(5));
        let again = pool.alloc();
        assert_eq!(
            (again.number, again.index),
            (0, 5),
            "a freed slot is reused"
        );
        assert_eq!(again.hot().load(Ordering::Relaxed), 0, "and zeroed");
        // Out of order now: not dense any more, but all in one chunk.
        slots.insert(0, again);
        slots[0].hot().word.store(9, Ordering::Relaxed);
        let (table, places) = LiveTable::build(slots[..10].iter());
        assert!(table.dense().is_none());
        assert_eq!(places[0], (0, 5));
        let (chunk, map) = table.mapped().unwrap();
        assert_eq!(map[..3], [5, 0, 1]);
        assert_eq!(chunk[map[0] as usize].load(Ordering::Relaxed), 9);
        assert!(
            LiveTable::build(slots.iter()).0.mapped().is_none(),
            "two chunks"
        );

        let big = Arc::new(SlotPool::with_capacity(3 * CHUNK));
        let slots: Vec<Slot> = (0..3 * CHUNK).map(|_| big.alloc()).collect();
        assert!(
            LiveTable::build(slots.iter()).0.dense().is_some(),
            "sized up front"
        );
    }

    #[test]
    fn slots_outside_a_pool_have_their_own_chunk() {
        let a = Slot::default();
        let b = Slot::default();
        let (table, places) = LiveTable::build([&a, &b].into_iter());
        assert!(table.dense().is_none());
        assert_eq!(places, vec![(0, 0), (1, 0)]);
        b.hot().word.store(3, Ordering::Relaxed);
        assert_eq!(table.at(1, 0).load(Ordering::Relaxed), 3);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "release without acquire")]
    fn a_release_without_an_acquire_is_caught_before_it_reaches_the_status() {
        let hot = Hot::default();
        hot.release();
    }

    #[test]
    fn a_release_leaves_the_status_alone() {
        let hot = Hot::default();
        hot.word
            .fetch_add(u64::from(0b101u32 << STATUS_SHIFT), Ordering::Relaxed);
        assert_eq!(hot.try_count(IN_FLIGHT_MASK), Acquire::Done);
        let prev = hot.release();
        assert_eq!(Hot::in_flight_of(prev), 1);
        let now = hot.load(Ordering::Relaxed);
        assert_eq!(
            (Hot::in_flight_of(now), Hot::status_of(now).bits()),
            (0, 0b101)
        );
    }
}
