//! `train-generator`: the few-step diffusion decoder trained on simulator images (or a folder
//! of images, `--images`) conditioned on an encoder's features, then scored (4 against 50
//! steps, brain-like degraded features); the figures and the exact command go into
//! `training.json` beside the weights.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::backend::flex::FlexDevice;
use burn::backend::Flex;

use super::train::settings_file;

#[derive(clap::Args)]
pub struct TrainGeneratorArgs {
    /// The encoder whose features condition the generator (a Hugging Face CLIP folder).
    #[arg(long)]
    encoder: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// Train on this folder tree of JPEG/PNG images instead of the simulator's; their features
    /// are computed once into OUT/features.safetensors (resumable).
    #[arg(long)]
    images: Option<PathBuf>,
    /// With --images: the share of the images kept out of training (chosen by a hash of each
    /// image's path, so adding images never moves one across) and evaluated on.
    #[arg(long, default_value_t = 0.05)]
    heldout: f64,
    /// With --images: evaluate on the held-out images, or on the training images (to check
    /// that a small set is learnt).
    #[arg(long, value_enum, default_value = "heldout")]
    eval_on: EvalOn,
    /// A TOML file of training settings; flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    steps: Option<usize>,
    #[arg(long)]
    batch: Option<usize>,
    /// Stop after this many steps in this run; run again to resume.
    #[arg(long)]
    max_steps: Option<usize>,
    /// Start from this trained generator's weights (same architecture and encoder) instead of
    /// the seed's: fine-tuning, e.g. with other condition augmentation.
    #[arg(long)]
    init: Option<PathBuf>,
    /// Only evaluate the finished generator in --out.
    #[arg(long)]
    eval_only: bool,
    /// Held-out images to evaluate on.
    #[arg(long, default_value_t = 100)]
    eval_images: usize,
    /// Classifier-free guidance scale for the evaluation.
    #[arg(long, default_value_t = 1.0)]
    guidance: f64,
    /// Where the network trains: auto (a CUDA GPU when usable), cpu or cuda.
    #[arg(long, value_enum, default_value = "auto")]
    device: brainmclip::model::device::DeviceChoice,
    #[command(flatten)]
    cluster: super::cluster::ClusterArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum EvalOn {
    Heldout,
    Train,
}

pub fn train_generator_cmd(args: TrainGeneratorArgs) -> Result<()> {
    use brainmclip::model::conditioner::Conditioner;
    use brainmclip::model::generator::files::load_generator;
    use brainmclip::train::generator::{
        train_generator_parallel, GeneratorJob, GeneratorTrainConfig,
    };
    use brainmclip::train::generator_eval::EvalImages;
    use brainmclip::train::image_folder::ImageFolder;
    let mut config: GeneratorTrainConfig =
        settings_file(args.config.as_deref(), "a generator training config")?;
    if let Some(s) = args.steps {
        config.steps = s;
    }
    if let Some(b) = args.batch {
        config.batch = b;
    }
    if !args.eval_only {
        let started = Instant::now();
        let cluster = args.cluster.cluster(args.device)?;
        let summary = train_generator_parallel(
            &GeneratorJob {
                encoder: args.encoder.clone(),
                images: args.images.clone(),
                heldout_fraction: args.heldout,
                config: config.clone(),
                init: args.init.clone(),
                out: args.out.clone(),
                max_steps: args.max_steps,
                progress: true,
                device: args.device,
            },
            &cluster,
        )?;
        let Some(summary) = summary else {
            println!("training done on {cluster}; the node of rank 0 writes the generator");
            return Ok(());
        };
        let last: Vec<f32> = summary.losses.iter().rev().take(50).map(|l| l.1).collect();
        println!(
            "steps {} of {} (resumed from {}), {} parameters, {:.2} s/step, mean loss of the last 50 {:.4}, {:.0} s",
            summary.steps_done,
            config.steps,
            summary.resumed_from,
            summary.parameters,
            summary.seconds_per_step,
            last.iter().sum::<f32>() / last.len().max(1) as f32,
            started.elapsed().as_secs_f64()
        );
        if !summary.complete {
            println!("stopped early: run the same command again to resume");
            return Ok(());
        }
    }
    let (info, model) = load_generator::<Flex>(&args.out, &FlexDevice)?;
    let conditioner = Conditioner::load(&args.encoder)?.with_layers(info.detail_layers)?;
    let size = info.generator.image_size;
    let images = match &args.images {
        None => EvalImages::simulator(&conditioner, size, args.eval_images)?,
        Some(dir) => {
            let folder = ImageFolder::prepare(
                dir,
                &args.encoder,
                conditioner.layers,
                &args.out,
                args.heldout,
                true,
            )?;
            let rows = match args.eval_on {
                EvalOn::Heldout => &folder.heldout,
                EvalOn::Train => &folder.train,
            };
            EvalImages::folder(&folder, rows, size, args.eval_images)?
        }
    };
    println!(
        "evaluating on {} images ({})",
        images.truth.len(),
        match (&args.images, args.eval_on) {
            (None, _) => "held-out simulator images",
            (Some(_), EvalOn::Heldout) => "held-out images of the folder",
            (Some(_), EvalOn::Train) => "training images of the folder",
        }
    );
    let eval = brainmclip::train::generator_eval::evaluate_generator(
        &model,
        &conditioner,
        &images,
        size,
        4,
        50,
        args.guidance,
    )?;
    for r in [&eval.few, &eval.many] {
        println!(
            "{} steps: PixCorr {} SSIM {} 2-way identification {} grain {:.4} (true images {:.4})",
            r.steps, r.pixcorr, r.ssim, r.identification, r.grain, eval.true_grain
        );
    }
    println!(
        "4 vs 50 steps: PixCorr {:.3}, SSIM {:.3}",
        eval.few_vs_many_pixcorr, eval.few_vs_many_ssim
    );
    let ((d, s), r) = (&eval.degradation, &eval.degraded);
    println!(
        "brain-like features (tokens keep {} mix {} noise {} SD; embedding keep {} mix {} noise {} SD), {} steps: PixCorr {} SSIM {} 2-way identification {} grain {:.4}",
        d.keep, d.mix, d.noise, s.keep, s.mix, s.noise, r.steps, r.pixcorr, r.ssim, r.identification, r.grain
    );
    let this_command = format!(
        "brainmclip {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    let path = args.out.join("training.json");
    // Re-evaluating keeps what the training wrote (the command that made the weights).
    let earlier = args
        .eval_only
        .then(|| std::fs::read_to_string(&path).ok())
        .flatten()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .filter(|v| v.is_object());
    let mut report = match earlier {
        Some(mut v) => {
            v["evaluated_by"] = serde_json::json!(this_command);
            v
        }
        None => serde_json::json!({ "command": this_command }),
    };
    report["info"] = serde_json::to_value(&info)?;
    report["evaluation"] = serde_json::to_value(&eval)?;
    report["evaluated_on"] = serde_json::json!(match (&args.images, args.eval_on) {
        (None, _) => "simulator-heldout",
        (Some(_), EvalOn::Heldout) => "folder-heldout",
        (Some(_), EvalOn::Train) => "folder-train",
    });
    brainmclip::atomic::write_atomic(&path, serde_json::to_string_pretty(&report)?.as_bytes())
        .with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(())
}
