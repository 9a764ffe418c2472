//! Ingest benchmarks, a small harness that prints figures (run: `cargo bench --bench ingest`).
//!
//! 1. Read + verify + convert one 81x104x83 int16 volume (NSD's 1.8 mm grid), `.nii` and
//!    `.nii.gz`, against the floor measured in the same run: reading the bytes (`.nii`), and
//!    reading + raw DEFLATE inflation with no CRC, no parsing, no conversion (`.nii.gz`).
//!    Budgets: `.nii` <= 1 ms; `.nii.gz` within 1.5x of the inflate floor.
//! 2. Detection latency, writer's close (or rename) -> `Volume` event received downstream:
//!    with inotify events (budget 5 ms) and with polling (budget poll interval + stability
//!    window + 5 ms).
//!
//! Timings alternate between the candidates so that machine noise hits both alike.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use brainmclip::clock::now_ns;
use brainmclip::config::{SessionConfig, WatchMode};
use brainmclip::ingest::nifti_write::{nifti_bytes, NiftiSpec};
use brainmclip::ingest::{read_volume_file, Datatype, Ingest, IngestEvent};
use flate2::read::DeflateDecoder;

const DIMS: [usize; 3] = [81, 104, 83];

/// A brain-like int16 volume: an ellipsoid of tissue with smooth structure and noise.
fn nsd_like_volume(seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut noise = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    };
    let mut out = Vec::with_capacity(DIMS.iter().product());
    for z in 0..DIMS[2] {
        for y in 0..DIMS[1] {
            for x in 0..DIMS[0] {
                let (dx, dy, dz) = (
                    (x as f32 - 40.0) / 36.0,
                    (y as f32 - 52.0) / 46.0,
                    (z as f32 - 41.0) / 37.0,
                );
                let r2 = dx * dx + dy * dy + dz * dz;
                let v = if r2 < 1.0 {
                    900.0
                        + 250.0 * ((x as f32 * 0.21).sin() * (y as f32 * 0.17).cos())
                        + 40.0 * noise()
                } else {
                    8.0 * noise().abs()
                };
                out.push(v.round());
            }
        }
    }
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summarize(name: &str, mut ms: Vec<f64>) -> f64 {
    ms.sort_by(f64::total_cmp);
    let median = percentile(&ms, 0.5);
    println!(
        "  {name:<38} median {median:>7.3} ms   p10 {:>7.3}   p90 {:>7.3}   (n = {})",
        percentile(&ms, 0.1),
        percentile(&ms, 0.9),
        ms.len()
    );
    median
}

fn time_ms(f: &mut dyn FnMut()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1e3
}

fn read_benchmark(dir: &Path) {
    let spec = NiftiSpec::new(&DIMS, [1.8, 1.8, 1.8], Datatype::I16);
    let values = nsd_like_volume(1);
    let nii = dir.join("vol_0001.nii");
    let gz = dir.join("vol_0001.nii.gz");
    std::fs::write(&nii, nifti_bytes(&spec, &values, false).unwrap()).unwrap();
    std::fs::write(&gz, nifti_bytes(&spec, &values, true).unwrap()).unwrap();
    println!(
        "read + verify + convert, {}x{}x{} int16 ({} KiB .nii, {} KiB .nii.gz)",
        DIMS[0],
        DIMS[1],
        DIMS[2],
        std::fs::metadata(&nii).unwrap().len() / 1024,
        std::fs::metadata(&gz).unwrap().len() / 1024
    );
    // Sanity: the benchmarked reader returns the values written.
    assert_eq!(read_volume_file(&gz, 1 << 26).unwrap().data, values);

    let rounds = 300;
    let (mut floor_nii, mut ours_nii, mut floor_gz, mut ours_gz) = (vec![], vec![], vec![], vec![]);
    let (mut crate_nii, mut crate_gz) = (vec![], vec![]);
    let with_nifti_crate = |path: &Path| {
        use nifti::{IntoNdArray, NiftiObject, ReaderOptions};
        let object = ReaderOptions::new().read_file(path).unwrap();
        std::hint::black_box(object.into_volume().into_ndarray::<f32>().unwrap());
    };
    for _ in 0..20 {
        let _ = read_volume_file(&nii, 1 << 26);
        let _ = read_volume_file(&gz, 1 << 26);
    }
    for _ in 0..rounds {
        floor_nii.push(time_ms(&mut || {
            std::hint::black_box(std::fs::read(&nii).unwrap());
        }));
        ours_nii.push(time_ms(&mut || {
            std::hint::black_box(read_volume_file(&nii, 1 << 26).unwrap());
        }));
        floor_gz.push(time_ms(&mut || {
            let bytes = std::fs::read(&gz).unwrap();
            // gzip member: 10-byte header (no optional fields from our writer), deflate body.
            let mut out = Vec::with_capacity(2 << 20);
            DeflateDecoder::new(&bytes[10..])
                .read_to_end(&mut out)
                .unwrap();
            std::hint::black_box(out);
        }));
        ours_gz.push(time_ms(&mut || {
            std::hint::black_box(read_volume_file(&gz, 1 << 26).unwrap());
        }));
        if crate_nii.len() < 60 {
            crate_nii.push(time_ms(&mut || with_nifti_crate(&nii)));
            crate_gz.push(time_ms(&mut || with_nifti_crate(&gz)));
        }
    }
    let f_nii = summarize(".nii   floor: read the bytes", floor_nii);
    let o_nii = summarize(".nii   ours: read+verify+convert", ours_nii);
    let f_gz = summarize(".nii.gz floor: read + inflate", floor_gz);
    let o_gz = summarize(".nii.gz ours: read+inflate+CRC+convert", ours_gz);
    let c_nii = summarize(".nii   nifti crate read + into_ndarray", crate_nii);
    let c_gz = summarize(".nii.gz nifti crate (no CRC check)", crate_gz);
    println!(
        "  => ours vs the nifti crate: .nii {:.1}x faster, .nii.gz {:.1}x faster",
        c_nii / o_nii,
        c_gz / o_gz
    );
    println!(
        "  => .nii {:.3} ms (budget 1 ms: {}), {:.2}x its floor",
        o_nii,
        if o_nii <= 1.0 { "met" } else { "MISSED" },
        o_nii / f_nii
    );
    println!(
        "  => .nii.gz {:.2}x the inflate floor (budget 1.5x: {})",
        o_gz / f_gz,
        if o_gz / f_gz <= 1.5 { "met" } else { "MISSED" }
    );
}

