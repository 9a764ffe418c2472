//! Training losses: L2 normalisation and the symmetric InfoNCE (CLIP's contrastive loss) shared
//! by the demo encoder and the projector, and the projector's multi-granularity loss, each term
//! weighted in the config and reported on its own.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use serde::{Deserialize, Serialize};

use super::projector::{Projector, ProjectorOutput};

/// Rows scaled to unit length (a small epsilon keeps zero rows finite).
pub fn l2_normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().add_scalar(1e-8);
    x / norm
}

/// Cosine similarity of every row of `a` with every row of `b`: [rows of a, rows of b].
pub fn cosine_matrix<B: Backend>(a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 2> {
    l2_normalize(a).matmul(l2_normalize(b).transpose())
}

/// Symmetric InfoNCE: row i of `a` should pick row i of `b` among all rows and vice versa.
/// `scale` is the logit multiplier (CLIP's `exp(logit_scale)`), shape `[1]`.
pub fn info_nce<B: Backend>(a: Tensor<B, 2>, b: Tensor<B, 2>, scale: Tensor<B, 1>) -> Tensor<B, 1> {
    let n = a.dims()[0];
    let device = a.device();
    let logits = cosine_matrix(a, b) * scale.reshape([1, 1]);
    let eye = Tensor::<B, 2>::from_data(
        TensorData::new(
            (0..n * n)
                .map(|i| if i / n == i % n { 1.0f32 } else { 0.0 })
                .collect::<Vec<f32>>(),
            [n, n],
        ),
        &device,
    );
    let rows = log_softmax(logits.clone(), 1);
    let cols = log_softmax(logits, 0);
    ((rows + cols) * eye).sum().neg() / (2.0 * n as f64)
}

/// Mean over rows of 1 - cos(a_i, b_i).
pub fn cosine_loss<B: Backend>(a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 1> {
    let cos = (l2_normalize(a) * l2_normalize(b)).sum_dim(1);
    cos.neg().add_scalar(1.0).mean()
}

/// Mean squared error over every element.
pub fn mse<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, 1> {
    (a - b).powi_scalar(2).mean()
}

/// Mean over tokens and rows of 1 - cos between matching tokens ([batch, tokens, width]).
pub fn token_cosine_loss<B: Backend>(a: Tensor<B, 3>, b: Tensor<B, 3>) -> Tensor<B, 1> {
    let [n, t, c] = a.dims();
    cosine_loss(a.reshape([n * t, c]), b.reshape([n * t, c]))
}

/// The weight of each term of the projector's loss (0 leaves a term out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LossWeights {
    /// Detail tokens: MSE and 1 - cosine per token.
    pub token_mse: f64,
    pub token_cosine: f64,
    /// Detail tokens pooled (mean over tokens): InfoNCE across the batch, and cosine.
    pub detail_contrastive: f64,
    pub detail_cosine: f64,
    /// Image embedding: InfoNCE across the batch, and cosine.
    pub semantic_contrastive: f64,
    pub semantic_cosine: f64,
    /// `Dec_D(b_D) ≈ F_D` and `Dec_S(b_S) ≈ F_S`.
    pub self_reconstruction: f64,
    /// `Dec_D(b_S) ≈ F_D` and `Dec_S(b_D) ≈ F_S`.
    pub cross_reconstruction: f64,
    /// L2 penalty on the encoders' input maps (sum of squares, mean over weights).
    pub input_l2: f64,
    /// InfoNCE temperature (logits are cosines / temperature).
    pub temperature: f64,
}

impl Default for LossWeights {
    fn default() -> Self {
        LossWeights {
            token_mse: 1.0,
            token_cosine: 0.5,
            detail_contrastive: 0.2,
            detail_cosine: 0.2,
            semantic_contrastive: 1.0,
            semantic_cosine: 1.0,
            self_reconstruction: 0.1,
            cross_reconstruction: 0.1,
            input_l2: 1.0,
            temperature: 0.05,
        }
    }
}

/// Every term (unweighted) and the weighted total.
pub struct LossTerms<B: Backend> {
    pub terms: Vec<(&'static str, Tensor<B, 1>)>,
    pub total: Tensor<B, 1>,
}

/// The multi-granularity loss of one batch. `detail`/`semantic` are the input voxels,
/// `target_tokens` [batch, tokens, width] and `target_semantic` [batch, dim] the (normalised)
/// CLIP targets.
pub fn projector_loss<B: Backend>(
    model: &Projector<B>,
    out: &ProjectorOutput<B>,
    detail: Tensor<B, 2>,
    semantic: Tensor<B, 2>,
    target_tokens: Tensor<B, 3>,
    target_semantic: Tensor<B, 2>,
    w: &LossWeights,
) -> LossTerms<B> {
    let device = detail.device();
    let scale = || {
        Tensor::<B, 1>::from_data(
            TensorData::new(vec![(1.0 / w.temperature) as f32], [1]),
            &device,
        )
    };
    let pool = |t: Tensor<B, 3>| {
        let [n, _, c] = t.dims();
        t.mean_dim(1).reshape([n, c])
    };
    let mut terms: Vec<(&'static str, f64, Tensor<B, 1>)> = Vec::new();
    let mut add = |name: &'static str, weight: f64, term: &dyn Fn() -> Tensor<B, 1>| {
        if weight != 0.0 {
            terms.push((name, weight, term()));
        }
    };
    add("token_mse", w.token_mse, &|| {
        mse(out.detail_tokens.clone(), target_tokens.clone())
    });
    add("token_cosine", w.token_cosine, &|| {
        token_cosine_loss(out.detail_tokens.clone(), target_tokens.clone())
    });
    add("detail_contrastive", w.detail_contrastive, &|| {
        info_nce(
            pool(out.detail_tokens.clone()),
            pool(target_tokens.clone()),
            scale(),
        )
    });
    add("detail_cosine", w.detail_cosine, &|| {
        cosine_loss(pool(out.detail_tokens.clone()), pool(target_tokens.clone()))
    });
    add("semantic_contrastive", w.semantic_contrastive, &|| {
        info_nce(out.semantic.clone(), target_semantic.clone(), scale())
    });
    add("semantic_cosine", w.semantic_cosine, &|| {
        cosine_loss(out.semantic.clone(), target_semantic.clone())
    });
    add("self_reconstruction", w.self_reconstruction, &|| {
        (mse(
            model.detail_decoder.forward(out.b_detail.clone()),
            detail.clone(),
        ) + mse(
            model.semantic_decoder.forward(out.b_semantic.clone()),
            semantic.clone(),
        )) / 2.0
    });
    add("cross_reconstruction", w.cross_reconstruction, &|| {
        (mse(
            model.detail_decoder.forward(out.b_semantic.clone()),
            detail.clone(),
        ) + mse(
            model.semantic_decoder.forward(out.b_detail.clone()),
            semantic.clone(),
        )) / 2.0
    });
    add("input_l2", w.input_l2, &|| {
        (model
            .detail_encoder
            .input
            .weight
            .val()
            .powi_scalar(2)
            .mean()
            + model
                .semantic_encoder
                .input
                .weight
                .val()
                .powi_scalar(2)
                .mean())
            / 2.0
    });
    let total = terms
        .iter()
        .map(|(_, weight, t)| t.clone() * *weight)
        .reduce(|a, b| a + b)
        .unwrap_or_else(|| Tensor::zeros([1], &device));
    LossTerms {
        terms: terms.into_iter().map(|(n, _, t)| (n, t)).collect(),
        total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::flex::FlexDevice;
    use burn::backend::Flex;

    fn t2(v: &[f32], rows: usize, cols: usize) -> Tensor<Flex, 2> {
        Tensor::from_data(TensorData::new(v.to_vec(), [rows, cols]), &FlexDevice)
    }

    fn scalar(t: Tensor<Flex, 1>) -> f32 {
        t.into_data().to_vec::<f32>().expect("f32")[0]
    }

    #[test]
    fn info_nce_matches_hand_computation() {
        // a = [[1,0],[0,1]], b = [[1,0],[0.6,0.8]]: cosines [[1, 0.6],[0, 0.8]], scale 2.
        let a = t2(&[1.0, 0.0, 0.0, 2.0], 2, 2);
        let b = t2(&[3.0, 0.0, 0.6, 0.8], 2, 2);
        let scale = Tensor::<Flex, 1>::from_data(TensorData::new(vec![2.0f32], [1]), &FlexDevice);
        let got = scalar(info_nce(a, b, scale));
        let l = [[2.0f64, 1.2], [0.0, 1.6]];
        let lse = |x: f64, y: f64| (x.exp() + y.exp()).ln();
        let row0 = l[0][0] - lse(l[0][0], l[0][1]);
        let row1 = l[1][1] - lse(l[1][0], l[1][1]);
        let col0 = l[0][0] - lse(l[0][0], l[1][0]);
        let col1 = l[1][1] - lse(l[0][1], l[1][1]);
        let want = -(row0 + row1 + col0 + col1) / 4.0;
        assert!((got as f64 - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn cosine_loss_matches_hand_computation() {
        let a = t2(&[1.0, 0.0, 0.0, 1.0], 2, 2);
        let b = t2(&[1.0, 1.0, 0.0, -3.0], 2, 2);
        // 1 - 1/sqrt(2) and 1 - (-1) = 2, mean.
        let want = ((1.0 - std::f64::consts::FRAC_1_SQRT_2) + 2.0) / 2.0;
        let got = scalar(cosine_loss(a, b));
        assert!((got as f64 - want).abs() < 1e-6, "{got} vs {want}");
    }

    #[test]
    fn mse_and_token_cosine_match_hand_computation() {
        let a = t2(&[1.0, 2.0, 3.0, 4.0], 2, 2);
        let b = t2(&[1.0, 0.0, 0.0, 4.0], 2, 2);
        // Squared errors 0, 4, 9, 0 -> mean 3.25.
        assert!((scalar(mse(a, b)) - 3.25).abs() < 1e-6);
        let a3 = Tensor::<Flex, 3>::from_data(
            TensorData::new(vec![1.0f32, 0.0, 0.0, 1.0], [1, 2, 2]),
            &FlexDevice,
        );
        let b3 = Tensor::<Flex, 3>::from_data(
            TensorData::new(vec![2.0f32, 0.0, 1.0, 0.0], [1, 2, 2]),
            &FlexDevice,
        );
        // Token 0: cos 1 -> 0; token 1: cos 0 -> 1; mean 0.5.
        assert!((scalar(token_cosine_loss(a3, b3)) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn reconstruction_terms_use_the_right_decoders() {
        use crate::model::projector::ProjectorConfig;
        let config = ProjectorConfig {
            detail_voxels: 3,
            semantic_voxels: 2,
            embed_dim: 4,
            blocks: 0,
            dropout: 0.0,
            detail_tokens: 2,
            detail_width: 2,
            token_rank: 1,
            semantic_dim: 2,
        };
        let model = config.init::<Flex>(&FlexDevice);
        let detail = t2(&[0.5, -1.0, 2.0], 1, 3);
        let semantic = t2(&[1.0, -0.5], 1, 2);
        let out = model.forward(detail.clone(), semantic.clone());
        let only = |self_w: f64, cross_w: f64| LossWeights {
            token_mse: 0.0,
            token_cosine: 0.0,
            detail_contrastive: 0.0,
            detail_cosine: 0.0,
            semantic_contrastive: 0.0,
            semantic_cosine: 0.0,
            self_reconstruction: self_w,
            cross_reconstruction: cross_w,
            input_l2: 0.0,
            temperature: 0.05,
        };
        let targets = || {
            (
                Tensor::<Flex, 3>::zeros([1, 2, 2], &FlexDevice),
                Tensor::<Flex, 2>::zeros([1, 2], &FlexDevice),
            )
        };
        // By hand: decode each embedding with the named decoder and compare.
        let values = |t: Tensor<Flex, 2>| t.into_data().to_vec::<f32>().expect("f32");
        let sq = |a: Vec<f32>, b: Vec<f32>| {
            a.iter()
                .zip(&b)
                .map(|(x, y)| ((x - y) as f64).powi(2))
                .sum::<f64>()
                / a.len() as f64
        };
        let d_in = values(detail.clone());
        let s_in = values(semantic.clone());
        let dd = values(model.detail_decoder.forward(out.b_detail.clone()));
        let ss = values(model.semantic_decoder.forward(out.b_semantic.clone()));
        let ds = values(model.detail_decoder.forward(out.b_semantic.clone()));
        let sd = values(model.semantic_decoder.forward(out.b_detail.clone()));
        let want_self = (sq(dd, d_in.clone()) + sq(ss, s_in.clone())) / 2.0;
        let want_cross = (sq(ds, d_in) + sq(sd, s_in)) / 2.0;
        let (tt, ts) = targets();
        let got = projector_loss(
            &model,
            &out,
            detail.clone(),
            semantic.clone(),
            tt,
            ts,
            &only(1.0, 0.0),
        );
        assert_eq!(got.terms.len(), 1);
        assert!((scalar(got.total) as f64 - want_self).abs() < 1e-5);
        let (tt, ts) = targets();
        let got = projector_loss(&model, &out, detail, semantic, tt, ts, &only(0.0, 2.0));
        assert_eq!(got.terms[0].0, "cross_reconstruction");
        assert!((scalar(got.total) as f64 - 2.0 * want_cross).abs() < 1e-5);
        assert!(
            (want_cross - want_self).abs() > 1e-6,
            "the test must tell the two apart"
        );
    }
}
