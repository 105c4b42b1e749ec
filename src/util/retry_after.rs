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
/// use tower_lb::http::retry_after;
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

/// Seconds since the Unix epoch of an HTTP-date in any of its three forms.
fn http_date(s: &str) -> Option<u64> {
    let t: Vec<&str> = s.split_ascii_whitespace().collect();
    let (day, month, year, time) = match t.as_slice() {
        // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
        [wd, d, m, y, hms, "GMT"] if wd.ends_with(',') && y.len() == 4 => {
            (*d, *m, y.parse::<u64>().ok()?, *hms)
        }
        // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
        [wd, dmy, hms, "GMT"] if wd.ends_with(',') => {
            let mut p = dmy.split('-');
            let (d, m, yy) = (p.next()?, p.next()?, p.next()?);
            if p.next().is_some() || yy.len() != 2 {
                return None;
            }
            let yy: u64 = yy.parse().ok()?;
            // Two-digit years: 70–99 are 1970–1999, the rest 2000–2069.
            (d, m, if yy >= 70 { 1900 + yy } else { 2000 + yy }, *hms)
        }
        // asctime: Sun Nov  6 08:49:37 1994
        [_, m, d, hms, y] if y.len() == 4 => (*d, *m, y.parse::<u64>().ok()?, *hms),
        _ => return None,
    };
    let day: u64 = day.parse().ok().filter(|d| (1..=31).contains(d))?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|&m| m == month)? as u64
        + 1;
    let mut hms = time.split(':').map(|x| x.parse::<u64>().ok());
    let (h, mi, se) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() || h > 23 || mi > 59 || se > 60 || year < 1970 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + mi * 60 + se)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (year ≥ 1970).
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
