//! Recently verified tokens, so that a session's every request pays neither for the MAC (two
//! SHA-256 blocks) nor for decoding its claims.
//!
//! A fixed table of slots, each holding the exact encoded bytes of one token that passed the
//! full check under the signing key, with what that check learnt (its expiry and where its
//! target sits in the tag table). A token is taken from the cache only if all of its bytes
//! equal a slot's (compared without an early exit); any other token, a forged one or one that
//! differs from a verified one in a single byte, goes through the full check. Nothing but a
//! verified token is ever written, so a client can fill slots only with tokens the layer
//! issued.
//!
//! The slot is chosen by bytes of the token's MAC, which is uniformly spread already (HMAC
//! output), mixed with a per-layer secret so that a client cannot tell which tokens share a
//! slot: no hashing of the token. A slot is overwritten by the next verified token that maps
//! to it, so the cache stays at its fixed size whatever the traffic.
//!
//! Slots are read and written without locks, as sequence locks over atomic words: a reader
//! that raced a writer sees the sequence change and treats the token as not cached.

use std::sync::atomic::{AtomicU64, Ordering, fence};

use super::codec::ENCODED_LEN;

/// Slots in the table (a power of two).
const SLOTS: usize = 1024;
/// 64-bit words holding one encoded token (the last one padded with zeros).
const WORDS: usize = ENCODED_LEN.div_ceil(8);
/// The word whose bytes pick the slot: characters 32 to 39, all of them the MAC's (it starts
/// at character 28).
const SLOT_WORD: usize = 4;
const _: () = assert!(SLOTS.is_power_of_two() && SLOT_WORD * 8 >= 28 && SLOT_WORD < WORDS - 1);

/// What the full check of a cached token found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The token's expiry, Unix seconds.
    pub(crate) expiry: u64,
    /// The tag table the index below points into.
    pub(crate) generation: u64,
    /// Where the token's target is in that table.
    pub(crate) index: u32,
}

/// A token as the cache reads it: its words and its slot.
pub(crate) struct Key {
    words: [u64; WORDS],
    slot: usize,
}

#[derive(Default)]
struct Slot {
    /// Even when the slot is stable, odd while it is written; zero until first written.
    seq: AtomicU64,
    token: [AtomicU64; WORDS],
    expiry: AtomicU64,
    generation: AtomicU64,
    index: AtomicU64,
}

pub(crate) struct Verified {
    secret: u64,
    slots: Box<[Slot]>,
}

impl Verified {
    /// An empty cache whose slots are picked under `secret`.
    pub(crate) fn new(secret: u64) -> Verified {
        Verified {
            secret,
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
        }
    }

    /// Reads `token` for [`get`](Self::get) and [`insert`](Self::insert).
    #[inline]
    pub(crate) fn key(&self, token: &[u8; ENCODED_LEN]) -> Key {
        let word = |i: usize| {
            let mut b = [0u8; 8];
            let end = (i * 8 + 8).min(ENCODED_LEN);
            b[..end - i * 8].copy_from_slice(&token[i * 8..end]);
            u64::from_le_bytes(b)
        };
        let words: [u64; WORDS] = std::array::from_fn(word);
        let mixed = (words[SLOT_WORD] ^ self.secret).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        Key {
            words,
            slot: (mixed >> (64 - SLOTS.trailing_zeros())) as usize,
        }
    }

    /// What the full check found for a token byte-identical to `key`'s, if one is cached.
    #[inline]
    pub(crate) fn get(&self, key: &Key) -> Option<Entry> {
        let s = &self.slots[key.slot];
        let seq = s.seq.load(Ordering::Acquire);
        // Odd: being written; zero: never written.
        let mut diff = (seq & 1) | u64::from(seq == 0);
        for (w, cached) in key.words.iter().zip(s.token.iter()) {
            diff |= w ^ cached.load(Ordering::Relaxed);
        }
        let entry = Entry {
            expiry: s.expiry.load(Ordering::Relaxed),
            generation: s.generation.load(Ordering::Relaxed),
            index: s.index.load(Ordering::Relaxed) as u32,
        };
        fence(Ordering::Acquire);
        if diff != 0 || s.seq.load(Ordering::Relaxed) != seq {
            return None;
        }
        Some(entry)
    }

