//! The bits of HTTP/1.1 that the server's codec and the target client's codec share.

use http::HeaderValue;

/// Fields whose places a codec records on the stack when it parses a head; more take an
/// allocation (zeroing room for the most a head may have cost more per request than
/// recording the fields).
pub(crate) const FEW_FIELDS: usize = 16;

/// Room for the places of `n` fields: the first `n` of `few`, or `many` grown to `n`.
#[inline]
pub(crate) fn places<'a, T: Copy + Default>(
    few: &'a mut [T; FEW_FIELDS],
    many: &'a mut Vec<T>,
    n: usize,
) -> &'a mut [T] {
    match few.get_mut(..n) {
        Some(few) => few,
        None => {
            many.resize(n, T::default());
            many
        }
    }
}

/// Writes one header line. Separators are pushed byte by byte: cheaper than a copy call each.
#[inline]
pub(crate) fn field(out: &mut Vec<u8>, name: &str, value: &HeaderValue) {
    out.extend_from_slice(name.as_bytes());
    out.push(b':');
    out.push(b' ');
    out.extend_from_slice(value.as_bytes());
    out.push(b'\r');
    out.push(b'\n');
}

/// Whether a `Connection` value lists `close`, and whether it lists `keep-alive`.
pub(crate) fn tokens(value: &[u8]) -> (bool, bool) {
    let (mut close, mut keep) = (false, false);
    for token in value.split(|&b| b == b',') {
        let token = token.trim_ascii();
        close |= token.eq_ignore_ascii_case(b"close");
        keep |= token.eq_ignore_ascii_case(b"keep-alive");
    }
    (close, keep)
}

/// `n` in decimal, written into the end of `buf`.
pub(crate) fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// A `Content-Length` value: one or more digits and nothing else (RFC 9110 §8.6), `None` for
/// anything else (a sign, a space, a list, a value past `u64::MAX`).
pub(crate) fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        let digit = u64::from(b.wrapping_sub(b'0'));
        if digit > 9 {
            return None;
        }
        n.checked_mul(10)?.checked_add(digit)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_in_decimal() {
        assert_eq!(decimal(0, &mut [0; 20]), b"0");
        assert_eq!(decimal(1234567890, &mut [0; 20]), b"1234567890");
        assert_eq!(
            decimal(u64::MAX, &mut [0; 20]),
            u64::MAX.to_string().as_bytes()
        );
        for n in [1, 9, 10, 99, 100, 65_536] {
            assert_eq!(content_length(decimal(n, &mut [0; 20])), Some(n));
        }
    }

    #[test]
    fn lengths_are_digits_only_and_never_overflow() {
        assert_eq!(content_length(b"0"), Some(0));
        assert_eq!(content_length(b"0042"), Some(42));
        assert_eq!(content_length(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"18446744073709551616",
            b"99999999999999999999999",
            b"+1",
            b"-1",
            b"1a",
            b"1 2",
            b" 1",
            b"1,1",
            b"0x10",
            b"\xff1",
        ] {
            assert_eq!(
                content_length(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn connection_tokens_are_found_in_any_case_and_spacing() {
        assert_eq!(tokens(b"close"), (true, false));
        assert_eq!(tokens(b"Keep-Alive , Upgrade"), (false, true));
        assert_eq!(tokens(b"upgrade,CLOSE"), (true, false));
        assert_eq!(tokens(b"closed, keep-alives"), (false, false));
        assert_eq!(tokens(b""), (false, false));
    }

    #[test]
    fn a_field_is_one_line() {
        let mut out = Vec::new();
        field(&mut out, "x-a", &HeaderValue::from_static("1 2"));
        assert_eq!(out, b"x-a: 1 2\r\n");
    }
}
