//! `eval --images`: each calibration's test decodings drawn by each compatible generator and
//! scored as images (`train::reconstruct`), the true features drawn the same way (what the
//! generator alone loses), the layout measure on the true images (its ceiling), the
//! across-subject summary and an optional figure.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::backend::flex::FlexDevice;
use burn::backend::Flex;

use brainmclip::features::FeatureSet;
use brainmclip::model::calibration::{Calibration, Decoded};
use brainmclip::model::conditioner::Conditioner;
use brainmclip::model::generator::files::{load_generator, GeneratorInfo};
use brainmclip::model::generator::UNet;
use brainmclip::train::across::{pooled_layouts, summarise_images};
use brainmclip::train::calibrate::{CalibrateConfig, Response};
use brainmclip::train::layout::single_object_layouts;
use brainmclip::train::reconstruct::{
    comparison_figure, compatible, reconstruct, true_decodings, ReconstructionReport, TestImages,
};

struct Generator {
    name: String,
    info: GeneratorInfo,
    model: UNet<Flex>,
}

/// The generators, and what they drew so far.
pub struct Drawings {
    generators: Vec<Generator>,
    rows: Vec<(String, ReconstructionReport)>,
    json: Vec<serde_json::Value>,
    figure: Option<Figure>,
}

/// The first subject's true test images and the drawings of its projector decodings (all its
/// calibrations), each with its generator's index.
struct Figure {
    subject: String,
    truth: TestImages,
    columns: Vec<(usize, Vec<Vec<f32>>)>,
}

impl Drawings {
    pub fn load(dirs: &[PathBuf]) -> Result<Drawings> {
        let mut generators = Vec::new();
        for dir in dirs {
            let (info, model) = load_generator::<Flex>(dir, &FlexDevice)
                .with_context(|| format!("{}: not a trained generator", dir.display()))?;
            let name = dir
                .file_name()
                .map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into());
            generators.push(Generator { name, info, model });
        }
        Ok(Drawings {
            generators,
            rows: Vec::new(),
            json: Vec::new(),
            figure: None,
        })
    }

    /// Draws `decoders`' decodings of `test` (plus the true features) with every compatible
    /// generator, prints and keeps the scores.
    pub fn draw(
        &mut self,
        config: &CalibrateConfig,
        calibration: &Calibration<Flex>,
        test: &[Response],
        features: &FeatureSet,
        mut decoders: Vec<(String, Vec<Decoded>)>,
    ) -> Result<()> {
        if self.generators.is_empty() {
            return Ok(());
        }
        let info = &calibration.info;
        let stimuli = config.bids.join("stimuli");
        let layouts = single_object_layouts(&stimuli)?;
        let conditioner = Conditioner::load(&config.encoder)?;
        decoders.push(("true features".to_string(), true_decodings(test, features)));
        let mut images: HashMap<usize, TestImages> = HashMap::new();
        let mut drawn_here = Vec::new();
        for (decoder, decoded) in &decoders {
            for (index, g) in self.generators.iter().enumerate() {
                let embedding_only = !g.info.generator.detail_tokens;
                // The embedding-only generator draws each subject once: a final-only
                // calibration's semantic stream is the same model as the multi one's.
                if embedding_only && info.targets != "multi" {
                    continue;
                }
                let shape = (features.tokens, features.width, features.dim);
                if let Err(why) = compatible(&g.info, info.detail_layers, shape.0, shape.1, shape.2)
                {
                    tracing::debug!("{} not drawn with {}: {why}", config.out.display(), g.name);
                    continue;
                }
                let size = g.info.generator.image_size;
                let truth = match images.entry(size) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(slot) => {
                        let t = TestImages::read(&stimuli, test, &layouts, &conditioner, size)?;
                        let ceiling = t.layout_ceiling();
                        println!(
                        "{} true images at {size} px: layout measure position r {} | size r {} | error {} ({} single-object images, {} not found)",
                        config.out.display(),
                        ceiling.position_r,
                        ceiling.size_r,
                        ceiling.position_error,
                        ceiling.images,
                        ceiling.not_found
                    );
                        self.json.push(serde_json::json!({"calibration": config.out, "subject": config.subject, "true_images_layout": ceiling, "size": size}));
                        slot.insert(t)
                    }
                };
                let (report, drawn) = reconstruct(&g.model, &g.info, &conditioner, decoded, truth)?;
                let method = format!(
                    "{decoder}, {} targets -> {} ({})",
                    info.targets, report.conditioning, g.name
                );
                println!(
                    "{} [{method}]: PixCorr {} | SSIM {} | 2-way identification {} | layout position r {} size r {} error {} ({} images) | {} generator parameters",
                    config.out.display(),
                    report.pixcorr,
                    report.ssim,
                    report.identification,
                    report.layout.position_r,
                    report.layout.size_r,
                    report.layout.position_error,
                    report.layout.images,
                    report.generator_parameters
                );
                self.json.push(serde_json::json!({"calibration": config.out, "subject": config.subject, "method": method, "decoder": decoder, "generator": g.name, "report": report}));
                self.rows.push((method, report));
                if decoder == "projector" {
                    drawn_here.push((index, drawn));
                }
            }
        }
        let subject = format!("{}#{}", config.bids.display(), config.subject);
        match &mut self.figure {
            Some(f) if f.subject == subject => f.columns.extend(drawn_here),
            Some(_) => {}
            None => {
                if let Some(truth) = images.into_values().next() {
                    self.figure = Some(Figure {
                        subject,
                        truth,
                        columns: drawn_here,
                    });
                }
            }
        }
        Ok(())
    }

    /// Prints the across-subject summary, writes the figure; the JSON of all drawings (None
    /// without generators).
    pub fn finish(self, across: bool, figure: Option<&Path>) -> Result<Option<serde_json::Value>> {
        if self.generators.is_empty() {
            return Ok(None);
        }
        let summary = summarise_images(&self.rows);
        let pooled = pooled_layouts(&self.rows);
        if across {
            println!("images across subjects (mean ± SD):");
            for s in &summary {
                println!(
                    "  {:<64} n={} | PixCorr {} | SSIM {} | 2-way {} | position r {} | size r {} | error {}",
                    s.method, s.subjects, s.pixcorr, s.ssim, s.identification, s.position_r, s.size_r, s.position_error
                );
            }
            println!("layout over all subjects' single-object images pooled:");
            for (method, l) in &pooled {
                println!(
                    "  {method:<64} {} images | position r {} | size r {} | error {}",
                    l.images, l.position_r, l.size_r, l.position_error
                );
            }
        }
        if let (Some(path), Some(f)) = (figure, self.figure) {
            let mut columns = f.columns;
            columns.sort_by_key(|(index, _)| *index);
            let drawn: Vec<Vec<Vec<f32>>> = columns.into_iter().map(|(_, d)| d).collect();
            comparison_figure(&f.truth, &drawn)
                .save(path)
                .with_context(|| format!("{}: cannot write the figure", path.display()))?;
            println!("wrote {}", path.display());
        }
        let pooled: Vec<_> = pooled
            .into_iter()
            .map(|(method, layout)| serde_json::json!({"method": method, "layout": layout}))
            .collect();
        Ok(Some(
            serde_json::json!({"drawings": self.json, "across_subjects": summary, "pooled_layout": pooled}),
        ))
    }
}
