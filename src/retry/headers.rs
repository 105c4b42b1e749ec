//! Request header fields copied as bytes, for the retry copy of a request.
//!
//! A retry needs the request's header fields again, but only when it happens. Cloning the
//! `HeaderMap` for every request would allocate twice (its entries and its index table) and
//! touch each value's reference count twice (clone, then drop); copying the fields as bytes
//! takes a `memcpy` per field into a buffer that is there anyway (see [`HeaderCopy`]), and the
//! fields are rebuilt only when a retry is granted.
//!
//! Layout per field: name length (`u16`), value length (`u32`), sensitive flag (`u8`), name,
//! value.

use std::fmt;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Request};

const FIELD_HEAD: usize = 2 + 4 + 1;

/// Bytes a retry copy holds inline: the fields of a typical request fit, so the copy takes no
/// allocation of its own; larger ones go to the heap.
const INLINE: usize = 512;

/// How many bytes [`encode`] writes for `headers`; `None` if a field is too long to encode.
pub(super) fn encoded_len(headers: &HeaderMap) -> Option<usize> {
    headers.iter().try_fold(0usize, |sum, (name, value)| {
        u16::try_from(name.as_str().len()).ok()?;
        u32::try_from(value.len()).ok()?;
        Some(sum + FIELD_HEAD + name.as_str().len() + value.len())
    })
}

/// Writes `headers` into `out`; the bytes written, or `None` if they do not fit (or a field is
/// too long to encode).
#[inline]
pub(super) fn encode(headers: &HeaderMap, out: &mut [u8]) -> Option<usize> {
    let mut at = 0;
    for (name, value) in headers {
        let sensitive = value.is_sensitive();
        let (name, value) = (name.as_str().as_bytes(), value.as_bytes());
        let end = at + FIELD_HEAD + name.len() + value.len();
        let field = out.get_mut(at..end)?;
        let (head, rest) = field.split_at_mut(FIELD_HEAD);
        head[..2].copy_from_slice(&u16::try_from(name.len()).ok()?.to_le_bytes());
        head[2..6].copy_from_slice(&u32::try_from(value.len()).ok()?.to_le_bytes());
        head[6] = u8::from(sensitive);
        let (n, v) = rest.split_at_mut(name.len());
        n.copy_from_slice(name);
        v.copy_from_slice(value);
        at = end;
    }
    Some(at)
}

/// Appends the fields encoded in `buf` to `headers`; `false` if one could not be rebuilt
/// exactly (then nothing is appended).
pub(super) fn decode(buf: Bytes, headers: &mut HeaderMap) -> bool {
    let mut fields = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let Some(field) = field(&buf, at) else {
            return false;
        };
        at = field.0;
        fields.push((field.1, field.2));
    }
    headers.reserve(fields.len());
    for (name, value) in fields {
        headers.append(name, value);
    }
    true
}

/// The field at `at`: where the next one starts, its name and value.
fn field(buf: &Bytes, at: usize) -> Option<(usize, HeaderName, HeaderValue)> {
    let head = buf.get(at..at + FIELD_HEAD)?;
    let name_len = usize::from(u16::from_le_bytes([head[0], head[1]]));
    let value_len = u32::from_le_bytes([head[2], head[3], head[4], head[5]]) as usize;
    let name_at = at + FIELD_HEAD;
    let value_at = name_at + name_len;
    let end = value_at + value_len;
    let name = HeaderName::from_bytes(buf.get(name_at..value_at)?).ok()?;
    if end > buf.len() {
        return None;
    }
    // A value built with `from_maybe_shared_unchecked` that would not pass validation cannot
    // be rebuilt: the caller then sends no retry rather than different bytes.
    let mut value = HeaderValue::from_maybe_shared(buf.slice(value_at..end)).ok()?;
    value.set_sensitive(head[6] != 0);
    Some((end, name, value))
}

/// A request's header fields encoded in place, up to [`INLINE`] bytes, else on the heap.
pub(crate) struct HeaderCopy {
    /// Bytes used of `inline`; unused when `heap` holds the fields.
    len: usize,
    inline: [u8; INLINE],
    heap: Option<Box<[u8]>>,
}

impl HeaderCopy {
    /// No fields.
    #[inline]
    pub(super) fn empty() -> Self {
        HeaderCopy {
            len: 0,
            inline: [0; INLINE],
            heap: None,
        }
    }

    /// Replaces the fields with `headers`; `false` if a field is too long to encode.
    #[inline]
    pub(super) fn fill(&mut self, headers: &HeaderMap) -> bool {
        self.heap = None;
        match encode(headers, &mut self.inline) {
            Some(len) => self.len = len,
            None => match to_heap(headers) {
                Some(heap) => self.heap = Some(heap),
                None => return false,
            },
        }
        true
    }

    /// Forgets the fields (and a buffer on the heap).
    #[inline]
    pub(super) fn clear(&mut self) {
        self.len = 0;
        self.heap = None;
    }

    /// Appends the fields to `headers` (see [`decode`]).
    pub(super) fn restore(&self, headers: &mut HeaderMap) -> bool {
        let bytes = match &self.heap {
            Some(heap) => Bytes::copy_from_slice(heap),
            None => Bytes::copy_from_slice(&self.inline[..self.len]),
        };
        decode(bytes, headers)
    }
}

