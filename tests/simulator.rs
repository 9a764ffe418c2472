//! The simulator against its promises: reproducible to the byte, the requested tSNR, motion that
//! the ground-truth file describes, and a signal a decoder can find (and cannot with shuffled
//! labels).

// Small dense linear algebra reads best with explicit indices.
#![allow(clippy::needless_range_loop)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use brainmclip::geometry::rotation;
use brainmclip::ingest::RunReader;
use brainmclip::sim::stimuli::render;
use brainmclip::sim::{session_stimuli, simulate, SimConfig};

fn small_config() -> SimConfig {
    SimConfig {
        train_runs: 1,
        test_runs: 1,
        volumes_per_run: 60,
        image_size: 32,
        ..SimConfig::default()
    }
}

fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(
                    path.strip_prefix(root).unwrap().to_owned(),
                    std::fs::read(&path).unwrap(),
                );
            }
        }
    }
    out
}

fn read_run(path: &Path) -> (Vec<Vec<f32>>, [usize; 3]) {
    let mut reader = RunReader::open(path, 1 << 24).unwrap();
    let dims = reader.header().spatial_dims();
    let mut volumes = Vec::new();
    while let Some(v) = reader.next_volume() {
        volumes.push(v.unwrap().0);
    }
    (volumes, dims)
}

fn read_tsv(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

fn labels(root: &Path) -> Vec<u8> {
    let (v, _) = read_run_3d(&root.join("sub-01/anat/sub-01_desc-visual_dseg.nii.gz"));
    v.iter().map(|&x| x as u8).collect()
}

fn read_run_3d(path: &Path) -> (Vec<f32>, [usize; 3]) {
    let d = brainmclip::ingest::read_volume_file(path, 1 << 24).unwrap();
    let dims = d.header.spatial_dims();
    (d.data, dims)
}

#[test]
fn same_seed_gives_identical_bytes_and_another_seed_differs() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config();
    simulate(&config, &dir.path().join("a"), 3).unwrap();
    simulate(&config, &dir.path().join("b"), 3).unwrap();
    simulate(&config, &dir.path().join("c"), 4).unwrap();
    let (a, b, c) = (
        files(&dir.path().join("a")),
        files(&dir.path().join("b")),
        files(&dir.path().join("c")),
    );
    assert!(a.len() > 30, "{} files", a.len());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, bytes) in &a {
        assert!(
            bytes == &b[name],
            "{} differs between two runs with the same seed",
            name.display()
        );
    }
    let bold = PathBuf::from("sub-01/func/sub-01_task-images_run-01_bold.nii.gz");
    assert_ne!(a[&bold], c[&bold]);
    let stim = PathBuf::from("stimuli/stimuli.tsv");
    assert_ne!(a[&stim], c[&stim]);
    // The BIDS pieces are there and say what they should.
    let sidecar: serde_json::Value = serde_json::from_slice(
        &a[&PathBuf::from("sub-01/func/sub-01_task-images_run-01_bold.json")],
    )
    .unwrap();
    assert_eq!(sidecar["RepetitionTime"], 1.5);
    let events = String::from_utf8(
        a[&PathBuf::from("sub-01/func/sub-01_task-images_run-01_events.tsv")].clone(),
    )
    .unwrap();
    assert!(
        events.starts_with(
            "onset\tduration\ttrial_type\tstim_file\n6.000\t3.000\ttrain\tstimuli/train"
        ),
        "{events}"
    );
}

/// Residuals of a least-squares fit of `y` on 1, t, t².
fn detrend_quadratic(t: &[f64], y: &[f64]) -> Vec<f64> {
    let basis = |x: f64| [1.0, x, x * x];
    let mut a = [[0.0f64; 3]; 3];
    let mut b = [0.0f64; 3];
    for (&x, &v) in t.iter().zip(y) {
        let f = basis(x);
        for r in 0..3 {
            b[r] += f[r] * v;
            for c in 0..3 {
                a[r][c] += f[r] * f[c];
            }
        }
    }
    for col in 0..3 {
        for row in col + 1..3 {
            let m = a[row][col] / a[col][col];
            for c in col..3 {
                a[row][c] -= m * a[col][c];
            }
            b[row] -= m * b[col];
        }
    }
    let mut coef = [0.0f64; 3];
    for row in (0..3).rev() {
        coef[row] = (b[row] - (row + 1..3).map(|c| a[row][c] * coef[c]).sum::<f64>()) / a[row][row];
    }
    t.iter()
        .zip(y)
        .map(|(&x, &v)| v - basis(x).iter().zip(&coef).map(|(f, c)| f * c).sum::<f64>())
        .collect()
}

