//! Token-level edits of line-based text (the session TOML, feedback JSON lines): numbers
//! replaced by huge, negative, NaN and infinite ones, lines duplicated, dropped, swapped and
//! commented out, quotes dropped, `..` and absolute paths put inside strings, long values,
//! values swapped for words of the seeds. Byte edits (`mutate`) are mixed in by the caller.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::mutate::{below, insert_word, replace};

/// What a text number may become.
#[rustfmt::skip]
const NUMBERS: &[&[u8]] = &[
    b"0", b"-1", b"-0", b"0.0", b"1e400", b"-1e400", b"1e-400", b"nan", b"+nan", b"-nan",
    b"inf", b"+inf", b"-inf", b"NaN", b"Infinity", b"9223372036854775807",
    b"9223372036854775808", b"-9223372036854775809", b"18446744073709551615",
    b"18446744073709551616", b"4294967296", b"2147483648", b"65536", b"0x7fffffff", b"0o777",
    b"1_000", b"1__0", b"1.", b".5", b"1e", b"1.7976931348623157e308", b"5e-324", b"007",
    b"1979-05-27T07:32:00Z", b"true", b"null", b"\"1\"", b"[]", b"{}",
];

/// Paths a file name or a stimulus must never be allowed to escape with.
#[rustfmt::skip]
const PATHS: &[&[u8]] = &[
    b"..", b"../", b"../../etc/passwd", b"/etc/passwd", b"/", b"//", b"a/../../b.png",
    b"C:\\Windows\\win.ini", b"C:", b"\\\\server\\share\\x", b"~/x", b"%2e%2e/", b"nul:",
];

/// Bytes repeated into long values (brackets for nesting, an invalid UTF-8 byte, quotes).
const LONG_VALUE_BYTES: &[u8] = b"a9.\\\"[{ \n\xff";

/// One edit of `data`: `words` are what may be inserted, `max_len` bounds a long value.
pub(super) fn edit(data: &mut Vec<u8>, rng: &mut ChaCha8Rng, words: &[Vec<u8>], max_len: usize) {
    match rng.random_range(0..11u32) {
        0 | 1 => replace_number(data, rng),
        2 => {
            if let Some((start, end)) = pick_line(data, rng) {
                let line = data[start..end].to_vec();
                replace(data, end..end, line);
            }
        }
        3 => {
            if let Some((start, end)) = pick_line(data, rng) {
                data.drain(start..end);
            }
        }
        4 => swap_lines(data, rng),
        5 => {
            let quotes = positions_of(data, |b| b == b'"' || b == b'\'');
            if let Some(&at) = quotes.get(below(rng, quotes.len())) {
                data.remove(at);
            }
        }
        6 => {
            let path = PATHS[below(rng, PATHS.len())];
            let at = after_a_quote(data, rng);
            replace(data, at..at, path.iter().copied());
        }
        7 => insert_word(data, rng, words),
        8 => {
            if let Some((start, _)) = pick_line(data, rng) {
                if data.get(start) == Some(&b'#') {
                    data.remove(start);
                } else {
                    data.insert(start, b'#');
                }
            }
        }
        9 => {
            let byte = LONG_VALUE_BYTES[below(rng, LONG_VALUE_BYTES.len())];
            let room = max_len.saturating_sub(data.len());
            let n = (1usize << rng.random_range(4..17u32)).min(room);
            let at = after_a_quote(data, rng);
            replace(data, at..at, std::iter::repeat_n(byte, n));
        }
        _ => replace_value(data, rng, words),
    }
}

/// A line's value (after `=` or `:`) replaced by a number or a word: keys kept, values changed.
fn replace_value(data: &mut Vec<u8>, rng: &mut ChaCha8Rng, words: &[Vec<u8>]) {
    let Some((start, end)) = pick_line(data, rng) else {
        return;
    };
    let Some(eq) = data[start..end]
        .iter()
        .position(|&b| b == b'=' || b == b':')
    else {
        return;
    };
    let value = if rng.random_bool(0.5) {
        NUMBERS[below(rng, NUMBERS.len())].to_vec()
    } else {
        words
            .get(below(rng, words.len()))
            .cloned()
            .unwrap_or_default()
    };
    // `end > start`, and the separator is not the newline, so the range is never reversed.
    let value_end = if data[end - 1] == b'\n' { end - 1 } else { end };
    replace(data, start + eq + 1..value_end, value);
}

