//! The seeded mutator: every input is a real seed file with 1 to 8 stacked edits, and input `i`
//! of a run with seed `s` is the same bytes on every machine and every run (its random stream
//! is derived from `(s, i)` alone), so a crash or hang is reproduced from two numbers.
//!
//! Binary edits: bit and byte flips, interesting integers (LE and BE, 1 to 8 bytes) and floats
//! at random offsets and at the format's field offsets (`Grammar::Binary::anchors`), small
//! arithmetic, chunk delete/insert/duplicate/copy, truncation, splicing two seeds, and the
//! format's magic tokens. Text edits: numbers replaced by huge, negative, NaN and infinite ones,
//! lines duplicated, dropped, swapped and commented, quotes dropped, `..` and absolute paths
//! inserted, long values, and words taken from the seeds. A gzip target also gets its content
//! mutated and compressed again with a correct trailer, so half its inputs get past the CRC.

use std::io::Write;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::text;

/// How a target's inputs are shaped, beyond plain byte edits.
#[derive(Clone, Copy)]
pub enum Grammar {
    /// Binary data: `anchors` gives the offsets in a seed of the fields worth hitting (sizes,
    /// counts, offsets, codes); `tokens` are byte strings the format gives meaning to.
    Binary {
        anchors: fn(&[u8]) -> Vec<usize>,
        tokens: &'static [&'static [u8]],
    },
    /// Line-based text (TOML, JSON lines): token-level edits, plus `tokens` and the words of the
    /// seeds.
    Text { tokens: &'static [&'static [u8]] },
}

/// Edits stacked on one input.
pub const MAX_STACKED_EDITS: usize = 8;

/// Integers that sit on the boundaries parsers get wrong (signedness, widths, the NIfTI sizes
/// 348/352/540, the default voxel limit 2^26).
#[rustfmt::skip]
const INTERESTING_INTS: &[i64] = &[
    0, 1, -1, 2, -2, 3, 7, 8, 16, 64, 127, 128, -128, 255, 256, 348, 352, 540, 1000, 1001, 1024,
    4096, 32767, 32768, -32768, -32769, 65535, 65536, 1 << 26, (1 << 26) + 1, 0x7fff_ffff,
    0x8000_0000, -0x8000_0000, 0xffff_ffff, 0x1_0000_0000, i64::MAX, i64::MIN,
];

#[rustfmt::skip]
const INTERESTING_FLOATS: &[f64] = &[
    0.0, -0.0, 1.0, -1.0, 0.5, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, f64::MAX, f64::MIN,
    f64::MIN_POSITIVE, 1e-45, 348.0, 352.0, 1e9, 2147483648.0, -2147483649.0, 3.4e38, 1e300,
];

/// Builds the inputs of one target.
pub struct Mutator {
    seeds: Vec<Vec<u8>>,
    anchors: Vec<Vec<usize>>,
    grammar: Grammar,
    /// The grammar's tokens and, for text, the words of the seeds.
    words: Vec<Vec<u8>>,
    max_len: usize,
    /// A gzip target's content mutator: its output is compressed again for half the inputs.
    content: Option<Box<Mutator>>,
}

impl Mutator {
    pub fn new(seeds: Vec<Vec<u8>>, grammar: Grammar) -> Mutator {
        let anchors = seeds
            .iter()
            .map(|seed| match grammar {
                Grammar::Binary { anchors, .. } => {
                    let mut found = anchors(seed);
                    found.retain(|&at| at < seed.len());
                    found.sort_unstable();
                    found.dedup();
                    found
                }
                Grammar::Text { .. } => Vec::new(),
            })
            .collect();
        let mut words: Vec<Vec<u8>> = match grammar {
            Grammar::Binary { tokens, .. } | Grammar::Text { tokens } => {
                tokens.iter().map(|t| t.to_vec()).collect()
            }
        };
        if let Grammar::Text { .. } = grammar {
            words.extend(text::words_of(&seeds));
        }
        words.sort();
        words.dedup();
        let longest = seeds.iter().map(Vec::len).max().unwrap_or(0);
        Mutator {
            max_len: longest.saturating_mul(2).saturating_add(64 * 1024),
            seeds,
            anchors,
            grammar,
            words,
            content: None,
        }
    }

    /// For a compressed format: half the inputs are `content`'s output gzipped again, with a
    /// valid CRC and length, so the edits reach the parser behind the decompressor.
    pub fn compressing(mut self, content: Mutator) -> Mutator {
        // Incompressible content grows by a few bytes per 64 KiB block, plus the gzip frame.
        self.max_len = self.max_len.max(content.max_len.saturating_mul(2) + 1024);
        self.content = Some(Box::new(content));
        self
    }

