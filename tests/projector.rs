//! The projector's calibration files and training: save → load gives identical outputs, a
//! calibration refuses masks with other voxel counts, and training lowers the loss on a small
//! problem with a known answer.

use burn::backend::flex::FlexDevice;
use burn::backend::{Autodiff, Flex};

use brainmclip::model::calibration::{Calibration, CalibrationInfo, Normalisation};
use brainmclip::model::device::ComputeDevice;
use brainmclip::model::projector::ProjectorConfig;
use brainmclip::train::calibrate::{CalibrateConfig, TrainSettings};
use brainmclip::train::parallel::Peer;
use brainmclip::train::projector_train::{train_projector, DataShape, Dataset};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn config(vd: usize, vs: usize) -> ProjectorConfig {
    ProjectorConfig {
        detail_voxels: vd,
        semantic_voxels: vs,
        embed_dim: 32,
        blocks: 1,
        dropout: 0.0,
        detail_tokens: 5,
        detail_width: 8,
        token_rank: 3,
        semantic_dim: 6,
    }
}

fn norm(c: &ProjectorConfig, rng: &mut ChaCha8Rng) -> Normalisation {
    let mut v = |n: usize, base: f32| -> Vec<f32> {
        (0..n).map(|_| base + rng.random_range(0.0..0.5)).collect()
    };
    Normalisation {
        detail_mean: v(c.detail_voxels, -0.2),
        detail_std: v(c.detail_voxels, 0.8),
        semantic_mean: v(c.semantic_voxels, -0.2),
        semantic_std: v(c.semantic_voxels, 0.8),
        token_mean: v(c.detail_width, 0.1),
        token_std: v(c.detail_width, 1.0),
        embedding_mean: v(c.semantic_dim, 0.1),
        embedding_std: v(c.semantic_dim, 1.0),
    }
}

#[test]
fn saved_calibration_loads_to_identical_outputs_and_refuses_other_masks() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let c = config(40, 12);
    // Materialised now: lazily initialised parameters would be drawn separately by each clone.
    let model = brainmclip::model::seeded_init(&FlexDevice, 3, || c.init::<Flex>(&FlexDevice));
    let info = CalibrationInfo {
        preprocess: None,
        projector: c.clone(),
        targets: "multi".into(),
        detail_layers: (2, 5),
        encoder: "x".into(),
        subject: "01".into(),
    };
    let n = norm(&c, &mut rng);
    let dir = tempfile::tempdir().unwrap();
    Calibration::<Flex>::save(dir.path(), &info, &n, &model).unwrap();
    let loaded = Calibration::<Flex>::load(dir.path(), &FlexDevice).unwrap();
    assert_eq!(loaded.info, info);
    assert_eq!(loaded.norm, n);
    let detail: Vec<f32> = (0..2 * 40).map(|_| rng.random_range(-2.0..2.0)).collect();
    let semantic: Vec<f32> = (0..2 * 12).map(|_| rng.random_range(-2.0..2.0)).collect();
    let original = Calibration {
        info: info.clone(),
        norm: n.clone(),
        projector: model,
        dir: dir.path().to_owned(),
    };
    let a = original.decode(&detail, &semantic, &FlexDevice);
    let b = loaded.decode(&detail, &semantic, &FlexDevice);
    assert_eq!(a.len(), 2);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.detail_tokens.len(), 5 * 8);
        assert_eq!(x.detail_tokens, y.detail_tokens);
        assert_eq!(x.embedding, y.embedding);
    }
    loaded.check_voxels(40, 12).unwrap();
    let err = loaded.check_voxels(41, 12).unwrap_err().to_string();
    assert!(
        err.contains("projector.json") && err.contains("40 detail") && err.contains("41"),
        "{err}"
    );
}