    /// Records that the token of `key` passed the full check with `entry` (unless another
    /// thread is writing the same slot: then this one is simply not cached).
    pub(crate) fn insert(&self, key: &Key, entry: Entry) {
        let s = &self.slots[key.slot];
        let seq = s.seq.load(Ordering::Relaxed);
        if seq & 1 != 0
            || s.seq
                .compare_exchange(
                    seq,
                    seq.wrapping_add(1),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        fence(Ordering::Release);
        for (w, cached) in key.words.iter().zip(s.token.iter()) {
            cached.store(*w, Ordering::Relaxed);
        }
        s.expiry.store(entry.expiry, Ordering::Relaxed);
        s.generation.store(entry.generation, Ordering::Relaxed);
        s.index.store(u64::from(entry.index), Ordering::Relaxed);
        s.seq.store(seq.wrapping_add(2), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn token(fill: u8) -> [u8; ENCODED_LEN] {
        let mut t = [b'A'; ENCODED_LEN];
        for (i, b) in t.iter_mut().enumerate() {
            *b = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                [(i * 7 + usize::from(fill)) % 64];
        }
        t
    }

    const E: Entry = Entry {
        expiry: 99,
        generation: 3,
        index: 5,
    };

    #[test]
    fn a_cached_token_is_found_with_its_entry() {
        let v = Verified::new(0x1234);
        let t = token(1);
        assert_eq!(v.get(&v.key(&t)), None, "empty");
        v.insert(&v.key(&t), E);
        assert_eq!(v.get(&v.key(&t)), Some(E));
    }

    #[test]
    fn an_empty_slot_matches_no_token() {
        let v = Verified::new(0);
        // Not even bytes that equal an empty slot's words (zero; never a real token).
        assert_eq!(v.get(&v.key(&[0u8; ENCODED_LEN])), None);
        assert_eq!(v.get(&v.key(&token(2))), None);
    }

    #[test]
    fn the_slot_is_overwritten_by_the_next_token_there() {
        let v = Verified::new(7);
        let a = token(1);
        // Another token in the same slot: change the bytes that pick it.
        let slot = v.key(&a).slot;
        let b = (0..=u16::MAX)
            .map(|n| {
                let mut b = a;
                b[SLOT_WORD * 8..SLOT_WORD * 8 + 2].copy_from_slice(&n.to_le_bytes());
                b
            })
            .find(|b| *b != a && v.key(b).slot == slot)
            .unwrap();
        assert_eq!(v.key(&b).slot, slot, "found a token sharing the slot");
        v.insert(&v.key(&a), E);
        v.insert(&v.key(&b), Entry { index: 6, ..E });
        assert_eq!(v.get(&v.key(&a)), None, "evicted");
        assert_eq!(v.get(&v.key(&b)).map(|e| e.index), Some(6));
    }

    #[test]
    fn a_slot_being_written_reads_as_empty() {
        let v = Verified::new(0);
        let t = token(3);
        let k = v.key(&t);
        v.insert(&k, E);
        v.slots[k.slot].seq.fetch_add(1, Ordering::Relaxed);
        assert_eq!(v.get(&k), None, "odd sequence: a writer is in the slot");
        v.insert(&k, E);
        assert_eq!(v.get(&k), None, "a second writer backs off");
        v.slots[k.slot].seq.fetch_add(1, Ordering::Relaxed);
        assert_eq!(v.get(&k), Some(E));
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 512,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x7665_7269),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// A token differing from a cached one in any single byte is never found, whatever
        /// the byte becomes.
        #[test]
        fn one_changed_byte_is_never_a_hit(
            fill: u8,
            secret: u64,
            at in 0..ENCODED_LEN,
            to: u8,
        ) {
            let v = Verified::new(secret);
            let t = token(fill);
            prop_assume!(t[at] != to);
            v.insert(&v.key(&t), E);
            let mut bad = t;
            bad[at] = to;
            prop_assert_eq!(v.get(&v.key(&bad)), None);
            prop_assert_eq!(v.get(&v.key(&t)), Some(E));
        }
    }
}