    pub fn seeds(&self) -> &[Vec<u8>] {
        &self.seeds
    }

    /// No input is longer than this.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Input `index` of the run seeded with `run_seed`.
    pub fn input(&self, run_seed: u64, index: u64) -> Vec<u8> {
        let mut rng = ChaCha8Rng::seed_from_u64(input_seed(run_seed, index));
        self.generate(&mut rng)
    }

    fn generate(&self, rng: &mut ChaCha8Rng) -> Vec<u8> {
        if let Some(content) = &self.content {
            if rng.random_bool(0.5) {
                let inner = content.generate(rng);
                if let Some(mut packed) = gzip(&inner) {
                    // Now and then an edit of the stream too: a valid frame around a changed one.
                    if rng.random_bool(0.25) {
                        let anchors = self.anchors_of(&packed);
                        self.edit_bytes(&mut packed, &anchors, rng);
                    }
                    packed.truncate(self.max_len);
                    return packed;
                }
            }
        }
        let pick = below(rng, self.seeds.len());
        let mut data = self.seeds.get(pick).cloned().unwrap_or_default();
        let anchors = self.anchors.get(pick).map(Vec::as_slice).unwrap_or(&[]);
        for _ in 0..rng.random_range(1..=MAX_STACKED_EDITS) {
            match self.grammar {
                Grammar::Text { .. } if rng.random_bool(0.8) => {
                    text::edit(&mut data, rng, &self.words, self.max_len)
                }
                _ => self.edit_bytes(&mut data, anchors, rng),
            }
        }
        data.truncate(self.max_len);
        data
    }

    fn anchors_of(&self, data: &[u8]) -> Vec<usize> {
        match self.grammar {
            Grammar::Binary { anchors, .. } => anchors(data),
            Grammar::Text { .. } => Vec::new(),
        }
    }

    fn edit_bytes(&self, data: &mut Vec<u8>, anchors: &[usize], rng: &mut ChaCha8Rng) {
        let len = data.len();
        match rng.random_range(0..16u32) {
            0 => {
                if let Some(at) = position(rng, len) {
                    data[at] ^= 1 << rng.random_range(0..8u32);
                }
            }
            1 => {
                if let Some(at) = position(rng, len) {
                    data[at] = rng.random();
                }
            }
            2 => {
                if let Some(at) = position(rng, len) {
                    put(data, at, &interesting_int(rng));
                }
            }
            // Field offsets get the most attention: they are where sizes and offsets live.
            3..=5 => {
                if let Some(at) = anchor_or_position(rng, anchors, len) {
                    put(data, at, &interesting_int(rng));
                }
            }
            6 => {
                if let Some(at) = anchor_or_position(rng, anchors, len) {
                    put(data, at, &interesting_float(rng));
                }
            }
            7 => add_small(data, rng),
            8 => {
                if let Some(start) = position(rng, len) {
                    let n = chunk_len(rng, len - start);
                    data.drain(start..start + n);
                }
            }
            9 => {
                let at = rng.random_range(0..=len);
                let n = chunk_len(rng, 4096);
                let chunk: Vec<u8> = if rng.random_bool(0.5) {
                    (0..n).map(|_| rng.random()).collect()
                } else {
                    vec![[0u8, 0xff, b'A'][below(rng, 3)]; n]
                };
                replace(data, at..at, chunk);
            }
            10 => {
                if let Some(start) = position(rng, len) {
                    let n = chunk_len(rng, len - start);
                    let copy = data[start..start + n].to_vec();
                    replace(data, start + n..start + n, copy);
                }
            }
            11 => {
                if let Some(from) = position(rng, len) {
                    let n = chunk_len(rng, len - from);
                    let copy = data[from..from + n].to_vec();
                    let to = below(rng, len);
                    put(data, to, &copy);
                }
            }
            12 => {
                // Mostly near the end (a file still being written), sometimes anywhere.
                let keep = if rng.random_bool(0.5) {
                    len - chunk_len(rng, len)
                } else {
                    rng.random_range(0..=len)
                };
                data.truncate(keep);
            }
            13 => {
                if let Some(other) = self.seeds.get(below(rng, self.seeds.len())) {
                    let cut = rng.random_range(0..=len);
                    let from = rng.random_range(0..=other.len());
                    data.truncate(cut);
                    data.extend_from_slice(&other[from..]);
                }
            }
            _ => insert_word(data, rng, &self.words),
        }
    }
}

