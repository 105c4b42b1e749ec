//! The body of the admin endpoint's responses: one buffer, sent in one frame.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// The body of an [`Admin`](super::Admin) response: a complete buffer, sent as one frame.
///
/// # Examples
///
/// ```
/// use http_body::Body;
/// use tower_lb::admin::AdminBody;
///
/// let body = AdminBody::from("ok");
/// assert_eq!(body.size_hint().exact(), Some(2));
/// assert!(AdminBody::empty().is_end_stream());
/// ```
#[derive(Debug, Clone, Default)]
pub struct AdminBody {
    data: Option<Bytes>,
}

impl AdminBody {
    /// An empty body (`HEAD` responses).
    pub fn empty() -> Self {
        AdminBody { data: None }
    }
}

impl From<Bytes> for AdminBody {
    fn from(b: Bytes) -> Self {
        AdminBody {
            data: (!b.is_empty()).then_some(b),
        }
    }
}

impl From<String> for AdminBody {
    fn from(s: String) -> Self {
        Bytes::from(s).into()
    }
}

impl From<&'static str> for AdminBody {
    fn from(s: &'static str) -> Self {
        Bytes::from_static(s.as_bytes()).into()
    }
}

impl Body for AdminBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().data.take().map(|d| Ok(Frame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}