/// A request's header fields copied as bytes into one buffer of their own, riding in the
/// extensions of a copy made through the [`Policy`](tower::retry::Policy) interface until
/// `retry` wants it sent (see [`hold`] and [`restore_held`]). Private: nothing but the policy
/// can see or insert it.
#[derive(Clone)]
struct HeldHeaders(Box<[u8]>);

impl fmt::Debug for HeldHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeldHeaders")
            .field("bytes", &self.0.len())
            .finish()
    }
}

/// Keeps `headers` with `copy`, as bytes in its extensions (none for no headers).
pub(super) fn hold<B>(copy: &mut Request<B>, headers: &HeaderMap) {
    if !headers.is_empty() {
        // A field too long to encode (over 4 GiB) leaves a copy without headers, which
        // `restore_held` then refuses to send.
        let held = HeldHeaders(to_heap(headers).unwrap_or_else(|| Box::new([0])));
        copy.extensions_mut().insert(held);
    }
}

/// Appends the headers [`hold`] kept (if any) to the copy's own and forgets them; `false` if
/// one could not be rebuilt exactly (then nothing is appended and the copy must not be sent).
pub(super) fn restore_held<B>(copy: &mut Request<B>) -> bool {
    match copy.extensions_mut().remove::<HeldHeaders>() {
        Some(held) => decode(Bytes::from(held.0), copy.headers_mut()),
        None => true,
    }
}

/// `headers` encoded into a buffer of their own.
pub(super) fn to_heap(headers: &HeaderMap) -> Option<Box<[u8]>> {
    let mut buf = vec![0; encoded_len(headers)?].into_boxed_slice();
    encode(headers, &mut buf)?;
    Some(buf)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Header lines a copy must keep exactly: repeated names, an empty value, a sensitive one
    /// and one with obs-text (shared with the body's tests).
    pub(in crate::retry) fn sample() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("example.com"));
        h.append("x-dup", HeaderValue::from_static("one"));
        h.append("x-dup", HeaderValue::from_static("two"));
        h.insert("x-empty", HeaderValue::from_static(""));
        let mut secret = HeaderValue::from_static("Bearer abc");
        secret.set_sensitive(true);
        h.insert("authorization", secret);
        h.insert("x-obs", HeaderValue::from_bytes(b"caf\xe9\tok").unwrap());
        h
    }

    fn pairs(m: &HeaderMap) -> Vec<(HeaderName, HeaderValue, bool)> {
        m.iter()
            .map(|(k, v)| (k.clone(), v.clone(), v.is_sensitive()))
            .collect()
    }

    /// Inline or on the heap, the fields come back in order, with their sensitivity.
    #[test]
    fn copies_come_back_exactly_inline_and_on_the_heap() {
        let small = sample();
        let mut large = sample();
        large.insert(
            "x-long",
            HeaderValue::from_str(&"v".repeat(70_000)).unwrap(),
        );
        for (h, on_heap) in [(small, false), (large, true)] {
            let mut copy = HeaderCopy::empty();
            assert!(copy.fill(&h));
            assert_eq!(copy.heap.is_some(), on_heap);
            let mut back = HeaderMap::new();
            assert!(copy.restore(&mut back));
            assert_eq!(pairs(&back), pairs(&h));
            assert!(back["authorization"].is_sensitive());
        }
    }

    #[test]
    fn exactly_full_inline_buffer_stays_inline() {
        let mut h = HeaderMap::new();
        let value = "x".repeat(INLINE - FIELD_HEAD - "x-fill".len());
        h.insert("x-fill", HeaderValue::from_str(&value).unwrap());
        let mut copy = HeaderCopy::empty();
        assert!(copy.fill(&h));
        assert!(copy.heap.is_none());
        assert_eq!(copy.len, INLINE);
        h.insert("a", HeaderValue::from_static(""));
        assert!(copy.fill(&h));
        assert!(copy.heap.is_some());
        // Refilled with fewer fields: back inline, and only those come back.
        h.remove("x-fill");
        assert!(copy.fill(&h));
        assert!(copy.heap.is_none());
        let mut back = HeaderMap::new();
        assert!(copy.restore(&mut back));
        assert_eq!(back, h);
    }

    /// Through the extensions of a copy: back exactly, once, and the extension is gone.
    #[test]
    fn held_headers_come_back_exactly() {
        let mut h = sample();
        h.insert(
            "x-long",
            HeaderValue::from_str(&"v".repeat(70_000)).unwrap(),
        );
        let mut copy = Request::new(());
        hold(&mut copy, &h);
        assert!(copy.headers().is_empty());
        assert!(restore_held(&mut copy));
        assert_eq!(
            pairs(copy.headers()),
            pairs(&h),
            "same order, same sensitivity"
        );
        assert!(copy.extensions().get::<HeldHeaders>().is_none());
        // Held once: a second restore adds nothing.
        assert!(restore_held(&mut copy));
        assert_eq!(copy.headers().len(), h.len());
    }

    #[test]
    fn no_headers_hold_nothing() {
        let mut copy = Request::new(());
        hold(&mut copy, &HeaderMap::new());
        assert!(copy.extensions().is_empty());
        assert!(restore_held(&mut copy));
    }

    #[test]
    fn truncated_bytes_are_not_rebuilt() {
        let buf = to_heap(&sample()).unwrap();
        let mut back = HeaderMap::new();
        assert!(!decode(
            Bytes::copy_from_slice(&buf[..buf.len() - 1]),
            &mut back
        ));
        assert!(back.is_empty(), "nothing appended");
    }
}
