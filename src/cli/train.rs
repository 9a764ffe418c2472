//! `train-encoder`: the demo world's CLIP, trained, then evaluated on held-out images; the
//! figures, the config and the exact command go into `training.json` beside the weights. Also
//! the settings-file reader the training commands share.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::backend::flex::FlexDevice;
use burn::backend::Flex;

use brainmclip::model::load::{load_clip_text, load_clip_vision};
use brainmclip::train::encoder::{demo_tokenizer, train_encoder, EncoderJob, EncoderTrainConfig};
use brainmclip::train::encoder_eval::evaluate;

#[derive(clap::Args)]
pub struct TrainEncoderArgs {
    /// Output folder: a Hugging Face CLIPModel folder when done, `checkpoint/` while training.
    #[arg(long)]
    out: PathBuf,
    /// A TOML file of training settings (see `EncoderTrainConfig`); flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long)]
    steps: Option<usize>,
    #[arg(long)]
    batch: Option<usize>,
    /// Stop after this many steps in this run; run again to resume.
    #[arg(long)]
    max_steps: Option<usize>,
    /// Only evaluate the finished encoder in --out.
    #[arg(long)]
    eval_only: bool,
}

/// Training settings from a TOML file (unknown keys are errors), or the defaults.
pub fn settings_file<T: serde::de::DeserializeOwned + Default>(
    path: Option<&std::path::Path>,
    what: &str,
) -> Result<T> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{}: not {what}", path.display()))
}

pub fn train_encoder_cmd(args: TrainEncoderArgs) -> Result<()> {
    let mut config: EncoderTrainConfig =
        settings_file(args.config.as_deref(), "an encoder training config")?;
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    if let Some(steps) = args.steps {
        config.steps = steps;
    }
    if let Some(batch) = args.batch {
        config.batch = batch;
    }
    let started = Instant::now();
    if !args.eval_only {
        let summary = train_encoder(&EncoderJob {
            config: config.clone(),
            out: args.out.clone(),
            max_steps: args.max_steps,
            progress: true,
        })?;
        let last: Vec<f32> = summary.losses.iter().rev().take(20).map(|l| l.1).collect();
        let mean_last = last.iter().sum::<f32>() / last.len().max(1) as f32;
        println!(
            "steps {} of {} (resumed from {}), mean loss of the last 20: {mean_last:.4}, {:.0} s",
            summary.steps_done,
            config.steps,
            summary.resumed_from,
            started.elapsed().as_secs_f64()
        );
        if !summary.complete {
            println!("stopped early: run the same command again to resume");
            return Ok(());
        }
    }
    let device = FlexDevice;
    let vision = load_clip_vision::<Flex>(&args.out, &device)?;
    let text = load_clip_text::<Flex>(&args.out, &device)?;
    let tokenizer = demo_tokenizer(&args.out, config.context)?;
    let eval_started = Instant::now();
    let eval = evaluate(&vision.model, &text.model, &tokenizer, &config, &device)?;
    println!(
        "held-out: text->image top-1 among {} {:.1} % ({} groups; chance {:.1} %), image->text {:.1} %; position probe R² detail tokens {:.3} vs final embedding {:.3} ({:.0} s)",
        eval.candidates,
        100.0 * eval.text_to_image_top1,
        eval.groups,
        100.0 / eval.candidates as f64,
        100.0 * eval.image_to_text_top1,
        eval.probe_detail_r2,
        eval.probe_final_r2,
        eval_started.elapsed().as_secs_f64()
    );
    let report = serde_json::json!({
        "command": format!("brainmclip {}", std::env::args().skip(1).collect::<Vec<_>>().join(" ")),
        "config": config,
        "evaluation": eval,
        "trained_by": format!("brainmclip {}", env!("CARGO_PKG_VERSION")),
    });
    let path = args.out.join("training.json");
    brainmclip::atomic::write_atomic(&path, serde_json::to_string_pretty(&report)?.as_bytes())
        .with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(())
}
