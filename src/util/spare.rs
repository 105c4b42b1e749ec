//! Spare request-extension maps and header maps, kept per thread.
//!
//! The first insert into an [`http::Extensions`] allocates its map twice (the box and the hash
//! table) before it boxes the value. The server inserts the client's address into every
//! request, and the HTTP/1 target client drops the map when the request is written: a few
//! hundred instructions per forwarded request for the same two allocations. So the client
//! hands the map back here, emptied, and the server takes it for the next request on the same
//! thread. Only empty maps are kept, at most [`KEEP`] per thread: nothing of one request
//! reaches another.
//!
//! Header maps go the same way: both codecs build a [`HeaderMap`] for every head they read
//! (two allocations each), and each map dies once its head is written on the other side. The
//! writer hands it back emptied ([`give_back_headers`]) and the next reader on the thread
//! fills it ([`header_map`]). A map grown past [`MAX_HEADERS`] fields is not kept.

use std::cell::RefCell;

use http::{Extensions, HeaderMap};

/// Maps kept per thread, at most.
#[cfg_attr(not(feature = "hyper"), allow(dead_code))]
const KEEP: usize = 64;

/// A header map with room for more fields than this is freed rather than kept.
#[cfg_attr(not(feature = "hyper"), allow(dead_code))]
const MAX_HEADERS: usize = 128;

thread_local! {
    static SPARE: RefCell<Vec<Extensions>> = const { RefCell::new(Vec::new()) };
    static HEADERS: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
}

/// A thread's list of spares of one kind (the maps here, the retry's copy heads, the
/// timeouts' timers).
pub(crate) type Spares<T> = std::thread::LocalKey<RefCell<Vec<T>>>;

/// The last spare kept in `spares` on this thread, if any (none while the thread ends).
#[inline]
pub(crate) fn take<T>(spares: &'static Spares<T>) -> Option<T> {
    spares
        .try_with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.pop()))
        .ok()
        .flatten()
}

/// Keeps `spare` in `spares` on this thread, unless `limit` are kept already (then it is
/// dropped).
#[inline]
pub(crate) fn keep<T>(spares: &'static Spares<T>, spare: T, limit: usize) {
    let _ = spares.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            if s.len() < limit {
                s.push(spare);
            }
        }
    });
}

/// An empty header map with room for `n` fields: one handed back on this thread if there is
/// one, else a new one.
#[inline]
#[cfg_attr(not(feature = "hyper"), allow(dead_code))]
pub(crate) fn header_map(n: usize) -> HeaderMap {
    match take(&HEADERS) {
        Some(mut map) => {
            // Empty, so this asks for `n` in all; a no-op unless `n` is larger than any head
            // the map held before.
            if map.try_reserve(n).is_err() {
                return HeaderMap::new();
            }
            map
        }
        None => HeaderMap::try_with_capacity(n).unwrap_or_default(),
    }
}

/// Empties `map` (dropping its names and values now) and keeps it for [`header_map`]. A map
/// with nothing allocated, or with room for more than [`MAX_HEADERS`] fields, is not kept.
#[inline]
#[cfg_attr(not(feature = "hyper"), allow(dead_code))]
pub(crate) fn give_back_headers(mut map: HeaderMap) {
    let room = map.capacity();
    if room == 0 || room > MAX_HEADERS {
        return;
    }
    map.clear();
    keep(&HEADERS, map, KEEP);
}

/// An empty extension map: one handed back on this thread if there is one (its allocations
/// ready for the next insert), else a new one.
#[inline]
pub(crate) fn extensions() -> Extensions {
    take(&SPARE).unwrap_or_default()
}

/// Empties `ext` (dropping its values now) and keeps the map for [`extensions`]. A map that
/// never held anything has nothing allocated and is not kept.
#[inline]
#[cfg_attr(not(feature = "hyper"), allow(dead_code))]
pub(crate) fn give_back(mut ext: Extensions) {
    if ext.is_empty() {
        return;
    }
    ext.clear();
    keep(&SPARE, ext, KEEP);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Mark(u32);

    #[test]
    fn a_map_given_back_comes_back_empty() {
        let mut ext = extensions();
        ext.insert(Mark(7));
        give_back(ext);
        let again = extensions();
        assert!(again.is_empty());
        assert_eq!(again.get::<Mark>(), None);
    }

    #[test]
    fn at_most_keep_maps_are_kept_and_empty_ones_never() {
        std::thread::spawn(|| {
            give_back(Extensions::new());
            assert_eq!(SPARE.with(|s| s.borrow().len()), 0);
            for i in 0..(KEEP as u32 + 10) {
                let mut ext = Extensions::new();
                ext.insert(Mark(i));
                give_back(ext);
            }
            assert_eq!(SPARE.with(|s| s.borrow().len()), KEEP);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_header_map_given_back_comes_back_empty_with_its_room() {
        std::thread::spawn(|| {
            let mut map = header_map(4);
            map.insert("x-secret", "1".parse().unwrap());
            map.append("x-secret", "2".parse().unwrap());
            let room = map.capacity();
            give_back_headers(map);
            let again = header_map(2);
            assert!(again.is_empty());
            assert_eq!(again.get("x-secret"), None);
            assert_eq!(again.capacity(), room, "the same map, not a new one");
            // Asked for more than it has room for: it grows.
            give_back_headers(again);
            let grown = header_map(room + 10);
            assert!(grown.capacity() >= room + 10);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn header_maps_are_kept_bounded_in_number_and_size() {
        std::thread::spawn(|| {
            give_back_headers(HeaderMap::new());
            assert_eq!(HEADERS.with(|s| s.borrow().len()), 0, "nothing allocated");
            give_back_headers(HeaderMap::with_capacity(MAX_HEADERS * 2));
            assert_eq!(HEADERS.with(|s| s.borrow().len()), 0, "too large");
            for _ in 0..KEEP + 10 {
                give_back_headers(HeaderMap::with_capacity(8));
            }
            assert_eq!(HEADERS.with(|s| s.borrow().len()), KEEP);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn values_are_dropped_when_given_back() {
        use std::sync::Arc;
        let value = Arc::new(());
        let mut ext = Extensions::new();
        ext.insert(Arc::clone(&value));
        give_back(ext);
        assert_eq!(Arc::strong_count(&value), 1);
    }
}