#[test]
fn measured_tsnr_is_within_ten_percent_of_the_request() {
    let dir = tempfile::tempdir().unwrap();
    for requested in [40.0f32, 90.0] {
        let config = SimConfig {
            tsnr: requested,
            motion: false,
            ..small_config()
        };
        let out = dir.path().join(format!("t{requested}"));
        simulate(&config, &out, 7).unwrap();
        let (volumes, _) = read_run(&out.join("sub-01/func/sub-01_task-images_run-01_bold.nii.gz"));
        let volumes = &volumes[config.dummy_scans..];
        let labels = labels(&out);
        // Grey matter that does not respond: noise only. Detrend (quadratic) as tSNR is measured.
        let n = volumes.len();
        let t: Vec<f64> = (0..n)
            .map(|k| 2.0 * k as f64 / (n - 1) as f64 - 1.0)
            .collect();
        let mut tsnr: Vec<f64> = (0..labels.len())
            .filter(|&i| labels[i] == 9)
            .step_by(7)
            .map(|i| {
                let y: Vec<f64> = volumes.iter().map(|v| v[i] as f64).collect();
                let mean = y.iter().sum::<f64>() / n as f64;
                let resid = detrend_quadratic(&t, &y);
                let sd = (resid.iter().map(|e| e * e).sum::<f64>() / n as f64).sqrt();
                mean / sd
            })
            .collect();
        tsnr.sort_by(f64::total_cmp);
        let median = tsnr[tsnr.len() / 2];

        let error = (median - requested as f64).abs() / requested as f64;
        assert!(
            error < 0.10,
            "requested tSNR {requested}, measured {median:.1} ({:.1} % off)",
            error * 100.0
        );
    }
}

