//! Spare request-extension maps, kept per thread.
//!
//! The first insert into an [`http::Extensions`] allocates its map twice (the box and the hash
//! table) before it boxes the value. The server inserts the client's address into every
//! request, and the HTTP/1 target client drops the map when the request is written: a few
//! hundred instructions per forwarded request for the same two allocations. So the client
//! hands the map back here, emptied, and the server takes it for the next request on the same
//! thread. Only empty maps are kept, at most [`KEEP`] per thread: nothing of one request
//! reaches another.

use std::cell::RefCell;

use http::Extensions;

/// Maps kept per thread, at most.
#[cfg_attr(not(feature = "hyper"), allow(dead_code))]
const KEEP: usize = 64;

thread_local! {
    static SPARE: RefCell<Vec<Extensions>> = const { RefCell::new(Vec::new()) };
}

/// An empty extension map: one handed back on this thread if there is one (its allocations
/// ready for the next insert), else a new one.
#[inline]
pub(crate) fn extensions() -> Extensions {
    SPARE
        .try_with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.pop()))
        .ok()
        .flatten()
        .unwrap_or_default()
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
    let _ = SPARE.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            if s.len() < KEEP {
                s.push(ext);
            }
        }
    });
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
    fn values_are_dropped_when_given_back() {
        use std::sync::Arc;
        let value = Arc::new(());
        let mut ext = Extensions::new();
        ext.insert(Arc::clone(&value));
        give_back(ext);
        assert_eq!(Arc::strong_count(&value), 1);
    }
}
