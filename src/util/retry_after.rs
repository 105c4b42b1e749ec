use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use http::header::RETRY_AFTER;

/// How long a response asks the client to wait, from its `Retry-After` header: either form of
/// RFC 9110 §10.2.3, delta-seconds (`120`) or an HTTP-date (`Wed, 21 Oct 2015 07:28:00 GMT`, and
/// the obsolete RFC 850 and asctime forms recipients must also accept). A date in the past means
/// no wait (`Duration::ZERO`); a missing or malformed header is `None`.
///
/// Used by retries (to wait before the next attempt) and by the failure-aware latency estimate.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use http::HeaderMap;
/// use tower_lb::upstream::retry_after;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("retry-after", "120".parse()?);
/// assert_eq!(retry_after(&headers), Some(Duration::from_secs(120)));
///
/// headers.insert("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT".parse()?);
/// assert_eq!(retry_after(&headers), Some(Duration::ZERO)); // long past
///
/// headers.insert("retry-after", "soon".parse()?);
/// assert_eq!(retry_after(&headers), None);
/// # Ok::<(), http::header::InvalidHeaderValue>(())
/// ```
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    retry_after_at(headers, SystemTime::now())
}

/// [`retry_after`] as seen at `now` (wall-clock time: an HTTP-date is wall-clock time too).
pub(crate) fn retry_after_at(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // Saturate absurdly long values rather than reject them; callers cap the wait anyway.
        return Some(Duration::from_secs(v.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let at = http_date(v)?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// Seconds since the Unix epoch of an HTTP-date in any of its three forms (IMF-fixdate,
/// RFC 850, asctime), parsed by `httpdate`, hyper's own parser; anything else (another zone,
/// a date before 1970, a weekday that does not match the date) is `None`.
fn http_date(s: &str) -> Option<u64> {
    let at = httpdate::parse_http_date(s).ok()?;
    Some(at.duration_since(UNIX_EPOCH).ok()?.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(v: &str, now_secs: u64) -> Option<Duration> {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, v.parse().unwrap());
        retry_after_at(&h, UNIX_EPOCH + Duration::from_secs(now_secs))
    }

    #[test]
    fn the_three_date_forms_agree() {
        // RFC 9110's example instant.
        assert_eq!(
            http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            http_date("Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(http_date("Sun Nov  6 08:49:37 1994"), Some(784_111_777));
        assert_eq!(http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            http_date("Tue, 29 Feb 2000 12:00:00 GMT"),
            Some(951_825_600)
        );
    }

    #[test]
    fn delay_is_relative_to_now() {
        assert_eq!(
            at("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_747),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            at("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_800),
            Some(Duration::ZERO)
        );
        assert_eq!(at(" 7 ", 0), Some(Duration::from_secs(7)));
        assert_eq!(
            at("99999999999999999999999", 0),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn garbage_is_none() {
        for v in [
            "",
            "-1",
            "1.5",
            "soon",
            "Sun, 06 Nov 1994 08:49:37 PST",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 06 Nov 1969 08:49:37 GMT",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
        ] {
            if v.is_empty() {
                assert_eq!(retry_after(&HeaderMap::new()), None);
            } else {
                assert_eq!(at(v, 0), None, "{v:?}");
            }
        }
    }
}
