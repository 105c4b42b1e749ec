//! The head of the retry layer's copy of a request, in a buffer reused from request to request.
//!
//! Everything a retry needs of a request but its body (method, target, version, header fields,
//! extensions) does not depend on the request's types, so it is kept in one [`Head`] that a
//! finished request leaves to the next one on the same thread (at most [`KEEP`] per thread):
//! in the steady state, taking a copy allocates nothing and clears no memory, where a box of
//! its own per request cost an allocation from the allocator's slow path (dozens of requests
//! are in flight at once, more than its per-thread cache holds) and zeroing its header buffer.
//! What does depend on the types (the body's replay, the reference to the policy and to the
//! service retries go through, the attempt count) is a few words in the response future
//! itself.

use std::cell::RefCell;

use bytes::Bytes;
use http::uri::{self, Authority, PathAndQuery, Scheme};
use http::{Extensions, Method, Request, Uri, Version};

use super::headers::HeaderCopy;
use crate::balance::WantServedBy;
use crate::key::ClientAddr;
use crate::util::spare;

/// Heads kept per thread for the next requests, at most.
const KEEP: usize = 64;

thread_local! {
    /// Heads of copies that are done with, emptied. Boxed: a head (mostly its header buffer)
    /// moves between this list and a request's future as a pointer, not as its bytes.
    #[allow(clippy::vec_box)]
    static SPARE: RefCell<Vec<Box<Head>>> = const { RefCell::new(Vec::new()) };
}

/// A request's head, as a retry needs it back.
pub(super) struct Head {
    method: Option<Method>,
    uri: UriCopy,
    version: Version,
    headers: HeaderCopy,
    extensions: Option<ExtensionsCopy>,
}

/// A [`Head`] taken from this thread's spares, given back (emptied) when dropped.
pub(super) struct PooledHead(Option<Box<Head>>);

impl PooledHead {
    /// The head of `req`; `None` if a header field is too long to copy (no retry then).
    #[inline]
    pub(super) fn of<B>(req: &Request<B>) -> Option<Self> {
        let spare = spare::take(&SPARE);
        let mut head = PooledHead(Some(spare.unwrap_or_else(|| {
            Box::new(Head {
                method: None,
                uri: UriCopy::empty(),
                version: Version::HTTP_11,
                headers: HeaderCopy::empty(),
                extensions: None,
            })
        })));
        head.fill(req).then_some(head)
    }

    /// Replaces what this head holds with the head of `req`; `false` if a header field is too
    /// long to copy.
    #[inline]
    pub(super) fn fill<B>(&mut self, req: &Request<B>) -> bool {
        let Some(head) = self.0.as_deref_mut() else {
            return false;
        };
        head.method = Some(req.method().clone());
        head.version = req.version();
        head.extensions = Some(ExtensionsCopy::of(req.extensions()));
        head.uri.fill(req.uri());
        head.headers.fill(req.headers())
    }

    /// A request with this head's method and version and `body`, without its target, header
    /// fields and extensions: [`restore`](Self::restore) adds those, once a retry is wanted.
    pub(super) fn request<B>(&mut self, body: B) -> Request<B> {
        let mut req = Request::new(body);
        if let Some(head) = self.0.as_deref_mut() {
            *req.method_mut() = head.method.take().unwrap_or_default();
            *req.version_mut() = head.version;
        }
        req
    }

    /// Puts the target, the header fields and the extensions back into `req` (built by
    /// [`request`](Self::request)); `false` if the target or a header field could not be
    /// rebuilt exactly (then `req` must not be sent).
    pub(super) fn restore<B>(&mut self, req: &mut Request<B>) -> bool {
        let Some(head) = self.0.as_deref_mut() else {
            return false;
        };
        let Some(uri) = head.uri.restore() else {
            return false;
        };
        *req.uri_mut() = uri;
        if let Some(extensions) = head.extensions.take() {
            extensions.restore(req.extensions_mut());
        }
        head.headers.restore(req.headers_mut())
    }
}

