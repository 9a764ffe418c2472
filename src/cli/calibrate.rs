//! `calibrate` (train a subject's projector and score it) and `eval` (score one or more
//! calibrations side by side, e.g. BrainMCLIP's multi-layer targets against the final-only
//! ablation).

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::backend::flex::FlexDevice;
use burn::backend::Flex;

use brainmclip::model::calibration::Calibration;
use brainmclip::train::across::summarise;
use brainmclip::train::calibrate::{
    collect_responses, stimulus_features, CalibrateConfig, Responses, TargetMode,
};
use brainmclip::train::calibrate_run::run_calibration_on;
use brainmclip::train::evaluate::{
    evaluate_decoding, score_decodings, single_object_positions, DecodingReport,
};
use brainmclip::train::ridge_baseline::ridge_on_calibration_split;

#[derive(clap::Args)]
pub struct CalibrateArgs {
    /// The calibration file (TOML).
    #[arg(long)]
    config: PathBuf,
    /// Override `targets`: multi (BrainMCLIP) or final-only (the ablation).
    #[arg(long, value_enum)]
    targets: Option<TargetMode>,
    /// Override the output folder.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    epochs: Option<usize>,
    /// Override `device`: auto (a CUDA GPU when usable), cpu or cuda.
    #[arg(long, value_enum)]
    device: Option<brainmclip::model::device::DeviceChoice>,
    /// Only redraw `loss.png` from the `report.json` already in the output folder.
    #[arg(long)]
    plot_only: bool,
    #[command(flatten)]
    cluster: super::cluster::ClusterArgs,
}

fn load(
    config: &std::path::Path,
    targets: Option<TargetMode>,
    out: Option<PathBuf>,
) -> Result<CalibrateConfig> {
    let mut c = CalibrateConfig::load(config)?;
    if let Some(t) = targets {
        c.targets = t;
    }
    if let Some(o) = out {
        c.out = o;
    }
    Ok(c)
}

fn print_decoding(name: &str, r: &DecodingReport) {
    println!(
        "{name}: semantic 2-way {} | pooled detail 2-way {} | top-1 among {} {} | layout probe r {:.3} ({} fit / {} test images)",
        r.semantic_identification,
        r.detail_identification,
        r.retrieval_candidates,
        r.semantic_top1,
        r.layout_probe_r,
        r.layout_probe_images.0,
        r.layout_probe_images.1
    );
}

pub fn calibrate_cmd(args: CalibrateArgs) -> Result<()> {
    let mut config = load(&args.config, args.targets, args.out)?;
    if args.plot_only {
        let png = brainmclip::train::calibrate_run::replot(&config.out)?;
        println!("wrote {}", png.display());
        return Ok(());
    }
    if let Some(e) = args.epochs {
        config.train.epochs = e;
    }
    if let Some(d) = args.device {
        config.device = d;
    }
    let cluster = args.cluster.cluster(config.device)?;
    let Some(report) = run_calibration_on(&config, &cluster, true)? else {
        println!("training done on {cluster}; the node of rank 0 writes the calibration");
        return Ok(());
    };
    for (part, count) in &report.parameters {
        println!("  {part:<24} {count:>10} parameters");
    }
    println!(
        "{} targets (layers {}-{}): {} training + {} validation trials, {} test images; best epoch {} of {} (val {:.4}; semantic stream {} at {:.4}), {:.0} samples/s on {}, {:.0} s",
        report.targets,
        report.detail_layers.0,
        report.detail_layers.1,
        report.train_trials,
        report.validation_trials,
        report.test_images,
        report.training.best_epoch,
        report.training.epochs_run,
        report.training.best_validation,
        report.training.best_semantic_epoch,
        report.training.best_semantic_validation,
        report.training.samples_per_s,
        report.device,
        report.seconds
    );
    if report.selection.len() > 1 {
        println!("chosen on the validation split (never the test trials):");
        for c in &report.selection {
            let mark = if c.chosen { "*" } else { " " };
            println!(
                " {mark} {:<48} validation {:.4} (semantic 2-way {}, pooled detail 2-way {})",
                c.name,
                c.validation_score,
                c.validation.semantic_identification,
                c.validation.detail_identification
            );
        }
    }
    print_decoding(&format!("test ({})", report.chosen), &report.test);
    println!("wrote {}", config.out.display());
    Ok(())
}

