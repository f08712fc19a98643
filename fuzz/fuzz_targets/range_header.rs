//! The HTTP `Range` header parser: `ringcast_files::range::parse_range(value, len)`.
//!
//! Input: the first line is the representation length in decimal (anything
//! else there is folded into a number, so every length is reachable), the
//! rest is the header value. Checks: no panic; every returned range is
//! non-empty and within `0..len`; ranges are coalesced (no two overlap or
//! touch) so their total never exceeds `len`; at most `MAX_RANGES`; they cover
//! exactly the union of what the specs select, in the order of their first
//! member; `Unsatisfiable` only when no spec selects anything.

#![no_main]

use std::ops::Range;

use libfuzzer_sys::fuzz_target;
use ringcast_files::range::{parse_range, parse_specs, RangeError, MAX_RANGES};

fn length(line: &[u8]) -> u64 {
    match std::str::from_utf8(line).ok().and_then(|s| s.trim().parse::<u64>().ok()) {
        Some(n) => n,
        None => line
            .iter()
            .fold(0u64, |acc, b| acc.rotate_left(8) ^ u64::from(*b)),
    }
}

/// The union of `ranges` as sorted, disjoint, non-touching intervals.
fn union(mut ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    ranges.retain(|r| r.start < r.end);
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::new();
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let (first, rest) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let len = length(first);
    let Ok(value) = std::str::from_utf8(rest) else {
        return;
    };
    let result = parse_range(value, len);
    let specs = parse_specs(value);
    match result {
        Ok(ranges) => {
            let specs = specs.expect("parse_range accepted what parse_specs refuses");
            assert!(!ranges.is_empty());
            assert!(ranges.len() <= MAX_RANGES);
            let mut total: u64 = 0;
            for r in &ranges {
                assert!(r.start < r.end, "empty range {r:?} (len {len})");
                assert!(r.end <= len, "range {r:?} beyond len {len}");
                total = total.checked_add(r.end - r.start).expect("total overflows");
            }
            assert!(total <= len, "ranges {ranges:?} total {total} > len {len}");
            let mut sorted = ranges.clone();
            sorted.sort_by_key(|r| r.start);
            for w in sorted.windows(2) {
                assert!(w[0].end < w[1].start, "ranges {ranges:?} overlap or touch");
            }
            // The same bytes as the specs select.
            let selected: Vec<Range<u64>> = specs.iter().filter_map(|s| s.resolve(len)).collect();
            for r in &selected {
                assert!(r.start < r.end && r.end <= len, "spec resolves to {r:?} (len {len})");
            }
            assert_eq!(sorted, union(selected.clone()), "value {value:?} len {len}");
            // In the order of each merged range's first member.
            let firsts: Vec<usize> = ranges
                .iter()
                .map(|m| {
                    selected
                        .iter()
                        .position(|s| m.start <= s.start && s.end <= m.end)
                        .expect("every merged range holds a spec's range")
                })
                .collect();
            assert!(
                firsts.windows(2).all(|w| w[0] < w[1]),
                "ranges {ranges:?} out of header order for {value:?}"
            );
        }
        Err(RangeError::Unsatisfiable) => {
            let specs = specs.expect("Unsatisfiable but the specs do not parse");
            assert!(specs.iter().all(|s| s.resolve(len).is_none()));
        }
        Err(RangeError::Malformed) => {
            assert_eq!(specs, Err(RangeError::Malformed));
        }
    }
});