/// One 64-bit seed per input, from the run's seed and the input's index (splitmix64 finalizer,
/// so neighbouring indices give unrelated streams).
fn input_seed(run_seed: u64, index: u64) -> u64 {
    splitmix64(run_seed ^ splitmix64(index))
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A uniform index below `n` (0 when `n` is 0; callers index with `get`).
pub(super) fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    if n == 0 {
        0
    } else {
        rng.random_range(0..n)
    }
}

fn position(rng: &mut ChaCha8Rng, len: usize) -> Option<usize> {
    (len > 0).then(|| rng.random_range(0..len))
}

fn anchor_or_position(rng: &mut ChaCha8Rng, anchors: &[usize], len: usize) -> Option<usize> {
    match anchors.get(below(rng, anchors.len())) {
        Some(&at) if at < len => Some(at),
        _ => position(rng, len),
    }
}

/// A chunk length in 1..=limit, small ones far likelier (half are under 64 bytes).
fn chunk_len(rng: &mut ChaCha8Rng, limit: usize) -> usize {
    if limit == 0 {
        return 0;
    }
    let max = (1usize << rng.random_range(0..13u32)).min(limit);
    rng.random_range(1..=max)
}

/// `data[range]` replaced by `bytes` (an insertion when the range is empty).
pub(super) fn replace(
    data: &mut Vec<u8>,
    range: std::ops::Range<usize>,
    bytes: impl IntoIterator<Item = u8>,
) {
    let tail = data.split_off(range.end);
    data.truncate(range.start);
    data.extend(bytes);
    data.extend_from_slice(&tail);
}

/// One of `words` inserted at, or written over, a random place.
pub(super) fn insert_word(data: &mut Vec<u8>, rng: &mut ChaCha8Rng, words: &[Vec<u8>]) {
    let Some(word) = words.get(below(rng, words.len())) else {
        return;
    };
    let at = rng.random_range(0..=data.len());
    if rng.random_bool(0.5) {
        replace(data, at..at, word.iter().copied());
    } else {
        put(data, at, word);
    }
}

/// Overwrites from `at`, clipped at the end of `data`.
fn put(data: &mut [u8], at: usize, bytes: &[u8]) {
    for (slot, &b) in data.iter_mut().skip(at).zip(bytes) {
        *slot = b;
    }
}

fn width(rng: &mut ChaCha8Rng) -> usize {
    [1, 2, 4, 8][below(rng, 4)]
}

/// An interesting integer as 1, 2, 4 or 8 bytes, little or big endian.
fn interesting_int(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let value = INTERESTING_INTS[below(rng, INTERESTING_INTS.len())];
    let width = width(rng);
    if rng.random_bool(0.5) {
        value.to_be_bytes()[8 - width..].to_vec()
    } else {
        value.to_le_bytes()[..width].to_vec()
    }
}

/// An interesting float as f32 or f64, little or big endian.
fn interesting_float(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let value = INTERESTING_FLOATS[below(rng, INTERESTING_FLOATS.len())];
    let big_endian = rng.random_bool(0.5);
    match (rng.random_bool(0.75), big_endian) {
        (true, true) => (value as f32).to_be_bytes().to_vec(),
        (true, false) => (value as f32).to_le_bytes().to_vec(),
        (false, true) => value.to_be_bytes().to_vec(),
        (false, false) => value.to_le_bytes().to_vec(),
    }
}

/// Adds -35..=35 to a 1, 2 or 4-byte integer in either byte order.
fn add_small(data: &mut [u8], rng: &mut ChaCha8Rng) {
    let width = [1usize, 2, 4][below(rng, 3)];
    let Some(at) = position(rng, data.len().saturating_sub(width - 1)) else {
        return;
    };
    let delta = rng.random_range(-35i64..=35);
    let big_endian = rng.random_bool(0.5);
    let field = &mut data[at..at + width];
    let mut wide = [0u8; 8];
    if big_endian {
        wide[8 - width..].copy_from_slice(field);
        let value = u64::from_be_bytes(wide).wrapping_add(delta as u64);
        field.copy_from_slice(&value.to_be_bytes()[8 - width..]);
    } else {
        wide[..width].copy_from_slice(field);
        let value = u64::from_le_bytes(wide).wrapping_add(delta as u64);
        field.copy_from_slice(&value.to_le_bytes()[..width]);
    }
}

/// `content` as a gzip stream with a correct CRC-32 and length.
fn gzip(content: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(content).ok()?;
    encoder.finish().ok()
}

#[cfg(test)]
#[path = "mutate_tests.rs"]
mod tests;
