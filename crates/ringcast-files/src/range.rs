//! The `Range` request header of RFC 9110 section 14, for the file server
//! (DESIGN section 6): players resume and seek with byte ranges, and a
//! resumed download must get exactly the bytes it asks for.
//!
//! Parsing is pure and bounded: at most [`MAX_RANGES`] range specs, numbers
//! that do not fit a `u64` saturate (so they are simply out of bounds), and
//! overlapping or adjacent ranges are coalesced so that a client cannot make
//! the server send more bytes than the file holds.

use std::ops::Range;

/// The most range specs one `Range` header may hold; a header with more is
/// treated as malformed (ignored, the whole file is sent once).
pub const MAX_RANGES: usize = 64;

/// Why a `Range` header yields no range to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// The header is well formed but no range overlaps the file: the answer
    /// is `416 Range Not Satisfiable` with `Content-Range: bytes */LEN`.
    #[error("no requested range overlaps the representation")]
    Unsatisfiable,
    /// The header is not a `bytes` range set this server accepts (another
    /// unit, bad syntax, `last < first`, too many ranges): RFC 9110 lets the
    /// server ignore it and answer `200` with the whole representation.
    #[error("the Range header is not a valid bytes range set")]
    Malformed,
}

/// One `range-spec` of a `bytes` range set, before it meets a length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `first-last`, both inclusive.
    FromTo(u64, u64),
    /// `first-`: from `first` to the end.
    From(u64),
    /// `-suffix`: the last `suffix` bytes.
    Suffix(u64),
}

