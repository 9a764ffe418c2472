//! Ridge regression from the same voxels to the same targets as the projector: the baseline
//! the field uses (Brain-Diffuser maps fMRI to CLIP features with ridge), one linear map per
//! stream (detail voxels → detail tokens, semantic voxels → the image embedding), each penalty
//! chosen on the calibration's validation split. `eval --ridge` fits it on the calibration's
//! own training split and normalisation, so both decoders see exactly the same trials; it is
//! never saved and never used live.
//!
//! Dual (kernel) form through one eigendecomposition of the training trials' Gram matrix: with
//! fewer trials than voxels that is the small side, and every penalty tried costs products,
//! not another solve.

use faer::{Mat, MatRef, Side};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum RidgeError {
    #[error("ridge: {0}")]
    Shape(String),
    #[error("ridge: the eigendecomposition of the trials' Gram matrix did not converge")]
    NoConvergence,
}

/// Rows of one design: `rows` x `cols`, row-major.
#[derive(Debug, Clone, Copy)]
pub struct Design<'a> {
    pub data: &'a [f32],
    pub cols: usize,
}

impl<'a> Design<'a> {
    pub fn new(data: &'a [f32], cols: usize) -> Design<'a> {
        Design { data, cols }
    }
    pub fn rows(&self) -> usize {
        self.data.len() / self.cols.max(1)
    }
    /// As f64, each column centred on `mean`.
    fn centred(&self, mean: &[f64]) -> Mat<f64> {
        let c = self.cols;
        Mat::from_fn(self.rows(), c, |i, j| self.data[i * c + j] as f64 - mean[j])
    }
    fn column_means(&self) -> Vec<f64> {
        let (n, c) = (self.rows(), self.cols);
        let mut mean = vec![0.0; c];
        for i in 0..n {
            for (m, &v) in mean.iter_mut().zip(&self.data[i * c..(i + 1) * c]) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
        mean
    }
}

/// The penalty kept for one stream and how the validation split scored it.
#[derive(Debug, Clone, Serialize)]
pub struct RidgeChoice {
    /// The penalty, as a multiple of the Gram matrix's mean eigenvalue.
    pub relative_penalty: f64,
    /// 1 - SSE/SST over all target columns, on the validation trials.
    pub validation_r2: f64,
    /// Every penalty tried with its validation R².
    pub tried: Vec<(f64, f64)>,
}

/// Penalties tried, relative to the mean eigenvalue of the training Gram matrix.
pub const RELATIVE_PENALTIES: [f64; 9] = [1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0];

/// Fits `x → y` on the training rows, picks the penalty with the best validation R², and
/// predicts `test` (row-major, `y.cols` columns per row).
pub fn fit_predict(
    x: Design,
    y: Design,
    validation: (Design, Design),
    test: Design,
) -> Result<(Vec<f32>, RidgeChoice), RidgeError> {
    let (vx, vy) = validation;
    let n = x.rows();
    if n < 2 || y.rows() != n || vx.rows() != vy.rows() || vx.rows() == 0 {
        return Err(RidgeError::Shape(format!(
            "{n} training rows with {} targets, {} validation rows with {} targets",
            y.rows(),
            vx.rows(),
            vy.rows()
        )));
    }
    if vx.cols != x.cols || test.cols != x.cols || vy.cols != y.cols {
        return Err(RidgeError::Shape(format!(
            "inputs of {} / {} / {} columns (training / validation / test), targets of {} / {}",
            x.cols, vx.cols, test.cols, y.cols, vy.cols
        )));
    }
    let (x_mean, y_mean) = (x.column_means(), y.column_means());
    let xc = x.centred(&x_mean);
    let yc = y.centred(&y_mean);
    let gram = xc.as_ref() * xc.as_ref().transpose();
    let evd = gram
        .self_adjoint_eigen(Side::Lower)
        .map_err(|_| RidgeError::NoConvergence)?;
    let (u, s) = (evd.U(), evd.S().column_vector());
    let eigen: Vec<f64> = (0..n).map(|i| s[i].max(0.0)).collect();
    let mean_eigen = (eigen.iter().sum::<f64>() / n as f64).max(1e-12);
    let ut_y = u.transpose() * yc.as_ref();
    // Predictions of rows `k` (their kernel against the training rows, times U) at a penalty.
    let predict = |k_u: MatRef<f64>, lambda: f64| -> Mat<f64> {
        let scaled = Mat::from_fn(n, y.cols, |i, j| ut_y[(i, j)] / (eigen[i] + lambda));
        k_u * scaled.as_ref()
    };
    let kernel_u = |rows: Design| -> Mat<f64> {
        let c = rows.centred(&x_mean);
        let k = c.as_ref() * xc.as_ref().transpose();
        k.as_ref() * u
    };
    let val_k_u = kernel_u(vx);
    let truth = vy.centred(&y_mean);
    // About the validation rows' own means, as R² is usually defined.
    let sst = validation_sst(vy);
    let mut tried = Vec::new();
    for rel in RELATIVE_PENALTIES {
        let p = predict(val_k_u.as_ref(), rel * mean_eigen);
        let mut sse = 0.0;
        for i in 0..vy.rows() {
            for j in 0..vy.cols {
                sse += (p[(i, j)] - truth[(i, j)]).powi(2);
            }
        }
        tried.push((rel, 1.0 - sse / sst.max(1e-30)));
    }
    let &(relative_penalty, validation_r2) = tried
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .ok_or_else(|| RidgeError::Shape("no penalty to try".into()))?;
    let p = predict(kernel_u(test).as_ref(), relative_penalty * mean_eigen);
    let mut out = Vec::with_capacity(test.rows() * y.cols);
    for i in 0..test.rows() {
        for (j, m) in y_mean.iter().enumerate() {
            out.push((p[(i, j)] + m) as f32);
        }
    }
    Ok((
        out,
        RidgeChoice {
            relative_penalty,
            validation_r2,
            tried,
        },
    ))
}

/// Total sum of squares of `y` about its own column means.
fn validation_sst(y: Design) -> f64 {
    let mean = y.column_means();
    let c = y.cols;
    (0..y.rows())
        .map(|i| {
            y.data[i * c..(i + 1) * c]
                .iter()
                .zip(&mean)
                .map(|(&v, m)| (v as f64 - m).powi(2))
                .sum::<f64>()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// y = x W + noise with more voxels than trials: the fit recovers held-out rows far better
    /// than the mean, the chosen penalty is moderate, and on unrelated inputs R² is near 0.
    #[test]
    fn recovers_a_linear_map_from_fewer_trials_than_voxels() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (n, nv, nt, p, m) = (120, 40, 40, 300, 5);
        let mut gauss = |k: usize| -> Vec<f32> {
            (0..k)
                .map(|_| {
                    let (a, b): (f64, f64) = (rng.random(), rng.random());
                    ((-2.0 * (a + 1e-12).ln()).sqrt() * (std::f64::consts::TAU * b).cos()) as f32
                })
                .collect()
        };
        let w = gauss(p * m);
        let x = gauss((n + nv + nt) * p);
        let noise = gauss((n + nv + nt) * m);
        let y: Vec<f32> = (0..n + nv + nt)
            .flat_map(|i| {
                let (x, w, noise) = (&x, &w, &noise);
                (0..m).map(move |j| {
                    (0..p).map(|k| x[i * p + k] * w[k * m + j]).sum::<f32>() / (p as f32).sqrt()
                        + 0.3 * noise[i * m + j]
                        + 2.0
                })
            })
            .collect();
        let rows = |a: usize, b: usize| Design {
            data: &x[a * p..b * p],
            cols: p,
        };
        let targets = |a: usize, b: usize| Design {
            data: &y[a * m..b * m],
            cols: m,
        };
        let (pred, choice) = fit_predict(
            rows(0, n),
            targets(0, n),
            (rows(n, n + nv), targets(n, n + nv)),
            rows(n + nv, n + nv + nt),
        )
        .unwrap();
        let truth = targets(n + nv, n + nv + nt);
        let sse: f64 = pred
            .iter()
            .zip(truth.data)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum();
        let r2 = 1.0 - sse / validation_sst(truth);
        // Noise-free R² would be 1/(1+0.09); from 120 trials of 300 voxels, about a third.
        assert!(r2 > 0.2 && choice.validation_r2 > 0.2, "{r2} {choice:?}");
        assert_eq!(choice.tried.len(), RELATIVE_PENALTIES.len());

        let unrelated = gauss(n * p);
        let (_, none) = fit_predict(
            Design {
                data: &unrelated,
                cols: p,
            },
            targets(0, n),
            (rows(n, n + nv), targets(n, n + nv)),
            rows(n + nv, n + nv + nt),
        )
        .unwrap();
        assert!(none.validation_r2 < 0.05, "{none:?}");
    }

    #[test]
    fn mismatched_shapes_are_refused() {
        let x = vec![0.0f32; 20];
        let y = vec![0.0f32; 9];
        let d = Design::new;
        let err = fit_predict(d(&x, 2), d(&y, 1), (d(&x, 2), d(&x, 2)), d(&x, 2)).unwrap_err();
        assert!(
            err.to_string().contains("10 training rows with 9 targets"),
            "{err}"
        );
    }
}
