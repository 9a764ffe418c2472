//! The demo's scores against what was shown: semantic 2-way identification of the decoded
//! embeddings (against the stimuli's true embeddings), PixCorr, SSIM and grain of the drawn
//! images, and latency from a trial's last volume file seen to its image drawn (and, with the
//! window, on screen). The result is `summary.json`. It runs nothing: it reads what the
//! `Collector` kept.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use super::{Collected, DemoError, PreparedDemo, DEMO_SEED};
use crate::metrics::{
    bootstrap, grain, greyscale, pixcorr, ssim, two_way_identification, Estimate,
};
use crate::model::conditioner::{embed_images, Conditioner};

fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    Some(sorted[((q * last as f64).round() as usize).min(last)])
}

fn read_rgb(path: &Path) -> Result<(Vec<f32>, usize), DemoError> {
    let img = image::open(path)
        .map_err(|e| DemoError::File {
            path: path.to_owned(),
            message: format!("cannot read image: {e}"),
        })?
        .to_rgb8();
    let size = img.width() as usize;
    Ok((
        img.as_raw().iter().map(|&v| v as f32 / 255.0).collect(),
        size,
    ))
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Milliseconds from each trial's last volume file seen to `at` (trial, ns), sorted.
fn latencies(c: &Collected, at: impl Iterator<Item = (u64, u64)>) -> Vec<f64> {
    let seen: HashMap<u32, u64> = c.volume_seen_ns.iter().copied().collect();
    let last_seen: HashMap<u64, u64> = c
        .trial_volumes
        .iter()
        .filter_map(|(trial, volumes)| {
            let last = volumes.iter().filter_map(|i| seen.get(i)).max()?;
            Some((*trial, *last))
        })
        .collect();
    let mut ms: Vec<f64> = at
        .filter_map(|(trial, t)| Some(t.saturating_sub(*last_seen.get(&trial)?) as f64 / 1e6))
        .collect();
    ms.sort_by(f64::total_cmp);
    ms
}

/// The demo's scores (`summary.json`).
#[derive(Debug, Clone, Serialize)]
pub struct DemoSummary {
    pub what: &'static str,
    pub subject_seed: u64,
    pub run: usize,
    pub trials_decoded: usize,
    pub reconstructions: usize,
    pub skipped_by_generator: usize,
    pub semantic_identification: Estimate,
    pub pixcorr: Estimate,
    pub ssim: Estimate,
    pub grain: f64,
    pub stimulus_grain: f64,
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p95: Option<f64>,
    pub displayed: usize,
    pub seen_to_displayed_ms_p50: Option<f64>,
    pub seen_to_displayed_ms_p95: Option<f64>,
    pub speed: String,
    pub steps: usize,
    pub guidance: f64,
    /// Where the live models ran.
    pub device: String,
}

impl std::fmt::Display for DemoSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{v:.0}"));
        write!(
            f,
            "{} trials decoded; semantic 2-way identification {}; reconstructions {} (PixCorr {}, \
             SSIM {}, grain {:.4}, stimuli {:.4}); volume seen → image drawn p50 {} ms, p95 {} ms",
            self.trials_decoded,
            self.semantic_identification,
            self.reconstructions,
            self.pixcorr,
            self.ssim,
            self.grain,
            self.stimulus_grain,
            ms(self.latency_ms_p50),
            ms(self.latency_ms_p95)
        )
    }
}

/// Scores what the demo decoded and drew against the stimuli.
pub fn score(
    demo: &PreparedDemo,
    c: &Collected,
    options: &super::DemoOptions,
) -> Result<DemoSummary, DemoError> {
    let conditioner = Conditioner::load(&demo.encoder).map_err(|e| DemoError::File {
        path: demo.encoder.clone(),
        message: e.to_string(),
    })?;
    let (mut truth_embeddings, mut decoded_embeddings) = (Vec::new(), Vec::new());
    for d in &c.decoded {
        let Some(stim) = &d.stimulus else { continue };
        let (rgb, size) = read_rgb(&demo.bids.join(stim))?;
        let e = embed_images(&conditioner, &[rgb], size).map_err(|e| DemoError::File {
            path: demo.bids.join(stim),
            message: e.to_string(),
        })?;
        truth_embeddings.push(e.into_iter().next().unwrap_or_default());
        decoded_embeddings.push(d.embedding.clone());
    }
    let identification = bootstrap(
        &two_way_identification(&decoded_embeddings, &truth_embeddings),
        1000,
        1,
    );
    let (mut pc, mut ss, mut drawn_grain, mut true_grain) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in &c.reconstructions {
        let Some(stim) = &r.stimulus else { continue };
        let (truth, size) = read_rgb(&demo.bids.join(stim))?;
        if size != r.size {
            continue;
        }
        let drawn: Vec<f32> = r.rgb.iter().map(|&v| v as f32 / 255.0).collect();
        pc.push(pixcorr(&drawn, &truth));
        ss.push(ssim(&greyscale(&drawn), &greyscale(&truth), size, size));
        drawn_grain.push(grain(&greyscale(&drawn), size, size));
        true_grain.push(grain(&greyscale(&truth), size, size));
    }
    let drawn_ms = latencies(
        c,
        c.reconstructions.iter().map(|r| (r.trial, r.generated_ns)),
    );
    let displayed_ms = latencies(c, c.displayed_ns.iter().copied());
    Ok(DemoSummary {
        what: "synthetic: a simulated subject and small models trained on the simulator's world",
        subject_seed: DEMO_SEED,
        run: demo.run,
        trials_decoded: c.decoded.len(),
        reconstructions: c.reconstructions.len(),
        skipped_by_generator: c.skipped,
        semantic_identification: identification,
        pixcorr: bootstrap(&pc, 1000, 2),
        ssim: bootstrap(&ss, 1000, 3),
        grain: mean(&drawn_grain),
        stimulus_grain: mean(&true_grain),
        latency_ms_p50: percentile(&drawn_ms, 0.5),
        latency_ms_p95: percentile(&drawn_ms, 0.95),
        displayed: displayed_ms.len(),
        seen_to_displayed_ms_p50: percentile(&displayed_ms, 0.5),
        seen_to_displayed_ms_p95: percentile(&displayed_ms, 0.95),
        speed: options.speed.clone(),
        steps: options.steps,
        guidance: options.guidance,
        device: crate::model::device::select(options.device)
            .map(|d| d.to_string())
            .unwrap_or_else(|e| e.to_string()),
    })
}
