//! A linear probe: kernel ridge regression (dual form, so thousands of feature dimensions cost
//! an n x n solve), the penalty picked on a validation split of the training rows, scored by R²
//! on test rows. Used to show which encoder layers carry where objects are.

/// Row-major matrix helper: `rows` rows of `cols` values.
pub struct Rows<'a> {
    pub data: &'a [f32],
    pub cols: usize,
}

impl Rows<'_> {
    fn n(&self) -> usize {
        self.data.len() / self.cols
    }
    fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
}

/// Solves (K + lambda I) x = y for symmetric positive definite K (Cholesky), several right-hand
/// sides. `k` is n x n row-major, `y` n x m. None when not positive definite.
fn solve_spd(k: &[f64], n: usize, lambda: f64, y: &[f64], m: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = k[i * n + j] + if i == j { lambda } else { 0.0 };
            for p in 0..j {
                s -= l[i * n + p] * l[j * n + p];
            }
            if i == j {
                if s <= 0.0 {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    let mut x = y.to_vec();
    for c in 0..m {
        for i in 0..n {
            let mut s = x[i * m + c];
            for p in 0..i {
                s -= l[i * n + p] * x[p * m + c];
            }
            x[i * m + c] = s / l[i * n + i];
        }
        for i in (0..n).rev() {
            let mut s = x[i * m + c];
            for p in i + 1..n {
                s -= l[p * n + i] * x[p * m + c];
            }
            x[i * m + c] = s / l[i * n + i];
        }
    }
    Some(x)
}

/// Gram matrix of all rows after subtracting the mean of the first `n_mean` rows, n x n.
fn centred_gram(x: &Rows, n: usize, n_mean: usize) -> Vec<f64> {
    let d = x.cols;
    let mut mean = vec![0.0f64; d];
    for i in 0..n_mean {
        for (m, &v) in mean.iter_mut().zip(x.row(i)) {
            *m += v as f64 / n_mean as f64;
        }
    }
    let rows: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            x.row(i)
                .iter()
                .zip(&mean)
                .map(|(&v, &m)| v as f64 - m)
                .collect()
        })
        .collect();
    let mut g = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let v: f64 = rows[i].iter().zip(&rows[j]).map(|(a, b)| a * b).sum();
            g[i * n + j] = v;
            g[j * n + i] = v;
        }
    }
    g
}

/// Fits on rows `train` of the Gram matrix `g` (n x n) and predicts rows `test`.
fn fit_predict(
    g: &[f64],
    n_all: usize,
    y: &[[f64; 2]],
    train: &[usize],
    test: &[usize],
    lambda_scale: f64,
) -> Option<Vec<[f64; 2]>> {
    let n = train.len();
    let k: Vec<f64> = train
        .iter()
        .flat_map(|&i| train.iter().map(move |&j| g[i * n_all + j]))
        .collect();
    let trace: f64 = (0..n).map(|i| k[i * n + i]).sum::<f64>() / n as f64;
    let ybar = [0, 1].map(|c| train.iter().map(|&i| y[i][c]).sum::<f64>() / n as f64);
    let yc: Vec<f64> = train
        .iter()
        .flat_map(|&i| [y[i][0] - ybar[0], y[i][1] - ybar[1]])
        .collect();
    let alpha = solve_spd(&k, n, lambda_scale * trace.max(1e-12), &yc, 2)?;
    Some(
        test.iter()
            .map(|&t| {
                [0, 1].map(|c| {
                    ybar[c]
                        + train
                            .iter()
                            .enumerate()
                            .map(|(a, &i)| g[t * n_all + i] * alpha[a * 2 + c])
                            .sum::<f64>()
                })
            })
            .collect(),
    )
}

/// R² averaged over the two targets.
pub fn r_squared(pred: &[[f64; 2]], truth: &[[f64; 2]]) -> f64 {
    let mut total = 0.0;
    for c in 0..2 {
        let mean = truth.iter().map(|t| t[c]).sum::<f64>() / truth.len() as f64;
        let sst: f64 = truth.iter().map(|t| (t[c] - mean).powi(2)).sum();
        let sse: f64 = pred
            .iter()
            .zip(truth)
            .map(|(p, t)| (p[c] - t[c]).powi(2))
            .sum();
        total += 1.0 - sse / sst.max(1e-12);
    }
    total / 2.0
}