impl Drop for PooledHead {
    fn drop(&mut self) {
        let Some(mut head) = self.0.take() else {
            return;
        };
        // Nothing of this request reaches another: its values go now.
        head.method = None;
        head.uri.clear();
        head.extensions = None;
        head.headers.clear();
        spare::keep(&SPARE, head, KEEP);
    }
}

/// Bytes of a request target a copy keeps inline; a longer one goes to the heap.
const URI_INLINE: usize = 128;

/// A request's target as a retry needs it back: its scheme (a value, as it is one word for
/// `http` and `https`) and the bytes of its authority and path-and-query.
///
/// Bytes rather than a clone of the `Uri`: a target the server parsed shares the buffer the
/// head was read into, and a clone takes (and its drop gives back) a reference on that buffer
/// for each part, an atomic operation each way for every request; copying a short target is
/// cheaper. It is parsed again only when a retry is sent.
struct UriCopy {
    scheme: Option<Scheme>,
    /// Length of the authority at the start of the bytes; `None` when there is none.
    authority: Option<usize>,
    /// Whether a path-and-query follows the authority.
    path: bool,
    len: usize,
    inline: [u8; URI_INLINE],
    heap: Option<Box<[u8]>>,
}

impl UriCopy {
    fn empty() -> Self {
        UriCopy {
            scheme: None,
            authority: None,
            path: false,
            len: 0,
            inline: [0; URI_INLINE],
            heap: None,
        }
    }

    /// Replaces the copy with `uri`.
    #[inline]
    fn fill(&mut self, uri: &Uri) {
        let authority = uri.authority().map_or("", |a| a.as_str()).as_bytes();
        let path = uri.path_and_query().map_or("", |p| p.as_str()).as_bytes();
        self.scheme = uri.scheme().cloned();
        self.authority = uri.authority().map(|_| authority.len());
        self.path = uri.path_and_query().is_some();
        self.len = authority.len() + path.len();
        if let Some(buf) = self.inline.get_mut(..self.len) {
            let (a, p) = buf.split_at_mut(authority.len());
            a.copy_from_slice(authority);
            p.copy_from_slice(path);
            self.heap = None;
        } else {
            self.heap = Some([authority, path].concat().into_boxed_slice());
        }
    }

    /// Forgets the target (and a buffer on the heap).
    fn clear(&mut self) {
        self.scheme = None;
        self.authority = None;
        self.path = false;
        self.len = 0;
        self.heap = None;
    }

    /// The target again; `None` if it cannot be rebuilt exactly.
    fn restore(&self) -> Option<Uri> {
        let bytes = match &self.heap {
            Some(heap) => Bytes::copy_from_slice(heap),
            None => Bytes::copy_from_slice(self.inline.get(..self.len)?),
        };
        let at = self.authority.unwrap_or(0);
        let mut parts = uri::Parts::default();
        parts.scheme = self.scheme.clone();
        if self.authority.is_some() {
            parts.authority = Some(Authority::from_maybe_shared(bytes.slice(..at)).ok()?);
        }
        if self.path {
            parts.path_and_query = Some(PathAndQuery::from_maybe_shared(bytes.slice(at..)).ok()?);
        }
        Uri::from_parts(parts).ok()
    }
}

/// A request's extensions as a retry needs them back.
enum ExtensionsCopy {
    /// Nothing but this crate's plain values (see `balance::extensions::plain`), the common
    /// map: kept as values, so a request that is not retried builds, fills and empties no map
    /// for its copy.
    Plain(Option<ClientAddr>, bool),
    /// Anything else: the map, cloned.
    Map(Extensions),
}

impl ExtensionsCopy {
    #[inline]
    fn of(ext: &Extensions) -> Self {
        match crate::balance::extensions::plain(ext) {
            Some((addr, mark)) => ExtensionsCopy::Plain(addr, mark),
            None => ExtensionsCopy::Map(ext.clone()),
        }
    }