#[derive(clap::Args)]
pub struct EvalArgs {
    /// Calibration files to score (repeat for side by side), each with its `out` folder.
    #[arg(long, required = true)]
    config: Vec<PathBuf>,
    /// Also fit and score the ridge baseline (a linear map from the same voxels to the same
    /// targets, as Brain-Diffuser does) on each calibration's training split, its penalties
    /// chosen on the validation split.
    #[arg(long)]
    ridge: bool,
    /// Also draw the test trials' decodings with this generator (a `train-generator` folder;
    /// repeat for several) and score the images: PixCorr, SSIM, 2-way identification and the
    /// object layout against the simulator's ground truth. A generator conditioned on detail
    /// tokens draws only decodings of its own layers; an embedding-only one draws the decoded
    /// embeddings of multi-target calibrations.
    #[arg(long = "images")]
    generators: Vec<PathBuf>,
    /// With --images: write a PNG of the first 8 single-object test images of the first
    /// subject, one row each: the true image, then its projector decodings drawn by each
    /// generator, in the order of --images.
    #[arg(long, requires = "generators")]
    figure: Option<PathBuf>,
    /// Write the reports here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn eval_cmd(args: EvalArgs) -> Result<()> {
    let mut all = Vec::new();
    let mut rows = Vec::new();
    let mut drawings = super::eval_images::Drawings::load(&args.generators)?;
    // Calibrations of one subject's data (e.g. multi and final-only targets) share its
    // responses: the runs go through preprocessing once.
    let mut collected: Vec<(String, std::rc::Rc<Responses>)> = Vec::new();
    for path in &args.config {
        let config = CalibrateConfig::load(path)?;
        let calibration = Calibration::<Flex>::load(&config.out, &FlexDevice)
            .with_context(|| format!("{}: run calibrate first", path.display()))?;
        let layers = calibration.info.detail_layers;
        let features = stimulus_features(&config, layers)?;
        let source = serde_json::to_string(&(
            &config.bids,
            &config.subject,
            &config.session,
            &config.betas,
            &config.train_trial_type,
            &config.test_trial_type,
        ))?;
        let responses = match collected.iter().find(|(s, _)| *s == source) {
            Some((_, r)) => r.clone(),
            None => {
                let r = std::rc::Rc::new(collect_responses(&config)?);
                collected.push((source, r.clone()));
                r
            }
        };
        let positions = single_object_positions(&config.bids.join("stimuli"))?;
        let train_ids: Vec<String> = responses.train.iter().map(|r| r.stimulus.clone()).collect();
        let (report, projector_decoded) = evaluate_decoding(
            &calibration,
            &responses.test,
            &train_ids,
            &features,
            &positions,
        )?;
        let method = format!(
            "projector, {} targets (layers {}-{})",
            calibration.info.targets, layers.0, layers.1
        );
        print_decoding(&format!("{} [{method}]", config.out.display()), &report);
        all.push(serde_json::json!({"calibration": config.out, "subject": config.subject, "method": method, "targets": calibration.info.targets, "report": report}));
        rows.push((method, report));
        let mut decoders = vec![("projector".to_string(), projector_decoded)];
        if args.ridge {
            let started = std::time::Instant::now();
            let (decoded, choice) = ridge_on_calibration_split(
                &calibration,
                &responses.train,
                &responses.test,
                &features,
                &config.train,
            )?;
            // The layout probe is fitted on the true tokens of the same training images as
            // the projector's, so the two layout figures compare decoders, not probes.
            let report =
                score_decodings(&decoded, &responses.test, &train_ids, &features, &positions)?;
            let method = format!("ridge, {} targets", calibration.info.targets);
            print_decoding(&format!("{} [{method}]", config.out.display()), &report);
            println!(
                "  ridge penalties (x mean eigenvalue) chosen on validation: detail {} (R² {:.3}), semantic {} (R² {:.3}); {:.1} s",
                choice.detail.relative_penalty,
                choice.detail.validation_r2,
                choice.semantic.relative_penalty,
                choice.semantic.validation_r2,
                started.elapsed().as_secs_f64()
            );
            all.push(serde_json::json!({"calibration": config.out, "subject": config.subject, "method": method, "targets": calibration.info.targets, "ridge": choice, "report": report}));
            rows.push((method, report));
            decoders.push(("ridge".to_string(), decoded));
        }
        drawings.draw(&config, &calibration, &responses.test, &features, decoders)?;
    }
    let summary = summarise(&rows);
    if args.config.len() > 1 {
        println!("across subjects (mean ± SD):");
        for s in &summary {
            println!(
                "  {:<44} n={} | semantic 2-way {} | pooled detail 2-way {} | top-1 {} | layout r {}",
                s.method,
                s.subjects,
                s.semantic_identification,
                s.detail_identification,
                s.semantic_top1,
                s.layout_probe_r
            );
        }
    }
    let images = drawings.finish(args.config.len() > 1, args.figure.as_deref())?;
    if let Some(path) = args.json {
        let mut json = serde_json::json!({"calibrations": all, "across_subjects": summary});
        if let Some(images) = images {
            json["images"] = images;
        }
        brainmclip::atomic::write_atomic(&path, serde_json::to_string_pretty(&json)?.as_bytes())
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    Ok(())
}
