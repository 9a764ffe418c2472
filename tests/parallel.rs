//! Data-parallel training on burn-collective, without GPUs: two peers (two threads on the CPU
//! backend; two processes on loopback through the orchestrator, ignored while burn-collective
//! 0.21.0 hangs there) end with the same weights as one peer trained on the whole batch.
//! Tolerance: 2e-4 absolute on every weight, stated against how far training moved them (a
//! split only reorders float sums, which Adam's normalisation can magnify a little on weights
//! with tiny gradients).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use burn::backend::flex::FlexDevice;
use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};

use brainmclip::model::device::ComputeDevice;
use brainmclip::model::projector::ProjectorConfig;
use brainmclip::train::calibrate::CalibrateConfig;
use brainmclip::train::parallel::{run_peers, Cluster, Peer};
use brainmclip::train::projector_train::{train_projector, DataShape, Dataset};

const TOLERANCE: f32 = 2e-4;

/// Every float parameter of a module, in visiting order.
fn weights<M: Module<Flex>>(module: &M) -> Vec<f32> {
    struct Flat(Vec<f32>);
    impl ModuleVisitor<Flex> for Flat {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Flex, D>>) {
            self.0
                .extend(param.val().into_data().to_vec::<f32>().unwrap());
        }
    }
    let mut flat = Flat(Vec::new());
    module.visit(&mut flat);
    flat.0
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Random rows shaped like a small calibration (a fixed seed).
fn dataset(rows: usize, seed: u64) -> Dataset {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let shape = DataShape {
        detail_voxels: 40,
        semantic_voxels: 12,
        tokens: 5,
        width: 8,
        dim: 6,
    };
    let mut draw = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random::<f32>() - 0.5).collect() };
    Dataset {
        ids: (0..rows).map(|i| format!("s{i}")).collect(),
        detail: draw(rows * shape.detail_voxels),
        semantic: draw(rows * shape.semantic_voxels),
        tokens: draw(rows * shape.tokens * shape.width),
        embedding: draw(rows * shape.dim),
        shape,
    }
}