    /// Puts the extensions into `ext` (a copy's map, empty until now).
    fn restore(self, ext: &mut Extensions) {
        match self {
            ExtensionsCopy::Plain(addr, mark) => {
                if let Some(addr) = addr {
                    ext.insert(addr);
                }
                if mark {
                    ext.insert(WantServedBy);
                }
            }
            ExtensionsCopy::Map(map) => ext.extend(map),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request<()> {
        let mut req = Request::builder()
            .method(Method::PUT)
            .uri("/a?b=c")
            .version(Version::HTTP_10)
            .body(())
            .unwrap();
        *req.headers_mut() = super::super::headers::tests::sample();
        req.extensions_mut().insert(7u32);
        req
    }

    /// The copy comes back as the request was: method, target, version, every header field
    /// in order, extensions.
    #[test]
    fn a_copy_comes_back_whole() {
        let original = request();
        let mut head = PooledHead::of(&original).unwrap();
        let mut copy = head.request(());
        assert!(copy.headers().is_empty() && copy.extensions().is_empty());
        assert!(head.restore(&mut copy));
        assert_eq!(copy.method(), Method::PUT);
        assert_eq!(copy.uri(), "/a?b=c");
        assert_eq!(copy.version(), Version::HTTP_10);
        assert_eq!(copy.headers(), original.headers());
        assert_eq!(copy.extensions().get::<u32>(), Some(&7));
    }

    /// Every form of request target comes back as it was: origin, absolute (with a port and
    /// a query), authority (`CONNECT`), asterisk, and one too long to keep inline.
    #[test]
    fn every_form_of_target_comes_back_exactly() {
        let long = format!("/{}?q={}", "a".repeat(150), "b".repeat(150));
        let targets = [
            "/",
            "/a/b?c=d&e",
            "http://example.com:8080/x?y=1",
            "https://example.com/",
            "example.com:443",
            "*",
            long.as_str(),
            "ftp://h/p",
        ];
        for target in targets {
            let original = Request::builder().uri(target).body(()).unwrap();
            let mut head = PooledHead::of(&original).unwrap();
            let mut copy = head.request(());
            assert!(head.restore(&mut copy), "{target}");
            assert_eq!(copy.uri(), original.uri(), "{target}");
            assert_eq!(copy.uri().to_string(), original.uri().to_string());
        }
    }

    /// A head given back serves the next request on the thread holding nothing of the last
    /// one; at most `KEEP` are kept.
    #[test]
    fn heads_are_reused_empty_and_bounded() {
        std::thread::spawn(|| {
            let head = PooledHead::of(&request()).unwrap();
            let at: *const Head = &**head.0.as_ref().unwrap();
            drop(head);
            let kept = SPARE.with(|s| s.borrow().len());
            assert_eq!(kept, 1);
            {
                let spare = SPARE.with(|s| s.borrow_mut().pop()).unwrap();
                assert!(spare.method.is_none() && spare.uri.len == 0 && spare.uri.scheme.is_none());
                assert!(spare.extensions.is_none());
                assert!(std::ptr::eq(&*spare, at), "the same head");
                SPARE.with(|s| s.borrow_mut().push(spare));
            }
            let mut plain = Request::new(());
            plain
                .extensions_mut()
                .insert(ClientAddr("192.0.2.1:1".parse().unwrap()));
            let mut head = PooledHead::of(&plain).unwrap();
            let mut copy = head.request(());
            assert!(head.restore(&mut copy));
            assert!(copy.headers().is_empty(), "nothing of the last request");
            assert_eq!(copy.extensions().len(), 1);
            assert_eq!(copy.uri(), "/");
            drop(head);

            let heads: Vec<_> = (0..KEEP + 10)
                .map(|_| PooledHead::of(&request()).unwrap())
                .collect();
            drop(heads);
            assert_eq!(SPARE.with(|s| s.borrow().len()), KEEP);
        })
        .join()
        .unwrap();
    }
}
