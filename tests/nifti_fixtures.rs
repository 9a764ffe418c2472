//! Our NIfTI-1 reader against files written by another tool (nibabel) and the values nibabel
//! reports for them: `tests/fixtures/nifti/make_fixtures.py` made both.

use std::path::{Path, PathBuf};

use brainmclip::ingest::{read_volume_file, Datatype, RunReader};
use brainmclip::inspect::inspect;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nifti")
}

fn expected() -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_object()
        .unwrap()
        .clone()
}

/// nibabel's encoding of a voxel value: a number, null for NaN, "inf" / "-inf".
fn value(v: &Value) -> f64 {
    match v {
        Value::Null => f64::NAN,
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        other => other.as_f64().unwrap(),
    }
}

fn same_f32(ours: f32, theirs: f64) -> bool {
    let theirs = theirs as f32;
    ours.to_bits() == theirs.to_bits() || (ours.is_nan() && theirs.is_nan())
}

fn assert_affine(ours: &[[f64; 4]; 4], theirs: &Value, what: &str) {
    for r in 0..4 {
        for c in 0..4 {
            let t = theirs[r][c].as_f64().unwrap();
            assert!(
                (ours[r][c] - t).abs() < 1e-6,
                "{what}: affine[{r}][{c}] ours {} nibabel {t}",
                ours[r][c]
            );
        }
    }
}

#[test]
fn every_3d_fixture_matches_nibabel_voxel_for_voxel() {
    let expected = expected();
    let mut checked = 0;
    for (name, e) in &expected {
        if e["dims"].as_array().unwrap().len() != 3 {
            continue;
        }
        let path = fixtures().join(name);
        let decoded =
            read_volume_file(&path, 1 << 20).unwrap_or_else(|err| panic!("{name}: {err}"));
        let h = &decoded.header;
        let dims: Vec<usize> = e["dims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(h.dims, dims, "{name}");
        assert_eq!(
            h.datatype.code() as i64,
            e["datatype"].as_i64().unwrap(),
            "{name}"
        );
        assert_eq!(
            h.datatype.name(),
            e["datatype_name"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(h.big_endian, e["big_endian"].as_bool().unwrap(), "{name}");
        let g = h.geometry();
        for (axis, v) in e["voxel_size"].as_array().unwrap().iter().enumerate() {
            assert_eq!(
                g.voxel_size[axis] as f64,
                v.as_f64().unwrap(),
                "{name} voxel size"
            );
        }
        assert_affine(&g.affine, &e["affine"], name);
        assert_eq!(g.orientation(), e["axcodes"].as_str().unwrap(), "{name}");
        assert_eq!(
            h.vox_offset as u64,
            e["vox_offset"].as_u64().unwrap(),
            "{name}"
        );
        // The qform on its own, even where the sform wins.
        let mut q = h.clone();
        q.fields.sform_code = 0;
        if h.fields.qform_code > 0 {
            assert_affine(&q.affine(), &e["qform_affine"], &format!("{name} qform"));
        }
        let slope = e["slope"].as_f64().unwrap_or(1.0);
        let inter = e["inter"].as_f64().unwrap_or(0.0);
        let (s, i) = h.scaling.map_or((1.0, 0.0), |(s, i)| (s as f64, i as f64));
        assert_eq!((s, i), (slope, inter), "{name} scaling");

        let values = e["values_f32"].as_array().unwrap();
        assert_eq!(decoded.data.len(), values.len(), "{name}");
        for (k, (ours, theirs)) in decoded.data.iter().zip(values).enumerate() {
            assert!(
                same_f32(*ours, value(theirs)),
                "{name} voxel {k}: ours {ours}, nibabel {theirs}"
            );
        }
        for sample in e["samples"].as_array().unwrap() {
            let k = sample[0].as_u64().unwrap() as usize;
            assert!(
                same_f32(decoded.data[k], value(&sample[1])),
                "{name} sample {k}"
            );
        }
        let sum: f64 = decoded
            .data
            .iter()
            .filter(|v| v.is_finite())
            .map(|&v| v as f64)
            .sum();
        let theirs = e["sum"].as_f64().unwrap();
        assert!(
            (sum - theirs).abs() <= 1e-6 * theirs.abs().max(1.0),
            "{name}: sum {sum} vs {theirs}"
        );
        assert_eq!(
            decoded.non_finite as u64,
            e["n_nonfinite"].as_u64().unwrap(),
            "{name}"
        );
        checked += 1;
    }
    assert!(checked >= 17, "only {checked} 3-D fixtures checked");
}

#[test]
fn four_d_runs_read_volume_by_volume_match_nibabel() {
    let expected = expected();
    for name in ["run4d.nii.gz", "run4d.nii"] {
        let e = &expected[name];
        let mut reader = RunReader::open(&fixtures().join(name), 1 << 20).unwrap();
        assert_eq!(reader.n_volumes(), 6);
        let tr = reader.header().geometry().tr_s.unwrap();
        assert!(
            (tr - e["tr"].as_f64().unwrap()).abs() < 1e-6,
            "{name} TR {tr}"
        );
        let sums = e["volume_sums"].as_array().unwrap();
        let samples = e["samples"].as_array().unwrap();
        let mut t = 0;
        while let Some(volume) = reader.next_volume() {
            let (data, non_finite) = volume.unwrap();
            assert_eq!(non_finite, 0);
            let sum: f64 = data.iter().map(|&v| v as f64).sum();
            let theirs = sums[t].as_f64().unwrap();
            assert!(
                (sum - theirs).abs() < 1e-6 * theirs,
                "{name} volume {t}: {sum} vs {theirs}"
            );
            for sample in samples[t].as_array().unwrap() {
                let k = sample[0].as_u64().unwrap() as usize;
                assert!(
                    same_f32(data[k], value(&sample[1])),
                    "{name} volume {t} voxel {k}"
                );
            }
            t += 1;
        }
        assert_eq!(t, 6);

        let report = inspect(&fixtures().join(name), 1 << 20).unwrap();
        let tsnr = report.tsnr.as_ref().unwrap();
        assert_eq!(
            tsnr.voxels as u64,
            e["tsnr_n_voxels"].as_u64().unwrap(),
            "{name}"
        );
        let theirs = e["tsnr_mean"].as_f64().unwrap();
        assert!(
            (tsnr.mean - theirs).abs() < 1e-4 * theirs,
            "{name} tSNR {} vs {theirs}",
            tsnr.mean
        );
        let text = report.to_string();
        assert!(
            text.contains("TR") && text.contains("int16") || text.contains("float32"),
            "{text}"
        );
        assert!(text.contains("orientation  RAS"), "{text}");
    }
}

#[test]
fn a_4d_run_is_not_taken_for_a_scanner_volume() {
    let err = read_volume_file(&fixtures().join("run4d.nii.gz"), 1 << 20)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("run4d.nii.gz") && err.contains("one 3-D volume per file"),
        "{err}"
    );
}

#[test]
fn inspect_reports_scaling_and_byte_order() {
    let text = inspect(&fixtures().join("i16_be.nii"), 1 << 20)
        .unwrap()
        .to_string();
    assert!(text.contains("int16 (big-endian, code 4)"), "{text}");
    let text = inspect(&fixtures().join("pair.hdr"), 1 << 20)
        .unwrap()
        .to_string();
    assert!(text.contains("value = 1.5 x stored + 3"), "{text}");
    assert_eq!(Datatype::from_code(4), Some(Datatype::I16));
}
