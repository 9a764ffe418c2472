//! Training losses shared by the demo encoder and the projector: L2 normalisation and the
//! symmetric InfoNCE (CLIP's contrastive loss) with a given logit scale.
//!
//! The projector's own multi-granularity terms are built from these pieces in `train/`.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

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
/// `scale` is the logit multiplier (CLIP's `exp(logit_scale)`), shape [1].
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
}
