//! The affinity token: what a sticky cookie or header carries.
//!
//! Layout (37 bytes, then base64url without padding, 50 characters):
//!
//! ```text
//! version (1) | expiry, Unix seconds, big-endian (8) | target tag (12) | MAC (16)
//! ```
//!
//! The target tag is `HMAC(key, "tid" | len(group) | group | target id)` cut to 12 bytes: it
//! names a (group, target) pair only to whoever holds the key, and the balancer finds the pair
//! by looking the tag up among the group's current targets. The MAC is
//! `HMAC(key, "mac" | the first 21 bytes)` cut to 16 bytes, compared in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub(crate) const VERSION: u8 = 1;
pub(crate) const TAG_LEN: usize = 12;
const MAC_LEN: usize = 16;
const SIGNED_LEN: usize = 1 + 8 + TAG_LEN;
pub(crate) const TOKEN_LEN: usize = SIGNED_LEN + MAC_LEN;
/// Base64url without padding of [`TOKEN_LEN`] bytes.
pub(crate) const ENCODED_LEN: usize = (TOKEN_LEN * 4).div_ceil(3);

/// A target tag: which (group, target) a token names, opaque without the key.
pub(crate) type Tag = [u8; TAG_LEN];

/// What a token says once its MAC has been checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Claims {
    pub(crate) expiry: u64,
    pub(crate) tag: Tag,
}

/// One secret, keyed once: a per-use clone of the keyed state costs no key schedule.
#[derive(Clone)]
pub(crate) struct Keyed {
    mac: HmacSha256,
}

impl std::fmt::Debug for Keyed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyed(<redacted>)")
    }
}

impl Keyed {
    pub(crate) fn new(secret: &[u8]) -> Keyed {
        Keyed {
            // HMAC takes a key of any length.
            mac: HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!()),
        }
    }

    /// The tag of `target` in `group` under this key.
    pub(crate) fn tag(&self, group: &str, target: &str) -> Tag {
        let mut mac = self.mac.clone();
        mac.update(b"tid");
        mac.update(&(group.len() as u64).to_be_bytes());
        mac.update(group.as_bytes());
        mac.update(target.as_bytes());
        let out = mac.finalize().into_bytes();
        let mut tag = [0; TAG_LEN];
        tag.copy_from_slice(&out[..TAG_LEN]);
        tag
    }

    /// A secret for another use, derived from this key: `HMAC(key, "key" | label)`, a domain
    /// of its own (tags start with `tid`, MACs with `mac`).
    pub(crate) fn derive(&self, label: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(b"key");
        mac.update(label);
        mac.finalize().into_bytes().into()
    }

    fn mac(&self, signed: &[u8]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(b"mac");
        mac.update(signed);
        mac
    }

    /// The token for `claims`, encoded.
    pub(crate) fn seal(&self, claims: &Claims) -> String {
        let mut raw = [0u8; TOKEN_LEN];
        raw[0] = VERSION;
        raw[1..9].copy_from_slice(&claims.expiry.to_be_bytes());
        raw[9..SIGNED_LEN].copy_from_slice(&claims.tag);
        let out = self.mac(&raw[..SIGNED_LEN]).finalize().into_bytes();
        raw[SIGNED_LEN..].copy_from_slice(&out[..MAC_LEN]);
        encode(&raw)
    }

    /// Whether the MAC of `raw` is this key's (constant time).
    pub(crate) fn verify(&self, raw: &[u8; TOKEN_LEN]) -> bool {
        self.mac(&raw[..SIGNED_LEN])
            .verify_truncated_left(&raw[SIGNED_LEN..])
            .is_ok()
    }
}

/// Decodes a token's bytes without checking its MAC: the version, the expiry and the tag, or
/// `None` if it is not a well-formed token of this version.
pub(crate) fn open(encoded: &[u8]) -> Option<([u8; TOKEN_LEN], Claims)> {
    let raw = decode(encoded)?;
    let claims = claims_of(raw[..SIGNED_LEN].try_into().ok()?)?;
    Some((raw, claims))
}