#[test]
fn the_motion_file_describes_the_motion_in_the_images() {
    let dir = tempfile::tempdir().unwrap();
    // Evoked signal, drift and physiological noise shift the intensity-weighted centre a little
    // on their own; switch them off so the check sees motion (and thermal noise) only. What
    // remains is the head touching the top and bottom of the 108 mm slab (a few hundredths of a
    // mm in z): hence 0.1 mm, against motions of up to a few mm.
    let config = SimConfig {
        motion_step: 0.15,
        spike_probability: 0.05,
        spike_size: 1.5,
        psc_v1: 0.0,
        psc_v2: 0.0,
        psc_v3: 0.0,
        psc_hv4: 0.0,
        psc_high: 0.0,
        drift_percent: 0.0,
        physio_fraction: 0.0,
        ..small_config()
    };
    simulate(&config, dir.path(), 5).unwrap();
    let (volumes, dims) = read_run(
        &dir.path()
            .join("sub-01/func/sub-01_task-images_run-01_bold.nii.gz"),
    );
    let truth: Vec<[f32; 6]> = read_tsv(
        &dir.path()
            .join("derivatives/sim/sub-01/sub-01_task-images_run-01_motion.tsv"),
    )
    .iter()
    .map(|r| std::array::from_fn(|i| r[i + 1].parse().unwrap()))
    .collect();
    assert_eq!(truth.len(), volumes.len());
    let largest = truth
        .iter()
        .flat_map(|p| p.iter())
        .fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(
        largest > 0.5,
        "the walk should move the head noticeably ({largest})"
    );
    // Intensity-weighted centre and second moments of the head, in mm from the grid centre.
    let moments = |v: &[f32]| {
        let mut w = 0.0f64;
        let mut c = [0.0f64; 3];
        let mut pts = Vec::new();
        for k in 0..dims[2] {
            for j in 0..dims[1] {
                for i in 0..dims[0] {
                    // Raw intensity as the weight: linear interpolation moves the first moment of the
                    // intensity exactly with the head (any threshold would not).
                    let x = v[i + dims[0] * (j + dims[1] * k)] as f64;
                    let p = [i, j, k]
                        .map(|a| a as f64)
                        .iter()
                        .zip(dims)
                        .map(|(a, d)| (a - (d as f64 - 1.0) / 2.0) * 3.0)
                        .collect::<Vec<_>>();
                    w += x;
                    for d in 0..3 {
                        c[d] += x * p[d];
                    }
                    pts.push((x, [p[0], p[1], p[2]]));
                }
            }
        }
        let c = c.map(|s| s / w);
        let mut m = [[0.0f64; 3]; 3];
        for (x, p) in &pts {
            for a in 0..3 {
                for b in 0..3 {
                    m[a][b] += x * (p[a] - c[a]) * (p[b] - c[b]) / w;
                }
            }
        }
        (c, m)
    };
    let reference = config.dummy_scans + 1;
    let (c0, m0) = moments(&volumes[reference]);
    let p0 = truth[reference];
    let mut rotation_checked = 0;
    for (t, volume) in volumes.iter().enumerate().skip(reference + 1) {
        let (c, m) = moments(volume);
        let p = truth[t];
        // A head point x sits at R0 x + t0 in the reference and at R x + t now, so the centre
        // moves to R R0^T (c0 - t0) + t, and the second moments to Rrel M0 Rrel^T.
        let r = rotation(&p);
        let r0 = rotation(&p0);
        let rel: [[f64; 3]; 3] = std::array::from_fn(|a| {
            std::array::from_fn(|b| (0..3).map(|k| r[a][k] as f64 * r0[b][k] as f64).sum())
        });
        let back: Vec<f64> = (0..3).map(|d| c0[d] - p0[d] as f64).collect();
        for d in 0..3 {
            let expected = (0..3).map(|k| rel[d][k] * back[k]).sum::<f64>() + p[d] as f64;
            assert!(
                (c[d] - expected).abs() < 0.1,
                "volume {t} axis {d}: centre {:.3} mm, truth says {expected:.3}",
                c[d]
            );
        }
        let rotated: [[f64; 3]; 3] = std::array::from_fn(|a| {
            std::array::from_fn(|b| {
                (0..3)
                    .map(|i| {
                        (0..3)
                            .map(|j| rel[a][i] * m0[i][j] * rel[b][j])
                            .sum::<f64>()
                    })
                    .sum()
            })
        });
        let err = |x: &[[f64; 3]; 3]| {
            (0..3)
                .flat_map(|a| (0..3).map(move |b| (a, b)))
                .map(|(a, b)| (m[a][b] - x[a][b]).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        let turned = (3..6).map(|d| (p[d] - p0[d]).abs()).fold(0.0f32, f32::max);
        if turned > 0.8 {
            assert!(
                err(&rotated) < 0.5 * err(&m0),
                "volume {t}: rotation in the images does not follow the file"
            );
            rotation_checked += 1;
        }
    }
    assert!(
        rotation_checked > 0,
        "no volume turned enough to check rotations"
    );
}

/// Solves (K + lambda I) A = Y for symmetric positive-definite K by Cholesky.
fn ridge_dual(k: &[Vec<f64>], y: &[Vec<f64>], lambda: f64) -> Vec<Vec<f64>> {
    let n = k.len();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = k[i][j] + if i == j { lambda } else { 0.0 };
            for p in 0..j {
                s -= l[i][p] * l[j][p];
            }
            l[i][j] = if i == j { s.sqrt() } else { s / l[j][j] };
        }
    }
    let cols = y[0].len();
    let mut a = vec![vec![0.0; cols]; n];
    for c in 0..cols {
        let mut z = vec![0.0; n];
        for i in 0..n {
            z[i] = (y[i][c] - (0..i).map(|p| l[i][p] * z[p]).sum::<f64>()) / l[i][i];
        }
        for i in (0..n).rev() {
            a[i][c] = (z[i] - (i + 1..n).map(|p| l[p][i] * a[p][c]).sum::<f64>()) / l[i][i];
        }
    }
    a
}

fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt().max(1e-12)
}

