//! Raw voxel bytes → `f32`, for every NIfTI-1 datatype with a real conversion, either byte
//! order, with `scl_slope`/`scl_inter` applied.
//!
//! Written by hand because ingest must verify the raw bytes itself (the `nifti` crate does not
//! check gzip trailers) and then convert them; this loop is also about 2x faster than the
//! crate's generic `into_ndarray` (see `bench/ingest.rs`). With scaling, or for 64-bit
//! types, values are computed in f64 and rounded once to f32, which is what nibabel's
//! `get_fdata()` followed by a cast to float32 gives.

use super::volume::Datatype;

trait RawValue: Copy {
    const SIZE: usize;
    fn from_le(b: &[u8]) -> Self;
    fn from_be(b: &[u8]) -> Self;
    fn to_f32(self) -> f32;
    fn to_f64(self) -> f64;
}

macro_rules! raw_value {
    ($t:ty, $n:expr) => {
        impl RawValue for $t {
            const SIZE: usize = $n;
            #[inline(always)]
            fn from_le(b: &[u8]) -> Self {
                let mut a = [0u8; $n];
                a.copy_from_slice(b);
                <$t>::from_le_bytes(a)
            }
            #[inline(always)]
            fn from_be(b: &[u8]) -> Self {
                let mut a = [0u8; $n];
                a.copy_from_slice(b);
                <$t>::from_be_bytes(a)
            }
            #[inline(always)]
            fn to_f32(self) -> f32 {
                self as f32
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    };
}

raw_value!(u8, 1);
raw_value!(i8, 1);
raw_value!(i16, 2);
raw_value!(u16, 2);
raw_value!(i32, 4);
raw_value!(u32, 4);
raw_value!(i64, 8);
raw_value!(u64, 8);
raw_value!(f32, 4);
raw_value!(f64, 8);

#[inline(always)]
fn convert_typed<T: RawValue>(
    raw: &[u8],
    big_endian: bool,
    scaling: Option<(f32, f32)>,
    out: &mut Vec<f32>,
) {
    let chunks = raw.chunks_exact(T::SIZE);
    let wide = T::SIZE == 8;
    match (scaling, big_endian) {
        (None, false) if !wide => out.extend(chunks.map(|c| T::from_le(c).to_f32())),
        (None, true) if !wide => out.extend(chunks.map(|c| T::from_be(c).to_f32())),
        (None, false) => out.extend(chunks.map(|c| T::from_le(c).to_f64() as f32)),
        (None, true) => out.extend(chunks.map(|c| T::from_be(c).to_f64() as f32)),
        (Some((slope, inter)), false) => {
            let (s, i) = (slope as f64, inter as f64);
            out.extend(chunks.map(|c| (T::from_le(c).to_f64() * s + i) as f32))
        }
        (Some((slope, inter)), true) => {
            let (s, i) = (slope as f64, inter as f64);
            out.extend(chunks.map(|c| (T::from_be(c).to_f64() * s + i) as f32))
        }
    }
}

/// Appends the converted voxels of `raw` to `out` and returns how many are NaN or infinite.
/// `raw.len()` must be a multiple of the datatype's size (trailing bytes are ignored).
pub fn convert_to_f32(
    raw: &[u8],
    datatype: Datatype,
    big_endian: bool,
    scaling: Option<(f32, f32)>,
    out: &mut Vec<f32>,
) -> usize {
    let start = out.len();
    out.reserve(raw.len() / datatype.size_bytes());
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU was just checked for AVX2, the only feature the copy assumes.
            unsafe { convert_any_avx2(raw, datatype, big_endian, scaling, out) };
        } else {
            convert_any(raw, datatype, big_endian, scaling, out);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    convert_any(raw, datatype, big_endian, scaling, out);
    // Integers with a finite slope cannot give NaN; only count where it can happen.
    let can_be_non_finite = matches!(datatype, Datatype::F32 | Datatype::F64) || scaling.is_some();
    if can_be_non_finite {
        out[start..].iter().filter(|v| !v.is_finite()).count()
    } else {
        0
    }
}

/// `convert_any` compiled for AVX2: twice the vector width of the x86-64 baseline on the
/// per-volume path (every conversion is exact or rounds once, identically in both copies).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn convert_any_avx2(
    raw: &[u8],
    datatype: Datatype,
    big_endian: bool,
    scaling: Option<(f32, f32)>,
    out: &mut Vec<f32>,
) {
    convert_any(raw, datatype, big_endian, scaling, out)
}

#[inline(always)]
fn convert_any(
    raw: &[u8],
    datatype: Datatype,
    big_endian: bool,
    scaling: Option<(f32, f32)>,
    out: &mut Vec<f32>,
) {
    match datatype {
        Datatype::U8 => convert_typed::<u8>(raw, big_endian, scaling, out),
        Datatype::I8 => convert_typed::<i8>(raw, big_endian, scaling, out),
        Datatype::I16 => convert_typed::<i16>(raw, big_endian, scaling, out),
        Datatype::U16 => convert_typed::<u16>(raw, big_endian, scaling, out),
        Datatype::I32 => convert_typed::<i32>(raw, big_endian, scaling, out),
        Datatype::U32 => convert_typed::<u32>(raw, big_endian, scaling, out),
        Datatype::I64 => convert_typed::<i64>(raw, big_endian, scaling, out),
        Datatype::U64 => convert_typed::<u64>(raw, big_endian, scaling, out),
        Datatype::F32 => convert_typed::<f32>(raw, big_endian, scaling, out),
        Datatype::F64 => convert_typed::<f64>(raw, big_endian, scaling, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dispatched_copy_and_the_portable_copy_agree_bit_for_bit() {
        // Every type, both byte orders, with and without scaling, on pseudo-random bytes
        // (which include NaN and Inf patterns for the float types), in lengths that leave
        // vector remainders.
        let mut state = 7u64;
        let raw: Vec<u8> = (0..8 * 1003)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 56) as u8
            })
            .collect();
        let types = [
            Datatype::U8,
            Datatype::I8,
            Datatype::I16,
            Datatype::U16,
            Datatype::I32,
            Datatype::U32,
            Datatype::I64,
            Datatype::U64,
            Datatype::F32,
            Datatype::F64,
        ];
        for datatype in types {
            for big_endian in [false, true] {
                for scaling in [None, Some((0.37f32, -12.5f32))] {
                    let (mut a, mut b) = (Vec::new(), Vec::new());
                    convert_to_f32(&raw, datatype, big_endian, scaling, &mut a);
                    convert_any(&raw, datatype, big_endian, scaling, &mut b);
                    assert_eq!(a.len(), raw.len() / datatype.size_bytes());
                    let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&a),
                        bits(&b),
                        "{datatype:?} be {big_endian} {scaling:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_type_and_byte_order() {
        let mut out = Vec::new();
        assert_eq!(
            convert_to_f32(&[0, 255, 7], Datatype::U8, false, None, &mut out),
            0
        );
        assert_eq!(out, [0.0, 255.0, 7.0]);
        out.clear();
        convert_to_f32(&[0xff, 0x80], Datatype::I8, false, None, &mut out);
        assert_eq!(out, [-1.0, -128.0]);
        out.clear();
        convert_to_f32(
            &(-300i16).to_be_bytes(),
            Datatype::I16,
            true,
            None,
            &mut out,
        );
        convert_to_f32(
            &(-300i16).to_le_bytes(),
            Datatype::I16,
            false,
            None,
            &mut out,
        );
        convert_to_f32(&60000u16.to_be_bytes(), Datatype::U16, true, None, &mut out);
        convert_to_f32(
            &(-70000i32).to_le_bytes(),
            Datatype::I32,
            false,
            None,
            &mut out,
        );
        convert_to_f32(
            &4_000_000_000u32.to_be_bytes(),
            Datatype::U32,
            true,
            None,
            &mut out,
        );
        convert_to_f32(&(-5i64).to_be_bytes(), Datatype::I64, true, None, &mut out);
        convert_to_f32(&9u64.to_le_bytes(), Datatype::U64, false, None, &mut out);
        convert_to_f32(&1.5f32.to_be_bytes(), Datatype::F32, true, None, &mut out);
        convert_to_f32(
            &(-2.25f64).to_le_bytes(),
            Datatype::F64,
            false,
            None,
            &mut out,
        );
        assert_eq!(
            out,
            [-300.0, -300.0, 60000.0, -70000.0, 4e9, -5.0, 9.0, 1.5, -2.25]
        );
    }

    #[test]
    fn scaling_is_computed_in_f64_and_rounded_once() {
        let raw: Vec<u8> = [3i16, -4, 32767]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let mut out = Vec::new();
        convert_to_f32(&raw, Datatype::I16, false, Some((0.1, -10.0)), &mut out);
        let expected: Vec<f32> = [3.0f64, -4.0, 32767.0]
            .iter()
            .map(|v| (v * 0.1f32 as f64 + -10.0) as f32)
            .collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn counts_non_finite() {
        let raw: Vec<u8> = [1.0f32, f32::NAN, f32::INFINITY, -f32::INFINITY, 0.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let mut out = vec![42.0];
        assert_eq!(
            convert_to_f32(&raw, Datatype::F32, false, None, &mut out),
            3
        );
        assert_eq!(out.len(), 6);
        assert!(out[2].is_nan());
    }
}
