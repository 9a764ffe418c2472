//! The Siemens CSA header reader against nibabel's test vectors (copied from its wheel by
//! `tests/fixtures/dicom/csa/fetch.py`) and nibabel's expected values for them
//! (`nibabel/nicom/tests/test_csareader.py`).

use std::path::Path;

use brainmclip::ingest::dicom::csa::{CsaError, CsaHeader};

fn vector(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dicom/csa")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn csa2_headers_of_a_mosaic_read_as_nibabel_reads_them() {
    for name in ["csa2_b0.bin", "csa2_b1000.bin"] {
        let h = CsaHeader::parse(&vector(name)).unwrap();
        assert_eq!(h.version, 2, "{name}");
        assert_eq!(h.tags.len(), 83, "{name}");
        assert_eq!(h.images_in_mosaic(), Some(48), "{name}");
        assert_eq!(h.text("AcquisitionMatrixText"), Some("128p*128"), "{name}");
        let n = h.slice_normal().unwrap();
        let norm = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
        assert!((norm - 1.0).abs() < 1e-6, "{name}: |normal| {norm}");
    }
    let b0 = CsaHeader::parse(&vector("csa2_b0.bin")).unwrap();
    assert_eq!(b0.numbers("B_value"), Some(vec![0.0]));
    assert_eq!(b0.numbers("B_matrix"), None);
    assert_eq!(
        b0.ice_dims().unwrap(),
        ["X", "1", "1", "1", "1", "1", "1", "48", "1", "1", "1", "1", "201"]
    );
    let b1000 = CsaHeader::parse(&vector("csa2_b1000.bin")).unwrap();
    assert_eq!(b1000.numbers("B_value"), Some(vec![1000.0]));
    assert_eq!(b1000.numbers("B_matrix").map(|m| m.len()), Some(6));
    let g = b1000.numbers("DiffusionGradientDirection").unwrap();
    let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-6, "|gradient| {norm}");
    assert_eq!(
        b1000.ice_dims().unwrap(),
        ["X", "1", "1", "1", "2", "1", "1", "48", "1", "1", "1", "1", "201"]
    );
}

#[test]
fn a_zero_length_item_and_the_item_limit_behave_as_in_nibabel() {
    // A zero-length item (nibabel gh-92) does not end the header.
    let h = CsaHeader::parse(&vector("csa2_zero_len.bin")).unwrap();
    assert_eq!((h.version, h.tags.len()), (2, 44));
    // One tag with fewer than the limit of items is read; 1001 items are refused.
    assert_eq!(
        CsaHeader::parse(&vector("csa_str_valid.bin"))
            .unwrap()
            .tags
            .len(),
        1
    );
    let err = CsaHeader::parse(&vector("csa_str_1001n_items.bin")).unwrap_err();
    assert!(
        matches!(&err, CsaError::TooMany { count: 1001, .. }),
        "{err}"
    );
}