#[test]
fn two_cpu_peers_train_the_projector_like_one_peer_on_the_whole_batch() {
    let (train, validation) = (dataset(32, 1), dataset(8, 2));
    let mut config = CalibrateConfig::default();
    // Per-row losses only: InfoNCE compares each row with the other rows of its own shard,
    // which is what data parallelism means for it, not the whole batch's result.
    config.loss.detail_contrastive = 0.0;
    config.loss.semantic_contrastive = 0.0;
    config.train.epochs = 3;
    config.train.batch = 8;
    config.train.learning_rate = 3e-3;
    let s = train.shape;
    let projector = ProjectorConfig {
        detail_voxels: s.detail_voxels,
        semantic_voxels: s.semantic_voxels,
        embed_dim: 16,
        blocks: 1,
        // Dropout masks come from each device's own random stream.
        dropout: 0.0,
        detail_tokens: s.tokens,
        detail_width: s.width,
        token_rank: 3,
        semantic_dim: s.dim,
    };
    let train_on = |cluster: &Cluster, out: &Path| {
        let results = run_peers(cluster, |peer: &Peer| {
            train_projector::<Autodiff<Flex>>(
                &config,
                &projector,
                &train,
                &validation,
                out,
                false,
                &FlexDevice,
                peer,
            )
        })
        .unwrap();
        let lead_only: Vec<bool> = results.iter().map(Option::is_some).collect();
        let mut expected = vec![false; cluster.devices.len()];
        expected[0] = true;
        assert_eq!(lead_only, expected, "only the lead peer returns the model");
        let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        let last = projector
            .init::<Flex>(&FlexDevice)
            .load_file(out.join("checkpoint/model"), &recorder, &FlexDevice)
            .unwrap();
        (
            weights(&last),
            results.into_iter().flatten().next().unwrap().1,
        )
    };
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    let (single, single_report) = train_on(&Cluster::single(ComputeDevice::Cpu), one.path());
    let pair = Cluster {
        devices: vec![ComputeDevice::Cpu, ComputeDevice::Cpu],
        nodes: None,
    };
    let (parallel, parallel_report) = train_on(&pair, two.path());

    let start = weights(&brainmclip::model::seeded_init(
        &FlexDevice,
        config.train.seed,
        || projector.init::<Flex>(&FlexDevice),
    ));
    let moved = max_difference(&start, &single);
    let apart = max_difference(&single, &parallel);
    assert!(
        moved > 100.0 * TOLERANCE,
        "training moved the weights by only {moved}"
    );
    assert!(
        apart <= TOLERANCE,
        "2 peers differ from 1 by {apart} (training moved weights by {moved})"
    );
    // The lead cannot write its checkpoint (the output folder is a file): both peers stop
    // with an error, the lead's naming the path, neither waits forever for the other.
    let blocked = tempfile::NamedTempFile::new().unwrap();
    let errors: Vec<String> = {
        let peers = pair.local_peers().unwrap();
        std::thread::scope(|scope| {
            let handles: Vec<_> = peers
                .iter()
                .map(|peer| {
                    let (config, projector) = (&config, &projector);
                    let (train, validation) = (&train, &validation);
                    let out = blocked.path();
                    scope.spawn(move || {
                        train_projector::<Autodiff<Flex>>(
                            config,
                            projector,
                            train,
                            validation,
                            out,
                            false,
                            &FlexDevice,
                            peer,
                        )
                        .err()
                        .map(|e| e.to_string())
                        .unwrap_or_default()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };
    assert!(errors[0].contains("checkpoint"), "lead: {}", errors[0]);
    assert!(
        errors[1].contains("writing the checkpoint failed on another peer"),
        "peer 1: {}",
        errors[1]
    );
    // The epoch losses every peer agreed on are the single run's.
    assert_eq!(parallel_report.log.len(), 3);
    for (a, b) in single_report.log.iter().zip(&parallel_report.log) {
        assert!(
            (a.train - b.train).abs() <= 1e-4 * a.train.abs(),
            "{} {}",
            a.train,
            b.train
        );
        assert!((a.validation - b.validation).abs() <= 1e-4 * a.validation.abs());
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn brainmclip() -> Command {
    Command::new(env!("CARGO_BIN_EXE_brainmclip"))
}

/// Kills the child when dropped (the orchestrator serves until interrupted).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn train_generator(encoder: &Path, config: &Path, out: &Path, extra: &[String]) -> Command {
    let mut c = brainmclip();
    c.args(["train-generator", "--encoder"])
        .arg(encoder)
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(out)
        .args(["--eval-images", "4"])
        .args(extra)
        .env("RUST_LOG", "warn");
    c
}

fn generator_weights(dir: &Path) -> Vec<f32> {
    let (_, model) =
        brainmclip::model::generator::files::load_generator::<Flex>(dir, &FlexDevice).unwrap();
    weights(&model)
}

/// The generator's settings for these tests (tiny: 16-pixel images, 4 steps of 6 images).
fn generator_setup(d: &Path) -> (PathBuf, PathBuf, Vec<f32>) {
    let encoder = d.join("encoder");
    common::tiny_encoder(&encoder);
    let config = d.join("generator.toml");
    std::fs::write(
        &config,
        "steps = 4\nbatch = 6\nwarmup_steps = 1\ncheckpoint_every = 2\nimage_size = 16\nlearning_rate = 0.002\n",
    )
    .unwrap();
    // The weights every run starts from: the seed's.
    let generator = brainmclip::model::conditioner::Conditioner::load(&encoder)
        .unwrap()
        .config_for(16);
    let seed = brainmclip::train::generator::GeneratorTrainConfig::default().seed;
    let start = weights(&brainmclip::model::seeded_init(&FlexDevice, seed, || {
        generator.init::<Flex>(&FlexDevice)
    }));
    (encoder, config, start)
}

fn succeeded(out: &std::process::Output, what: &str) -> String {
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{what}: {said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    said
}

/// The generator in `b` equals the one in `a` within the tolerance, and training moved it.
fn same_generator(start: &[f32], a: &Path, b: &Path) {
    let (one, two) = (generator_weights(a), generator_weights(b));
    let moved = max_difference(start, &one);
    let apart = max_difference(&one, &two);
    assert!(
        moved > 10.0 * TOLERANCE,
        "training moved the weights by only {moved}"
    );
    assert!(
        apart <= TOLERANCE,
        "the split run differs from the single one by {apart} (training moved weights by {moved})"
    );
}

#[test]
fn train_generator_on_two_cpu_peers_equals_one_peer_and_refuses_machines_it_cannot_serve() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (encoder, config, start) = generator_setup(d);
    let (single, split) = (d.join("single"), d.join("split"));
    let out = train_generator(&encoder, &config, &single, &[])
        .output()
        .unwrap();
    let said = succeeded(&out, "one peer");
    assert!(said.contains("steps 4 of 4"), "{said}");
    let two = ["--devices".to_string(), "cpu,cpu".to_string()];
    let out = train_generator(&encoder, &config, &split, &two)
        .output()
        .unwrap();
    succeeded(&out, "two peers");
    same_generator(&start, &single, &split);

    // The same from a folder of photographs (`--images`): their features cached once per run,
    // every peer drawing its rows of the same batch.
    let photos = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/photos/images");
    let images = ["--images".to_string(), photos.display().to_string()];
    let (single, split) = (d.join("single-photos"), d.join("split-photos"));
    let out = train_generator(&encoder, &config, &single, &images)
        .output()
        .unwrap();
    let said = succeeded(&out, "one peer, photographs");
    assert!(
        said.contains("evaluating on 1 images (held-out images of the folder)"),
        "{said}"
    );
    let out = train_generator(&encoder, &config, &split, &[&images[..], &two[..]].concat())
        .output()
        .unwrap();
    succeeded(&out, "two peers, photographs");
    same_generator(&start, &single, &split);

    // A batch that cannot give every peer a row is refused up front, naming both numbers.
    let three = [
        "--devices".to_string(),
        "cpu,cpu,cpu".to_string(),
        "--batch".into(),
        "2".into(),
    ];
    let out = train_generator(&encoder, &config, &d.join("small"), &three)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("batch 2 is smaller than the 3 data-parallel peers"),
        "{err}"
    );

    // Across machines: refused with the reason until burn-collective's defect is fixed.
    let nodes: Vec<String> = [
        "--nodes",
        "2",
        "--node-rank",
        "0",
        "--global-address",
        "ws://127.0.0.1:9",
        "--node-address",
        "ws://127.0.0.1:10",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = train_generator(&encoder, &config, &d.join("nodes"), &nodes)
        .env_remove("BRAINMCLIP_TRY_MULTI_MACHINE")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("hangs at the second all-reduce across machines"),
        "{err}"
    );
    assert!(
        !d.join("nodes").exists(),
        "nothing written for a refused run"
    );
}

/// Two processes on loopback through burn-collective's orchestrator. Ignored: burn-collective
/// 0.21.0 hangs at the second all-reduce across machines (its `SyncService::sync` clears a copy
/// of its peer list, not the list), so both nodes wait forever; this test gives them 120 s and
/// fails. Run it (`--ignored`) against a fixed burn before switching `--nodes` on.
#[test]
#[ignore = "burn-collective 0.21.0: multi-machine sync hangs at the second all-reduce"]
fn two_processes_on_loopback_train_the_generator_like_one_on_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (encoder, config, start) = generator_setup(d);
    let single = d.join("single");
    let out = train_generator(&encoder, &config, &single, &[])
        .output()
        .unwrap();
    succeeded(&out, "one process");

    let port = free_port();
    let orchestrator = brainmclip()
        .args(["orchestrator", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _orchestrator = Running(orchestrator);
    let global = format!("ws://127.0.0.1:{port}");
    let nodes: Vec<(PathBuf, Running)> = (0..2)
        .map(|rank| {
            let out = d.join(format!("node{rank}"));
            let flags: Vec<String> = [
                "--nodes",
                "2",
                "--node-rank",
                &rank.to_string(),
                "--global-address",
                &global,
                "--node-address",
                &format!("ws://127.0.0.1:{}", free_port()),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let child = train_generator(&encoder, &config, &out, &flags)
                .env("BRAINMCLIP_TRY_MULTI_MACHINE", "1")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            (out, Running(child))
        })
        .collect();
    let started = std::time::Instant::now();
    let mut said = Vec::new();
    for (out, mut node) in nodes {
        let status = loop {
            if let Some(status) = node.0.try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed().as_secs() < 120,
                "{}: still training after 120 s (the burn-collective hang)",
                out.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        };
        let mut text = String::new();
        use std::io::Read;
        if let Some(mut stdout) = node.0.stdout.take() {
            stdout.read_to_string(&mut text).unwrap();
        }
        assert!(status.success(), "{}: {text}", out.display());
        said.push((out, text));
    }
    // Rank 1 trained and wrote nothing; rank 0 wrote the generator.
    assert!(
        said[1]
            .1
            .contains("the node of rank 0 writes the generator"),
        "{}",
        said[1].1
    );
    assert!(!said[1].0.join("generator.mpk").exists());
    same_generator(&start, &single, &said[0].0);
}