#[test]
fn low_level_responses_identify_held_out_images_and_shuffled_labels_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let config = SimConfig {
        train_runs: 3,
        test_runs: 1,
        ..SimConfig::default()
    };
    let seed = 21;
    simulate(&config, dir.path(), seed).unwrap();
    let stimuli = session_stimuli(&config, seed);
    let id_to_index: BTreeMap<String, usize> = stimuli
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.clone(), i))
        .collect();
    let labels = labels(dir.path());
    let low: Vec<usize> = (0..labels.len())
        .filter(|&i| (1..=4).contains(&labels[i]))
        .collect();

    // Per-trial responses: z-score each voxel over the run, average the volumes 4.5-7.5 s after
    // onset (around the peak of a 3 s stimulus's response).
    let mut train: Vec<(usize, Vec<f64>)> = Vec::new();
    let mut test: BTreeMap<usize, Vec<Vec<f64>>> = BTreeMap::new();
    for run in 1..=4 {
        let func = dir.path().join("sub-01/func");
        let (volumes, _) =
            read_run(&func.join(format!("sub-01_task-images_run-{run:02}_bold.nii.gz")));
        let volumes = &volumes[config.dummy_scans..];
        let z: Vec<Vec<f64>> = low
            .iter()
            .map(|&i| {
                let y: Vec<f64> = volumes.iter().map(|v| v[i] as f64).collect();
                let m = y.iter().sum::<f64>() / y.len() as f64;
                let sd = (y.iter().map(|v| (v - m).powi(2)).sum::<f64>() / y.len() as f64)
                    .sqrt()
                    .max(1e-9);
                y.iter().map(|v| (v - m) / sd).collect()
            })
            .collect();
        for row in read_tsv(&func.join(format!("sub-01_task-images_run-{run:02}_events.tsv"))) {
            let onset: f64 = row[0].parse().unwrap();
            let id = row[3]
                .trim_start_matches("stimuli/")
                .trim_end_matches(".png");
            let first = ((onset + 4.5) / config.tr).ceil() as usize - config.dummy_scans;
            let last = ((onset + 7.5) / config.tr).floor() as usize - config.dummy_scans;
            let response: Vec<f64> = z
                .iter()
                .map(|ts| (first..=last).map(|k| ts[k]).sum::<f64>() / (last - first + 1) as f64)
                .collect();
            let s = id_to_index[id];
            if row[2] == "train" {
                train.push((s, response));
            } else {
                test.entry(s).or_default().push(response);
            }
        }
    }
    // Targets: the images at 16 x 16, RGB.
    let target = |s: usize| -> Vec<f64> {
        let size = config.image_size;
        let px = render(&stimuli[s], size);
        let f = size / 16;
        (0..16 * 16 * 3)
            .map(|k| {
                let (c, p) = (k % 3, k / 3);
                let (y, x) = (p / 16, p % 16);
                (0..f * f)
                    .map(|q| px[(y * f + q / f) * size + x * f + q % f][c] as f64)
                    .sum::<f64>()
                    / (f * f) as f64
            })
            .collect()
    };
    let test_items: Vec<(usize, Vec<f64>)> = test
        .iter()
        .map(|(s, reps)| {
            (
                *s,
                (0..reps[0].len())
                    .map(|v| reps.iter().map(|r| r[v]).sum::<f64>() / reps.len() as f64)
                    .collect(),
            )
        })
        .collect();
    assert!(
        train.len() >= 200 && test_items.len() >= 20,
        "{} train, {} test",
        train.len(),
        test_items.len()
    );

    let identify = |train_targets: &[Vec<f64>]| -> f64 {
        let k: Vec<Vec<f64>> = train
            .iter()
            .map(|(_, a)| {
                train
                    .iter()
                    .map(|(_, b)| a.iter().zip(b).map(|(x, y)| x * y).sum())
                    .collect()
            })
            .collect();
        let lambda = 0.5 * (0..k.len()).map(|i| k[i][i]).sum::<f64>() / k.len() as f64;
        let mean: Vec<f64> = (0..train_targets[0].len())
            .map(|c| train_targets.iter().map(|t| t[c]).sum::<f64>() / train_targets.len() as f64)
            .collect();
        let centred: Vec<Vec<f64>> = train_targets
            .iter()
            .map(|t| t.iter().zip(&mean).map(|(a, b)| a - b).collect())
            .collect();
        let a = ridge_dual(&k, &centred, lambda);
        let predictions: Vec<Vec<f64>> = test_items
            .iter()
            .map(|(_, x)| {
                let kx: Vec<f64> = train
                    .iter()
                    .map(|(_, b)| x.iter().zip(b).map(|(p, q)| p * q).sum())
                    .collect();
                (0..mean.len())
                    .map(|c| mean[c] + kx.iter().zip(&a).map(|(w, row)| w * row[c]).sum::<f64>())
                    .collect()
            })
            .collect();
        let truths: Vec<Vec<f64>> = test_items.iter().map(|(s, _)| target(*s)).collect();
        let (mut right, mut total) = (0, 0);
        for i in 0..truths.len() {
            let own = correlation(&predictions[i], &truths[i]);
            for j in 0..truths.len() {
                if i != j {
                    total += 1;
                    if own > correlation(&predictions[i], &truths[j]) {
                        right += 1;
                    }
                }
            }
        }
        right as f64 / total as f64
    };
    let targets: Vec<Vec<f64>> = train.iter().map(|(s, _)| target(*s)).collect();
    let accuracy = identify(&targets);
    // Shuffled: each training response paired with another image.
    let mut shuffled = targets.clone();
    shuffled.rotate_left(targets.len() / 3);
    let chance = identify(&shuffled);
    eprintln!("2-way identification: {accuracy:.3} (shuffled labels: {chance:.3})");
    assert!(accuracy > 0.75, "identification {accuracy:.3}");
    assert!(
        (chance - 0.5).abs() < 0.12,
        "shuffled labels should be at chance, got {chance:.3}"
    );
}
