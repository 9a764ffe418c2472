//! The mutator's unit tests (kept beside it in their own file): determinism, length bounds,
//! gzip re-wrapping and text edits.

use super::*;

fn no_anchors(_: &[u8]) -> Vec<usize> {
    Vec::new()
}

fn first_bytes(seed: &[u8]) -> Vec<usize> {
    (0..seed.len().min(8)).collect()
}

fn binary() -> Mutator {
    let seeds = vec![(0..=255u8).collect(), vec![7u8; 40], b"MAGIC-1".to_vec()];
    Mutator::new(
        seeds,
        Grammar::Binary {
            anchors: first_bytes,
            tokens: &[b"MAGIC", b"\x00\x01"],
        },
    )
}

fn text() -> Mutator {
    let seeds = vec![
        b"[session]\ntr = 2.0\nsubject = \"sub-01\"\n".to_vec(),
        b"{\"type\":\"marker\",\"onset_s\":12.5}\n".to_vec(),
    ];
    Mutator::new(
        seeds,
        Grammar::Text {
            tokens: &[b"[", b"]"],
        },
    )
}

fn gzipped() -> Mutator {
    let content = b"some content that is long enough to matter, twice: some content".to_vec();
    let packed = gzip(&content).expect("gzip in memory");
    let raw = Mutator::new(
        vec![packed],
        Grammar::Binary {
            anchors: no_anchors,
            tokens: &[b"\x1f\x8b"],
        },
    );
    raw.compressing(Mutator::new(
        vec![content],
        Grammar::Binary {
            anchors: no_anchors,
            tokens: &[],
        },
    ))
}

#[test]
fn an_input_is_a_function_of_the_run_seed_and_its_index() {
    for mutator in [binary(), text(), gzipped()] {
        for index in 0..300 {
            assert_eq!(mutator.input(42, index), mutator.input(42, index));
        }
        let differ = (0..300)
            .filter(|&i| mutator.input(42, i) != mutator.input(43, i))
            .count();
        assert!(
            differ > 250,
            "only {differ} of 300 inputs depend on the seed"
        );
    }
}

#[test]
fn inputs_stay_within_the_length_bound_and_mostly_differ_from_their_seed() {
    for mutator in [binary(), text(), gzipped()] {
        let mut changed = 0;
        for index in 0..3000 {
            let input = mutator.input(7, index);
            assert!(input.len() <= mutator.max_len(), "{} bytes", input.len());
            changed += usize::from(!mutator.seeds().contains(&input));
        }
        assert!(changed > 2400, "only {changed} of 3000 inputs were changed");
    }
}

#[test]
fn a_gzip_target_gets_valid_streams_with_changed_content() {
    use std::io::Read;
    let mutator = gzipped();
    let original = mutator.content.as_ref().map(|c| c.seeds()[0].clone());
    let mut valid_and_changed = 0;
    for index in 0..400 {
        let input = mutator.input(3, index);
        let mut out = Vec::new();
        let inflated = flate2::read::GzDecoder::new(&input[..]).read_to_end(&mut out);
        if inflated.is_ok() && Some(&out) != original.as_ref() {
            valid_and_changed += 1;
        }
    }
    assert!(valid_and_changed > 100, "{valid_and_changed} of 400");
}

#[test]
fn text_edits_reach_numbers_lines_and_quotes() {
    let mutator = text();
    let inputs: Vec<String> = (0..2000)
        .map(|i| String::from_utf8_lossy(&mutator.input(11, i)).into_owned())
        .collect();
    assert!(inputs
        .iter()
        .any(|t| t.contains("nan") || t.contains("1e400")));
    assert!(inputs
        .iter()
        .any(|t| t.contains("../") || t.contains("/etc/passwd")));
    assert!(inputs.iter().any(|t| t.matches("tr = ").count() > 1));
    assert!(inputs
        .iter()
        .any(|t| t.contains("sub-01\"") && !t.contains("\"sub-01")));
}

#[test]
fn edits_on_an_empty_input_do_not_panic() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mutator = binary();
    for _ in 0..5000 {
        let mut data = Vec::new();
        mutator.edit_bytes(&mut data, &[3, 1000], &mut rng);
    }
}