/// The claims of an encoded token of the right length, decoding only its signed part (the
/// first 28 characters) and checking nothing else: read before the MAC, so that a token that
/// could not be honoured anyway (expired, naming no current target) costs no MAC.
pub(crate) fn peek(encoded: &[u8]) -> Option<Claims> {
    if encoded.len() != ENCODED_LEN {
        return None;
    }
    let mut signed = [0u8; SIGNED_LEN];
    if decode_groups(&encoded[..SIGNED_LEN / 3 * 4], &mut signed) & 0x80 != 0 {
        return None;
    }
    claims_of(&signed)
}

fn claims_of(signed: &[u8; SIGNED_LEN]) -> Option<Claims> {
    if signed[0] != VERSION {
        return None;
    }
    let mut expiry = [0; 8];
    expiry.copy_from_slice(&signed[1..9]);
    let mut tag = [0; TAG_LEN];
    tag.copy_from_slice(&signed[9..SIGNED_LEN]);
    Some(Claims {
        expiry: u64::from_be_bytes(expiry),
        tag,
    })
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn encode(raw: &[u8; TOKEN_LEN]) -> String {
    let mut out = String::with_capacity(ENCODED_LEN);
    for chunk in raw.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for k in 0..chars {
            out.push(ALPHABET[(n >> (18 - 6 * k) & 63) as usize] as char);
        }
    }
    out
}

// `decode` and `peek` rely on this layout.
const _: () =
    assert!(TOKEN_LEN % 3 == 1 && ENCODED_LEN == TOKEN_LEN / 3 * 4 + 2 && SIGNED_LEN % 3 == 0);