fn latency_benchmark(dir: &Path, watch: WatchMode, poll_ms: u64, stability_ms: u64) {
    let export = dir.join(format!("export_{watch:?}"));
    std::fs::create_dir_all(&export).unwrap();
    let n = 40u32;
    let tr = Duration::from_millis(if watch == WatchMode::Events { 40 } else { 250 });
    let mut config = SessionConfig::default();
    config.session.tr = tr.as_secs_f64();
    config.session.volumes = n;
    config.ingest.dir = export.clone();
    config.ingest.watch = watch;
    config.ingest.poll_interval_ms = poll_ms;
    config.ingest.stability_ms = stability_ms;
    let ingest = Ingest::start(&config).unwrap();
    let spec = NiftiSpec::new(&[64, 64, 36], [3.0; 3], Datatype::I16);
    let files: Vec<Vec<u8>> = (0..n)
        .map(|i| nifti_bytes(&spec, &vec![i as f32; 64 * 64 * 36], true).unwrap())
        .collect();
    let writer = std::thread::spawn(move || {
        let mut closed = Vec::new();
        for (i, bytes) in files.iter().enumerate() {
            let path = export.join(format!("vol_{:04}.nii.gz", i + 1));
            // A plain non-atomic write: create, write, close.
            std::fs::write(&path, bytes).unwrap();
            closed.push(now_ns());
            std::thread::sleep(tr);
        }
        closed
    });
    let mut received = Vec::new();
    for event in ingest.events().iter() {
        match event {
            IngestEvent::Volume(v) => received.push((v.index, now_ns())),
            IngestEvent::RunEnded { .. } => break,
            _ => {}
        }
    }
    let closed = writer.join().unwrap();
    let ms: Vec<f64> = received
        .iter()
        .map(|(i, t)| (*t as f64 - closed[*i as usize - 1] as f64) / 1e6)
        .collect();
    assert_eq!(ms.len(), n as usize, "every volume must arrive");
    let label = match watch {
        WatchMode::Events => "events: close -> Volume event".to_string(),
        _ => format!("poll {poll_ms} ms + {stability_ms} ms: close -> Volume"),
    };
    let mut sorted = ms.clone();
    sorted.sort_by(f64::total_cmp);
    let worst = *sorted.last().unwrap();
    summarize(&label, ms);
    let budget = match watch {
        WatchMode::Events => 5.0,
        _ => (poll_ms + stability_ms) as f64 + 5.0,
    };
    println!(
        "  => max {worst:.2} ms against a budget of {budget} ms: {}",
        if worst <= budget { "met" } else { "MISSED" }
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs it once quickly.
    let quick = std::env::args().all(|a| a != "--bench");
    let dir = tempfile::tempdir().unwrap();
    if quick {
        println!("(smoke run; use `cargo bench --bench ingest` for figures)");
        latency_benchmark(dir.path(), WatchMode::Events, 100, 50);
        return;
    }
    read_benchmark(dir.path());
    println!("detection latency");
    latency_benchmark(dir.path(), WatchMode::Events, 100, 50);
    latency_benchmark(dir.path(), WatchMode::Poll, 100, 50);
}
