//! The demo world's own text vocabulary: every word the simulator's captions can use, as a
//! Hugging Face `tokenizer.json` (WordLevel model, lower-casing, whitespace/punctuation split,
//! start- and end-of-text added), so the demo encoder's text tower is read by the same
//! `ClipTokenizer` as a real CLIP's. Words outside the world map to `<|unk|>`.

use serde_json::{json, Value};

use crate::sim::stimuli::{BACKGROUNDS, COLOURS, SHAPES, SIZES};

pub const BOS: &str = "<|startoftext|>";
pub const EOS: &str = "<|endoftext|>";
pub const UNK: &str = "<|unk|>";
pub const BOS_ID: u32 = 0;
pub const EOS_ID: u32 = 1;

/// Specials first (ids 0, 1, 2), then the world's words in a fixed order.
pub fn vocabulary() -> Vec<String> {
    let mut words: Vec<String> = vec![BOS.into(), EOS.into(), UNK.into()];
    let mut push = |w: &str| {
        if !words.iter().any(|x| x == w) {
            words.push(w.to_string());
        }
    };
    for w in [
        "a",
        "an",
        "and",
        "on",
        "in",
        "at",
        "the",
        "of",
        "with",
        "background",
        "nothing",
        ",",
        ".",
        "top",
        "bottom",
        "left",
        "right",
        "centre",
        "center",
        "middle",
    ] {
        push(w);
    }
    SHAPES.iter().for_each(|w| push(w));
    COLOURS.iter().for_each(|(w, _)| push(w));
    BACKGROUNDS.iter().for_each(|w| push(w));
    SIZES.iter().for_each(|(w, _)| push(w));
    words
}

fn special(id: usize, content: &str) -> Value {
    json!({"id": id, "content": content, "single_word": false, "lstrip": false,
           "rstrip": false, "normalized": false, "special": true})
}

/// The `tokenizer.json` text.
pub fn tokenizer_json() -> Value {
    let vocab: serde_json::Map<String, Value> = vocabulary()
        .into_iter()
        .enumerate()
        .map(|(i, w)| (w, json!(i)))
        .collect();
    let tok = |t: &str| json!({"SpecialToken": {"id": t, "type_id": 0}});
    let seq = |s: &str, ty: u32| json!({"Sequence": {"id": s, "type_id": ty}});
    let specials = json!({
        BOS: {"id": BOS, "ids": [BOS_ID], "tokens": [BOS]},
        EOS: {"id": EOS, "ids": [EOS_ID], "tokens": [EOS]},
    });
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(0, BOS), special(1, EOS), special(2, UNK)],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [tok(BOS), seq("A", 0), tok(EOS)],
            "pair": [tok(BOS), seq("A", 0), tok(EOS), seq("B", 1), tok(EOS)],
            "special_tokens": specials,
        },
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": UNK},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tokenizer::ClipTokenizer;
    use crate::sim::stimuli::stimulus_set;

    #[test]
    fn every_caption_word_is_known_and_framed_by_start_and_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, tokenizer_json().to_string()).expect("write");
        let tok = ClipTokenizer::from_file(&path, 40, EOS_ID, EOS_ID).expect("load");
        let vocab = vocabulary();
        for s in stimulus_set(3, 300, "t") {
            let ids = tok.encode(&s.caption).expect("encode");
            assert_eq!(ids.len(), 40);
            assert_eq!(ids[0], BOS_ID);
            let end = ids.iter().position(|&i| i == EOS_ID).expect("end of text");
            assert!(end > 5, "{}", s.caption);
            let words: Vec<&str> = ids[1..end]
                .iter()
                .map(|&i| vocab[i as usize].as_str())
                .collect();
            assert!(!words.contains(&UNK), "{}: {words:?}", s.caption);
            let rebuilt = words.join(" ").replace(" ,", ",");
            assert_eq!(rebuilt, s.caption);
        }
        let unknown = tok.encode("a Purple zebra").expect("encode");
        assert_eq!(
            &unknown[1..4],
            &[
                vocab.iter().position(|w| w == "a").unwrap() as u32,
                vocab.iter().position(|w| w == "purple").unwrap() as u32,
                2
            ]
        );
    }
}