impl RangeSpec {
    /// The byte range this spec selects in a representation of `len` bytes,
    /// or `None` when it is unsatisfiable there.
    pub fn resolve(self, len: u64) -> Option<Range<u64>> {
        match self {
            RangeSpec::FromTo(first, last) => (first < len).then(|| first..last.min(len - 1) + 1),
            RangeSpec::From(first) => (first < len).then_some(first..len),
            RangeSpec::Suffix(n) => (n > 0 && len > 0).then(|| len - n.min(len)..len),
        }
    }
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Parses `1*DIGIT`, saturating at `u64::MAX` (such a position is beyond any
/// file, which makes its range unsatisfiable rather than malformed).
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |acc, b| {
        acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

/// Parses a `Range` header value into its range specs, in the order given.
/// Whitespace around `=`, `,` and `-` and empty list elements are tolerated.
pub fn parse_specs(value: &str) -> Result<Vec<RangeSpec>, RangeError> {
    let value = value.trim_matches(is_ows);
    let (unit, set) = value.split_once('=').ok_or(RangeError::Malformed)?;
    if !unit.trim_matches(is_ows).eq_ignore_ascii_case("bytes") {
        return Err(RangeError::Malformed);
    }
    let mut specs = Vec::new();
    for element in set.split(',') {
        let element = element.trim_matches(is_ows);
        if element.is_empty() {
            continue;
        }
        if specs.len() == MAX_RANGES {
            return Err(RangeError::Malformed);
        }
        let (first, last) = element.split_once('-').ok_or(RangeError::Malformed)?;
        let (first, last) = (first.trim_matches(is_ows), last.trim_matches(is_ows));
        let spec = if first.is_empty() {
            RangeSpec::Suffix(digits(last).ok_or(RangeError::Malformed)?)
        } else {
            let first = digits(first).ok_or(RangeError::Malformed)?;
            if last.is_empty() {
                RangeSpec::From(first)
            } else {
                let last = digits(last).ok_or(RangeError::Malformed)?;
                if last < first {
                    return Err(RangeError::Malformed);
                }
                RangeSpec::FromTo(first, last)
            }
        };
        specs.push(spec);
    }
    if specs.is_empty() {
        return Err(RangeError::Malformed);
    }
    Ok(specs)
}

/// Parses a `Range` header value against a representation of `len` bytes:
/// the satisfiable ranges, non-empty, with overlapping or adjacent ones
/// merged (so their total never exceeds `len`), in the order in which their
/// first member appeared in the header.
pub fn parse_range(value: &str, len: u64) -> Result<Vec<Range<u64>>, RangeError> {
    let ranges: Vec<Range<u64>> = parse_specs(value)?
        .into_iter()
        .filter_map(|s| s.resolve(len))
        .collect();
    if ranges.is_empty() {
        return Err(RangeError::Unsatisfiable);
    }
    Ok(coalesce(ranges))
}

/// Merges overlapping and adjacent ranges; each merged range keeps the
/// position of its earliest member.
fn coalesce(ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|&i| (ranges[i].start, i));
    let mut merged: Vec<(usize, Range<u64>)> = Vec::with_capacity(ranges.len());
    for i in order {
        let r = ranges[i].clone();
        match merged.last_mut() {
            Some((first, m)) if r.start <= m.end => {
                m.end = m.end.max(r.end);
                *first = (*first).min(i);
            }
            _ => merged.push((i, r)),
        }
    }
    merged.sort_by_key(|(first, _)| *first);
    merged.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn single_ranges() {
        assert_eq!(parse_range("bytes=0-499", 1000), Ok(vec![0..500]));
        assert_eq!(parse_range("bytes=500-999", 1000), Ok(vec![500..1000]));
        assert_eq!(parse_range("bytes=500-5000", 1000), Ok(vec![500..1000]));
        assert_eq!(parse_range("bytes=900-", 1000), Ok(vec![900..1000]));
        assert_eq!(parse_range("bytes=-100", 1000), Ok(vec![900..1000]));
        assert_eq!(parse_range("bytes=-5000", 1000), Ok(vec![0..1000]));
        assert_eq!(parse_range("bytes=0-0", 1000), Ok(vec![0..1]));
        assert_eq!(parse_range("bytes=999-999", 1000), Ok(vec![999..1000]));
    }

    #[test]
    fn whitespace_case_and_empty_elements() {
        assert_eq!(
            parse_range("  Bytes = 0 - 9 ,, 20-29 ,\t-5 ", 100),
            Ok(vec![0..10, 20..30, 95..100])
        );
        assert_eq!(parse_range("BYTES=1-2,", 10), Ok(vec![1..3]));
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(
            parse_range("bytes=1000-", 1000),
            Err(RangeError::Unsatisfiable)
        );
        assert_eq!(
            parse_range("bytes=1000-2000,5000-", 1000),
            Err(RangeError::Unsatisfiable)
        );
        assert_eq!(
            parse_range("bytes=-0", 1000),
            Err(RangeError::Unsatisfiable)
        );
        assert_eq!(parse_range("bytes=0-", 0), Err(RangeError::Unsatisfiable));
        assert_eq!(parse_range("bytes=-10", 0), Err(RangeError::Unsatisfiable));
        assert_eq!(
            parse_range("bytes=99999999999999999999999-", 10),
            Err(RangeError::Unsatisfiable)
        );
        // One satisfiable range among unsatisfiable ones is enough.
        assert_eq!(parse_range("bytes=2000-,5-6", 1000), Ok(vec![5..7]));
    }

    #[test]
    fn huge_last_saturates() {
        assert_eq!(
            parse_range("bytes=3-99999999999999999999999999", 10),
            Ok(vec![3..10])
        );
    }

    #[test]
    fn malformed() {
        for v in [
            "",
            "bytes",
            "bytes=",
            "bytes=,",
            "items=0-1",
            "bytes=a-b",
            "bytes=5-4",
            "bytes=-",
            "bytes=1",
            "bytes=+1-2",
            "bytes=1-2-3",
            "bytes=0x10-",
            "bytes=--5",
            "bytes 0-1",
            "bytes=1--2",
            "bytes=½-",
        ] {
            assert_eq!(parse_range(v, 100), Err(RangeError::Malformed), "{v:?}");
        }
    }

    #[test]
    fn at_most_64_ranges() {
        let ok: Vec<String> = (0..64).map(|i| format!("{}-{}", i * 10, i * 10)).collect();
        assert_eq!(
            parse_range(&format!("bytes={}", ok.join(",")), 10_000)
                .unwrap()
                .len(),
            64
        );
        let too_many: Vec<String> = (0..65).map(|i| format!("{}-{}", i * 10, i * 10)).collect();
        assert_eq!(
            parse_range(&format!("bytes={}", too_many.join(",")), 10_000),
            Err(RangeError::Malformed)
        );
    }

    #[test]
    fn overlapping_and_adjacent_ranges_coalesce() {
        assert_eq!(parse_range("bytes=0-9,5-14", 100), Ok(vec![0..15]));
        assert_eq!(parse_range("bytes=0-9,10-19", 100), Ok(vec![0..20]));
        assert_eq!(parse_range("bytes=0-,0-,0-,0-,-100", 100), Ok(vec![0..100]));
        // Order of first appearance is kept for the parts that remain.
        assert_eq!(
            parse_range("bytes=50-59,0-9,55-70,5-6", 100),
            Ok(vec![50..71, 0..10])
        );
        assert_eq!(parse_range("bytes=30-39,0-9", 100), Ok(vec![30..40, 0..10]));
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(s in "\\PC{0,200}", len in 0u64..1_000_000) {
            let _ = parse_range(&s, len);
        }

        #[test]
        fn range_like_strings_stay_in_bounds(
            s in "(bytes|BYTES|x)? ?= ?([0-9]{0,4}-[0-9]{0,4} ?,? ?){0,8}",
            len in 0u64..20_000,
        ) {
            if let Ok(ranges) = parse_range(&s, len) {
                prop_assert!(!ranges.is_empty());
                let mut sorted = ranges.clone();
                sorted.sort_by_key(|r| r.start);
                let mut total = 0;
                for (i, r) in sorted.iter().enumerate() {
                    prop_assert!(r.start < r.end && r.end <= len);
                    if i > 0 {
                        prop_assert!(sorted[i - 1].end < r.start, "not coalesced: {:?}", sorted);
                    }
                    total += r.end - r.start;
                }
                prop_assert!(total <= len);
            }
        }
    }
}