/// Test R² of a ridge probe from features `x` (one row per sample) to 2-D targets `y`: rows
/// `0..n_train` train (the last fifth of them choose the penalty), the rest test.
pub fn ridge_probe_r2(x: &Rows, y: &[[f64; 2]], n_train: usize) -> f64 {
    let n = x.n().min(y.len());
    let truth: Vec<[f64; 2]> = (n_train.min(n)..n).map(|i| y[i]).collect();
    ridge_probe(x, y, n_train).map_or(f64::NEG_INFINITY, |p| r_squared(&p, &truth))
}

/// Pearson correlation of predictions with the truth, averaged over the two targets: unlike R²
/// it does not punish predictions that are right but shrunk towards the mean.
pub fn correlation(pred: &[[f64; 2]], truth: &[[f64; 2]]) -> f64 {
    let mut total = 0.0;
    for c in 0..2 {
        let n = truth.len().max(1) as f64;
        let mp = pred.iter().map(|p| p[c]).sum::<f64>() / n;
        let mt = truth.iter().map(|t| t[c]).sum::<f64>() / n;
        let (mut spt, mut spp, mut stt) = (0.0, 0.0, 0.0);
        for (p, t) in pred.iter().zip(truth) {
            spt += (p[c] - mp) * (t[c] - mt);
            spp += (p[c] - mp).powi(2);
            stt += (t[c] - mt).powi(2);
        }
        total += spt / (spp * stt).sqrt().max(1e-30);
    }
    total / 2.0
}

/// The probe's predictions for the test rows (`n_train..`), None when the solve fails.
pub fn ridge_probe(x: &Rows, y: &[[f64; 2]], n_train: usize) -> Option<Vec<[f64; 2]>> {
    let n = x.n().min(y.len());
    let n_train = n_train.min(n);
    let split = n_train * 4 / 5;
    let (fit, val): (Vec<usize>, Vec<usize>) = ((0..split).collect(), (split..n_train).collect());
    let truth_val: Vec<[f64; 2]> = val.iter().map(|&i| y[i]).collect();
    let g = centred_gram(x, n, n_train);
    let best = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]
        .into_iter()
        .filter_map(|l| {
            fit_predict(&g, n, y, &fit, &val, l).map(|p| (l, r_squared(&p, &truth_val)))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(1.0, |(l, _)| l);
    let train: Vec<usize> = (0..n_train).collect();
    let test: Vec<usize> = (n_train..n).collect();
    fit_predict(&g, n, y, &train, &test, best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_linear_map_and_fails_on_noise() {
        // y = W x with 40-dim x: a linear probe should be near perfect; on unrelated x near 0.
        let n = 300;
        let d = 40;
        let mut state = 12345u64;
        let mut rnd = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f64 / (1u64 << 31) as f64) - 0.5
        };
        let x: Vec<f32> = (0..n * d).map(|_| rnd() as f32).collect();
        let noise: Vec<f32> = (0..n * d).map(|_| rnd() as f32).collect();
        let y: Vec<[f64; 2]> = (0..n)
            .map(|i| {
                let r = &x[i * d..(i + 1) * d];
                [
                    r[0] as f64 * 2.0 + r[3] as f64,
                    r[5] as f64 - r[7] as f64 * 0.5,
                ]
            })
            .collect();
        let good = ridge_probe_r2(&Rows { data: &x, cols: d }, &y, 200);
        let bad = ridge_probe_r2(
            &Rows {
                data: &noise,
                cols: d,
            },
            &y,
            200,
        );
        assert!(good > 0.95, "{good}");
        assert!(bad < 0.2, "{bad}");
    }

    #[test]
    fn cholesky_solves_a_small_system() {
        // [[4,2],[2,3]] x = [2, 5] -> x = [-0.5, 2].
        let x = solve_spd(&[4.0, 2.0, 2.0, 3.0], 2, 0.0, &[2.0, 5.0], 1).expect("spd");
        assert!(
            (x[0] + 0.5).abs() < 1e-12 && (x[1] - 2.0).abs() < 1e-12,
            "{x:?}"
        );
    }
}
