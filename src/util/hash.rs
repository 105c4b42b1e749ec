//! Stable, keyed hashing of explicit bytes for placement.
//!
//! SipHash-1-3 with a key derived from the configured seed: the same bytes and seed give the
//! same value in every process, on every platform, in every release of this crate (golden
//! vectors in the tests pin it). Never `std`'s `DefaultHasher`, whose output may change.

use std::hash::Hasher;

use siphasher::sip::SipHasher13;

/// The second half of the SipHash key: the ASCII bytes of `tower-lb`.
const DOMAIN: u64 = 0x746f_7765_722d_6c62;

/// Hashes `parts` (each length-prefixed, so `["ab", "c"]` and `["a", "bc"]` differ).
#[inline]
pub(crate) fn stable_hash(seed: u64, parts: &[&[u8]]) -> u64 {
    let mut h = SipHasher13::new_with_keys(seed, DOMAIN);
    for p in parts {
        h.write(&(p.len() as u64).to_le_bytes());
        h.write(p);
    }
    h.finish()
}

/// The number an id hashes as: std's `ThreadId` and tokio's task `Id` each hash one `u64`, the
/// number they count from (neither gives it out on stable Rust). Used only to spread ids over
/// slots: should an id ever hash otherwise, the bytes it writes still make a number, and ids
/// would only be spread differently.
pub(crate) fn id_number(id: &impl std::hash::Hash) -> u64 {
    struct Number(u64);
    impl Hasher for Number {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for &b in bytes {
                self.0 = self.0.rotate_left(8) ^ u64::from(b);
            }
        }
        fn write_u64(&mut self, n: u64) {
            self.0 = n;
        }
    }
    let mut number = Number(0);
    id.hash(&mut number);
    number.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids that hash one `u64` give that number; anything else still gives a number.
    #[test]
    fn an_id_s_number_is_what_it_hashes() {
        assert_eq!(id_number(&7u64), 7);
        assert_ne!(id_number(&"ab"), id_number(&"ba"));
    }

    #[test]
    fn golden_vectors() {
        // Pinned: changing these moves every key of every user.
        assert_eq!(stable_hash(0, &[]), 0xab7c_d0b4_62f5_4d02);
        assert_eq!(stable_hash(0, &[b"a"]), 0xa8ac_277b_1a54_8e74);
        assert_eq!(
            stable_hash(7, &[b"backend-1", &3u32.to_le_bytes()]),
            0x030c_8c6a_e1ab_5073
        );
        assert_ne!(
            stable_hash(0, &[b"ab", b"c"]),
            stable_hash(0, &[b"a", b"bc"])
        );
    }
}
