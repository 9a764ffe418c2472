//! The gallery's embeddings are kept between starts: a second load of the same gallery through
//! the same encoder reads them back exactly (no embedding); a changed image, a changed encoder
//! file or a damaged cache file makes the gallery embedded again.

mod common;

use std::path::Path;

use brainmclip::decode::gallery_cache::CACHE_FILE;
use brainmclip::decode::retrieval::Gallery;
use brainmclip::model::device::ComputeDevice;

fn image(path: &Path, seed: u8) {
    let img = image::RgbImage::from_fn(32, 32, |x, y| {
        image::Rgb([seed.wrapping_mul(40), (x * 8) as u8, (y * 8) as u8 ^ seed])
    });
    img.save(path).unwrap();
}

#[test]
fn a_second_load_reads_the_cache_and_any_change_invalidates_it() {
    let dir = tempfile::tempdir().unwrap();
    let (gallery, encoder) = (dir.path().join("gallery"), dir.path().join("encoder"));
    std::fs::create_dir_all(&gallery).unwrap();
    common::tiny_encoder(&encoder);
    for k in 0..3 {
        image(&gallery.join(format!("img{k}.png")), k as u8 + 1);
    }
    let load = || Gallery::load(&gallery, &encoder, ComputeDevice::Cpu).unwrap();

    let first = load();
    assert!(!first.cached, "nothing cached yet");
    assert!(gallery.join(CACHE_FILE).exists());
    let second = load();
    assert!(second.cached, "the second load embedded again");
    assert_eq!(
        second.names, first.names,
        "the cache file is not listed as an image"
    );
    assert_eq!(second.embeddings, first.embeddings);
    assert_eq!(second.thumbnails, first.thumbnails);

    // A changed image: embedded again, and that image's embedding changes.
    image(&gallery.join("img1.png"), 9);
    let changed = load();
    assert!(!changed.cached);
    assert_eq!(changed.embeddings[0], first.embeddings[0]);
    assert_ne!(changed.embeddings[1], first.embeddings[1]);
    assert!(load().cached);

    // A changed encoder file (same model, one more byte in its config).
    let config = encoder.join("config.json");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push('\n');
    std::fs::write(&config, text).unwrap();
    assert!(!load().cached);
    assert!(load().cached);

    // A cut cache file is refused by its checksum and rebuilt.
    let cache = gallery.join(CACHE_FILE);
    let bytes = std::fs::read(&cache).unwrap();
    std::fs::write(&cache, &bytes[..bytes.len() - 100]).unwrap();
    let rebuilt = load();
    assert!(!rebuilt.cached);
    assert_eq!(rebuilt.embeddings, changed.embeddings);
    assert_eq!(std::fs::read(&cache).unwrap().len(), bytes.len());
    assert!(load().cached);
}