/// Voxels that are a fixed random linear image of the targets plus noise: a learnable map.
fn synthetic(n: usize, seed: u64) -> Dataset {
    let shape = DataShape {
        detail_voxels: 60,
        semantic_voxels: 20,
        tokens: 5,
        width: 8,
        dim: 6,
    };
    let mut weights = ChaCha8Rng::seed_from_u64(99);
    let latent = 6;
    let wd: Vec<f32> = (0..latent * 60)
        .map(|_| weights.random_range(-1.0..1.0))
        .collect();
    let ws: Vec<f32> = (0..latent * 20)
        .map(|_| weights.random_range(-1.0..1.0))
        .collect();
    let wt: Vec<f32> = (0..latent * 40)
        .map(|_| weights.random_range(-1.0..1.0))
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut ds = Dataset {
        ids: Vec::new(),
        detail: Vec::new(),
        semantic: Vec::new(),
        tokens: Vec::new(),
        embedding: Vec::new(),
        shape,
    };
    let project = |z: &[f32], w: &[f32], out: usize| -> Vec<f32> {
        (0..out)
            .map(|o| (0..z.len()).map(|k| z[k] * w[k * out + o]).sum::<f32>())
            .collect()
    };
    for i in 0..n {
        let z: Vec<f32> = (0..latent).map(|_| rng.random_range(-1.0..1.0)).collect();
        ds.ids.push(format!("s{i}"));
        let noisy = |v: Vec<f32>, rng: &mut ChaCha8Rng| -> Vec<f32> {
            v.into_iter()
                .map(|x| x + rng.random_range(-0.3..0.3))
                .collect()
        };
        let d = noisy(project(&z, &wd, 60), &mut rng);
        let s = noisy(project(&z, &ws, 20), &mut rng);
        ds.detail.extend(d);
        ds.semantic.extend(s);
        ds.tokens.extend(project(&z, &wt, 40));
        ds.embedding.extend(z.iter().map(|v| v * 2.0));
    }
    ds
}

#[test]
fn training_lowers_the_validation_loss_and_resumes() {
    let train = synthetic(160, 1);
    let validation = synthetic(40, 2);
    let mut c = config(60, 20);
    c.detail_width = 8;
    c.semantic_dim = 6;
    let calibrate = CalibrateConfig {
        train: TrainSettings {
            epochs: 30,
            batch: 16,
            learning_rate: 3e-3,
            patience: 100,
            input_noise: 0.0,
            ..TrainSettings::default()
        },
        ..CalibrateConfig::default()
    };
    let out = tempfile::tempdir().unwrap();
    let (_, report) = train_projector::<Autodiff<Flex>>(
        &calibrate,
        &c,
        &train,
        &validation,
        out.path(),
        false,
        &FlexDevice,
        &Peer::solo(ComputeDevice::Cpu),
    )
    .unwrap()
    .unwrap();
    let first = report.log[0].validation;
    assert_eq!(report.epochs_run, 30);
    assert!(
        report.best_validation < 0.6 * first,
        "{first} -> {}",
        report.best_validation
    );
    // Every weighted term is logged on its own.
    for term in [
        "token_mse",
        "semantic_contrastive",
        "cross_reconstruction",
        "input_l2",
    ] {
        assert!(report.log[0].terms.contains_key(term), "{term}");
    }
    // A second call finds the finished checkpoint and trains no further epoch.
    let (_, again) = train_projector::<Autodiff<Flex>>(
        &calibrate,
        &c,
        &train,
        &validation,
        out.path(),
        false,
        &FlexDevice,
        &Peer::solo(ComputeDevice::Cpu),
    )
    .unwrap()
    .unwrap();
    assert_eq!(again.resumed_from, 30);
    assert_eq!(again.best_validation, report.best_validation);
    // Other settings are refused rather than silently mixed.
    let mut other = calibrate.clone();
    other.train.learning_rate = 1e-4;
    let err = match train_projector::<Autodiff<Flex>>(
        &other,
        &c,
        &train,
        &validation,
        out.path(),
        false,
        &FlexDevice,
        &Peer::solo(ComputeDevice::Cpu),
    ) {
        Ok(_) => panic!("a checkpoint with other settings must be refused"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("state.json") && err.contains("other calibration settings"),
        "{err}"
    );
}