fn positions_of(data: &[u8], wanted: impl Fn(u8) -> bool) -> Vec<usize> {
    data.iter()
        .enumerate()
        .filter(|&(_, &b)| wanted(b))
        .map(|(i, _)| i)
        .collect()
}

/// Right after a quote when there is one (inside a string value), else anywhere.
fn after_a_quote(data: &[u8], rng: &mut ChaCha8Rng) -> usize {
    let quotes = positions_of(data, |b| b == b'"' || b == b'\'');
    match quotes.get(below(rng, quotes.len())) {
        Some(&at) => at + 1,
        None => rng.random_range(0..=data.len()),
    }
}

/// A number token (digits with the signs, points, exponents and underscores around them)
/// replaced by one of `NUMBERS`.
fn replace_number(data: &mut Vec<u8>, rng: &mut ChaCha8Rng) {
    let digits = positions_of(data, |b| b.is_ascii_digit());
    let Some(&at) = digits.get(below(rng, digits.len())) else {
        return;
    };
    let part_of_number = |b: u8| b.is_ascii_digit() || b"+-._eE".contains(&b);
    let mut start = at;
    while start > 0 && part_of_number(data[start - 1]) {
        start -= 1;
    }
    let mut end = at + 1;
    while end < data.len() && part_of_number(data[end]) {
        end += 1;
    }
    let number = NUMBERS[below(rng, NUMBERS.len())];
    replace(data, start..end, number.iter().copied());
}

/// The lines of `data` as `(start, end)` spans, each with its newline.
fn line_spans(data: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = 0;
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' {
            spans.push((start, i + 1));
            start = i + 1;
        }
    }
    if start < data.len() {
        spans.push((start, data.len()));
    }
    spans
}

fn pick_line(data: &[u8], rng: &mut ChaCha8Rng) -> Option<(usize, usize)> {
    let spans = line_spans(data);
    spans.get(below(rng, spans.len())).copied()
}

fn swap_lines(data: &mut Vec<u8>, rng: &mut ChaCha8Rng) {
    let spans = line_spans(data);
    if spans.len() < 2 {
        return;
    }
    let (i, j) = (below(rng, spans.len()), below(rng, spans.len()));
    let (first, second) = (spans[i.min(j)], spans[i.max(j)]);
    if first == second {
        return;
    }
    let mut swapped = Vec::with_capacity(data.len());
    swapped.extend_from_slice(&data[..first.0]);
    swapped.extend_from_slice(&data[second.0..second.1]);
    swapped.extend_from_slice(&data[first.1..second.0]);
    swapped.extend_from_slice(&data[first.0..first.1]);
    swapped.extend_from_slice(&data[second.1..]);
    *data = swapped;
}

/// Identifiers (3 to 32 of `[A-Za-z0-9_]`) in text seeds: keys, section names, enum values.
pub(super) fn words_of(seeds: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut words: Vec<Vec<u8>> = seeds
        .iter()
        .flat_map(|seed| seed.split(|b| !(b.is_ascii_alphanumeric() || *b == b'_')))
        .filter(|w| (3..=32).contains(&w.len()))
        .map(<[u8]>::to_vec)
        .collect();
    words.sort();
    words.dedup();
    words.truncate(512);
    words
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn edits_of_empty_and_one_line_texts_do_not_panic() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let words = vec![b"key".to_vec()];
        let starts: [&[u8]; 6] = [b"", b"=", b"a = 1", b"\n", b"\"", b"x:\n"];
        for start in starts {
            for _ in 0..3000 {
                let mut data = start.to_vec();
                edit(&mut data, &mut rng, &words, 4096);
                assert!(data.len() <= start.len() + 4096 + 64);
            }
        }
    }

    #[test]
    fn swapping_keeps_every_line() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for _ in 0..200 {
            let mut data = b"a\nbb\nccc\n".to_vec();
            swap_lines(&mut data, &mut rng);
            let mut lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
            lines.sort();
            let expected: [&[u8]; 4] = [b"", b"a", b"bb", b"ccc"];
            assert_eq!(lines, expected);
        }
    }

    #[test]
    fn words_are_the_identifiers_of_the_seeds() {
        let words = words_of(&[b"[ingest]\nmax_voxels = 67108864 # ok\n".to_vec()]);
        let expected: [&[u8]; 3] = [b"67108864", b"ingest", b"max_voxels"];
        assert_eq!(words, expected);
    }
}