/// Base64url values by byte; `0xff` for bytes outside the alphabet.
const DECODE: [u8; 256] = {
    let mut t = [0xff; 256];
    let mut i = 0;
    while i < 64 {
        t[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// Strict base64url decoding of exactly one token: the right length, the alphabet, and zero
/// unused bits in the last character (so each token has one spelling only). Branch-free over
/// the characters; one check at the end.
fn decode(encoded: &[u8]) -> Option<[u8; TOKEN_LEN]> {
    let e: &[u8; ENCODED_LEN] = encoded.try_into().ok()?;
    let mut raw = [0u8; TOKEN_LEN];
    let mut bad = decode_groups(&e[..ENCODED_LEN - 2], &mut raw[..TOKEN_LEN - 1]);
    // 37 = 12 × 3 + 1: the last byte is in two characters, the second with 4 unused bits.
    let (a, b) = (
        DECODE[usize::from(e[ENCODED_LEN - 2])],
        DECODE[usize::from(e[ENCODED_LEN - 1])],
    );
    bad |= a | b;
    raw[TOKEN_LEN - 1] = ((u32::from(a & 63) << 2) | (u32::from(b & 63) >> 4)) as u8;
    if bad & 0x80 != 0 || b & 0x0f != 0 {
        return None;
    }
    Some(raw)
}

/// Decodes whole groups of four characters into three bytes each (`out` is ¾ of `encoded`);
/// returns the OR of every character's table value, whose bit 7 is set if one was outside the
/// alphabet.
#[inline]
fn decode_groups(encoded: &[u8], out: &mut [u8]) -> u8 {
    let mut bad = 0u8;
    for (e, o) in encoded.chunks_exact(4).zip(out.chunks_exact_mut(3)) {
        let x = [
            DECODE[usize::from(e[0])],
            DECODE[usize::from(e[1])],
            DECODE[usize::from(e[2])],
            DECODE[usize::from(e[3])],
        ];
        bad |= x[0] | x[1] | x[2] | x[3];
        let n = (u32::from(x[0] & 63) << 18)
            | (u32::from(x[1] & 63) << 12)
            | (u32::from(x[2] & 63) << 6)
            | u32::from(x[3] & 63);
        o[0] = (n >> 16) as u8;
        o[1] = (n >> 8) as u8;
        o[2] = n as u8;
    }
    bad
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key() -> Keyed {
        Keyed::new(b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn encoded_length_and_alphabet() {
        let k = key();
        let t = k.seal(&Claims {
            expiry: u64::MAX,
            tag: [0xff; TAG_LEN],
        });
        assert_eq!(t.len(), ENCODED_LEN);
        assert_eq!(ENCODED_LEN, 50);
        assert!(
            t.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn tags_depend_on_key_group_and_target() {
        let a = key();
        let b = Keyed::new(b"another secret, also 32 bytes!!!");
        assert_ne!(a.tag("g", "t"), b.tag("g", "t"));
        assert_ne!(a.tag("g", "t"), a.tag("h", "t"));
        assert_ne!(a.tag("g", "t"), a.tag("g", "u"));
        // Length-prefixed: moving bytes between group and target changes the tag.
        assert_ne!(a.tag("ab", "c"), a.tag("a", "bc"));
        assert_eq!(a.tag("g", "t"), key().tag("g", "t"));
    }

    #[test]
    fn a_token_from_another_key_is_rejected() {
        let claims = Claims {
            expiry: 7,
            tag: [3; TAG_LEN],
        };
        let t = Keyed::new(b"another secret, also 32 bytes!!!").seal(&claims);
        let (raw, got) = open(t.as_bytes()).unwrap();
        assert_eq!(got, claims);
        assert!(!key().verify(&raw));
    }

    #[test]
    fn malformed_inputs_are_rejected() {
        let t = key().seal(&Claims {
            expiry: 1,
            tag: [1; TAG_LEN],
        });
        assert!(open(b"").is_none());
        assert!(open(&t.as_bytes()[..ENCODED_LEN - 1]).is_none());
        assert!(open(format!("{t}A").as_bytes()).is_none());
        let mut padded = t.clone().into_bytes();
        padded[10] = b'=';
        assert!(open(&padded).is_none());
        let mut plus = t.into_bytes();
        plus[3] = b'+';
        assert!(open(&plus).is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 256,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x7374_6963),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn decode_of_encode_is_identity(expiry: u64, tag: [u8; TAG_LEN]) {
            let k = key();
            let claims = Claims { expiry, tag };
            let t = k.seal(&claims);
            let (raw, got) = open(t.as_bytes()).expect("well formed");
            prop_assert_eq!(got, claims);
            prop_assert_eq!(peek(t.as_bytes()), Some(claims), "peek reads the same claims");
            prop_assert!(k.verify(&raw));
        }

        #[test]
        fn any_changed_byte_is_rejected(
            expiry: u64,
            tag: [u8; TAG_LEN],
            at in 0..ENCODED_LEN,
            to in prop_oneof![any::<u8>(), proptest::sample::select(ALPHABET.to_vec())],
        ) {
            let k = key();
            let t = k.seal(&Claims { expiry, tag }).into_bytes();
            prop_assume!(t[at] != to);
            let mut bad = t.clone();
            bad[at] = to;
            let accepted = open(&bad).is_some_and(|(raw, _)| k.verify(&raw));
            prop_assert!(!accepted, "changed byte {} to {:?}", at, to as char);
        }

        /// The same below the encoding: a token re-encoded after any change to its bytes
        /// (version, expiry, tag or MAC) is refused.
        #[test]
        fn any_changed_token_byte_is_rejected(
            expiry: u64,
            tag: [u8; TAG_LEN],
            at in 0..TOKEN_LEN,
            flip in 1..=255u8,
        ) {
            let k = key();
            let (mut raw, _) = open(k.seal(&Claims { expiry, tag }).as_bytes()).unwrap();
            raw[at] ^= flip;
            let accepted = open(encode(&raw).as_bytes()).is_some_and(|(raw, _)| k.verify(&raw));
            prop_assert!(!accepted, "changed token byte {}", at);
        }
    }
}
