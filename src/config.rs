//! The one session file (TOML): its types, defaults, loading and validation.
//!
//! Every option has a default, and `session.example.toml` (printed by `brainmclip config
//! --example`) lists each with a comment; a test keeps the two in step. Unknown keys are
//! rejected, and every error names the file and the key. This module does not act on the
//! options: each stage reads its own section.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The commented example, with every option at its default.
pub const EXAMPLE: &str = include_str!("session.example.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the session file: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: `{key}` {message}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    pub session: SessionSection,
    pub ingest: IngestConfig,
    pub preprocess: PreprocessConfig,
    pub feedback: FeedbackConfig,
    pub output: OutputConfig,
    pub decode: DecodeConfig,
    pub monitor: MonitorConfig,
    pub simulate: crate::sim::SimConfig,
}

/// The console's data-quality figures (see `preprocess::monitor`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// Framewise displacement thresholds, mm: usable volumes and minutes are counted under each.
    pub fd_thresholds_mm: Vec<f32>,
    /// Usable minutes wanted; the projected scan time to reach them is reported per threshold.
    pub target_minutes: f64,
    /// A volume with framewise displacement over this (mm) is flagged (fMRIPrep: 0.5).
    pub fd_limit_mm: f32,
    /// A volume with standardised DVARS over this is flagged as a spike (fMRIPrep: 1.5).
    pub std_dvars_limit: f32,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            fd_thresholds_mm: vec![0.2, 0.3, 0.5],
            target_minutes: 10.0,
            fd_limit_mm: 0.5,
            std_dvars_limit: 1.5,
        }
    }
}

/// Trial samples → projector → generator (the `decode` stage of `run`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecodeConfig {
    /// A calibration folder (`brainmclip calibrate`); without one, samples are not decoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration: Option<PathBuf>,
    /// A generator folder (`brainmclip train-generator`) or a diffusers unCLIP image-variation
    /// folder (Karlo: `model_index.json`); without one, no images are drawn.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generator: Option<PathBuf>,
    /// Denoising steps per image.
    pub steps: usize,
    /// Classifier-free guidance scale (1 = none).
    pub guidance: f64,
    pub seed: u64,
    /// Step times crowd toward low noise by this power (1 = evenly spaced; see the sampler).
    pub time_power: f64,
    /// Feedback target given as text: the feedback value is the cosine of the decoded image
    /// embedding with this text's CLIP embedding (needs `encoder`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_text: Option<String>,
    /// Feedback target given as an image file: the cosine with its CLIP image embedding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_image: Option<PathBuf>,
    /// A folder of candidate images: each decoded trial is ranked against them (top-3 in the
    /// window and the log) and, when no target is set, the feedback value is the trial's
    /// identification score among them (the stimulus must be in the folder).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gallery: Option<PathBuf>,
    /// The CLIP folder whose towers embed the targets and the gallery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoder: Option<PathBuf>,
    /// The folder the events' `stim_file` paths are relative to (the BIDS root): the window
    /// shows each trial's stimulus beside its reconstruction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stimuli: Option<PathBuf>,
    /// Where the projector, the generator and the CLIP towers run: "auto" (a usable CUDA GPU,
    /// else the CPU), "cpu", "cuda" or "wgpu".
    pub device: crate::model::device::DeviceChoice,
}

impl Default for DecodeConfig {
    fn default() -> Self {
        DecodeConfig {
            calibration: None,
            generator: None,
            steps: 4,
            guidance: 1.0,
            seed: 0,
            time_power: crate::model::generator::schedule::TIME_POWER,
            target_text: None,
            target_image: None,
            gallery: None,
            encoder: None,
            stimuli: None,
            device: crate::model::device::DeviceChoice::Auto,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedbackConfig {
    pub enabled: bool,
    pub address: String,
    pub max_clients: usize,
    pub backlog: usize,
    /// A shared secret every client sends first (`{"type":"hello","token":"..."}`); required
    /// when `address` is not a loopback address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The longest line a client may send; a longer one closes its connection.
    pub max_line_bytes: usize,
    /// Lines a client may send per second (a burst of as many); faster closes its connection.
    pub max_lines_per_second: u32,
}

impl FeedbackConfig {
    /// Whether `address` listens on loopback only ("127.0.0.1:P", "[::1]:P").
    pub fn is_loopback(&self) -> bool {
        self.address
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback())
    }
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        FeedbackConfig {
            enabled: true,
            address: "127.0.0.1:5600".into(),
            max_clients: 8,
            backlog: 256,
            token: None,
            max_line_bytes: 4096,
            max_lines_per_second: 50,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MotionMode {
    /// Estimate and reslice each volume onto the reference before masking.
    Realign,
    /// Estimate parameters and FD only.
    Estimate,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ZScoreMode {
    Window,
    Exponential,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PreprocessConfig {
    pub motion: MotionMode,
    pub dummy_scans: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_table: Option<PathBuf>,
    pub zscore: ZScoreMode,
    pub zscore_window: usize,
    pub zscore_half_life: f64,
    /// Remove a linear trend within the z-score window. Off by default: the trend's value at
    /// the window's newest end is the least certain point of the fit and takes up part of the
    /// response being scored; on the simulated demo subject, a ridge decoder of high-level
    /// voxels identified 0.88 of test images with it (30 volumes; 0.91 with 100) and 0.94
    /// without.
    pub detrend: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<PathBuf>,
    pub continuous: bool,
    pub trial_window_start_s: f64,
    pub trial_window_end_s: f64,
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        PreprocessConfig {
            motion: MotionMode::Realign,
            dummy_scans: 0,
            reference: None,
            labels: None,
            label_table: None,
            zscore: ZScoreMode::Window,
            zscore_window: 30,
            zscore_half_life: 20.0,
            detrend: false,
            events: None,
            continuous: false,
            trial_window_start_s: 4.5,
            trial_window_end_s: 7.5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSection {
    pub subject: String,
    /// Seconds; 0 = from the first volume's header.
    pub tr: f64,
    /// 0 = unknown.
    pub volumes: u32,
    pub first_index: u32,
    /// Not in the file: how many times faster than the scanner the volumes come (an in-process
    /// replay). Ingest's deadlines divide the TR by it; trial timing keeps the scanner's clock.
    #[serde(skip)]
    pub clock_speed: f64,
}

impl Default for SessionSection {
    fn default() -> Self {
        SessionSection {
            subject: "sub-01".into(),
            tr: 0.0,
            volumes: 0,
            first_index: 1,
            clock_speed: 1.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchMode {
    Events,
    Poll,
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExistingFiles {
    Process,
    Skip,
}

pub const DEFAULT_PATTERN: &str = r"(?i)(\d+)\.(?:nii|hdr)(?:\.gz)?$";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    pub dir: PathBuf,
    pub watch: WatchMode,
    pub poll_interval_ms: u64,
    pub stability_ms: u64,
    pub existing: ExistingFiles,
    pub pattern: String,
    pub deadline_tr: f64,
    pub quiet_trs: f64,
    pub max_retries: u32,
    pub retry_backoff_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<PathBuf>,
    pub affine_tolerance_mm: f64,
    pub max_voxels: usize,
    pub channel_capacity: usize,
    /// DICOM: which series to take from the export folder: "auto" (the first that looks like
    /// fMRI), a series number, or a regex on SeriesDescription.
    pub series: String,
    /// DICOM single-slice series: slices per volume (0 = ImagesInAcquisition, else learned).
    pub slices_per_volume: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            dir: PathBuf::from("export"),
            watch: WatchMode::Auto,
            poll_interval_ms: 100,
            stability_ms: 50,
            existing: ExistingFiles::Process,
            pattern: DEFAULT_PATTERN.into(),
            deadline_tr: 1.5,
            quiet_trs: 10.0,
            max_retries: 6,
            retry_backoff_ms: 20,
            reference: None,
            affine_tolerance_mm: 0.01,
            max_voxels: 1 << 26,
            channel_capacity: 64,
            series: "auto".into(),
            slices_per_volume: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    pub dir: PathBuf,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            dir: PathBuf::from("session-out"),
        }
    }
}

impl SessionConfig {
    /// Reads, parses and validates a session file. Relative paths inside it are taken relative
    /// to the file's folder, so a session folder can be moved as a whole.
    pub fn load(path: &Path) -> Result<SessionConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = SessionConfig::parse(&text, path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        Ok(config)
    }

    /// Parses and validates TOML text; `path` is only used to name the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<SessionConfig, ConfigError> {
        let config: SessionConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.ingest.dir);
        for p in [
            &mut self.preprocess.reference,
            &mut self.preprocess.labels,
            &mut self.preprocess.label_table,
            &mut self.preprocess.events,
        ]
        .into_iter()
        .flatten()
        {
            resolve(p);
        }
        resolve(&mut self.output.dir);
        for p in [
            &mut self.decode.calibration,
            &mut self.decode.generator,
            &mut self.decode.encoder,
            &mut self.decode.target_image,
            &mut self.decode.gallery,
            &mut self.decode.stimuli,
        ]
        .into_iter()
        .flatten()
        {
            resolve(p);
        }
        if let Some(r) = self.ingest.reference.as_mut() {
            resolve(r);
        }
    }

    /// Checks every value whose type alone does not make it valid.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, message: String| {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                key,
                message,
            })
        };
        let s = &self.session;
        if !(s.tr.is_finite() && s.tr >= 0.0) {
            return invalid("session.tr", format!("is {}, expected seconds >= 0", s.tr));
        }
        let m = &self.monitor;
        if m.fd_thresholds_mm
            .iter()
            .any(|t| !(t.is_finite() && *t > 0.0))
        {
            return invalid(
                "monitor.fd_thresholds_mm",
                format!("is {:?}, expected millimetres > 0", m.fd_thresholds_mm),
            );
        }
        if !(m.target_minutes.is_finite() && m.target_minutes > 0.0) {
            return invalid(
                "monitor.target_minutes",
                format!("is {}, expected minutes > 0", m.target_minutes),
            );
        }
        let f = &self.feedback;
        if f.enabled && !f.is_loopback() && f.token.is_none() {
            return invalid(
                "feedback.token",
                format!("is not set while feedback.address {} is not a loopback address: anyone on the network could read the session and send markers; set a token of at least 16 characters (clients send it first), or listen on 127.0.0.1", f.address),
            );
        }
        if let Some(token) = &f.token {
            if token.chars().count() < 16 {
                return invalid(
                    "feedback.token",
                    format!(
                        "has {} characters, expected at least 16",
                        token.chars().count()
                    ),
                );
            }
        }
        if f.max_line_bytes < 256 {
            return invalid(
                "feedback.max_line_bytes",
                format!(
                    "is {}, expected at least 256 (a marker line)",
                    f.max_line_bytes
                ),
            );
        }
        if f.max_lines_per_second == 0 {
            return invalid(
                "feedback.max_lines_per_second",
                "is 0, expected at least 1".into(),
            );
        }
        if !(m.fd_limit_mm.is_finite() && m.fd_limit_mm > 0.0) {
            return invalid(
                "monitor.fd_limit_mm",
                format!("is {}, expected millimetres > 0", m.fd_limit_mm),
            );
        }
        if !(m.std_dvars_limit.is_finite() && m.std_dvars_limit > 0.0) {
            return invalid(
                "monitor.std_dvars_limit",
                format!(
                    "is {}, expected a standardised DVARS > 0",
                    m.std_dvars_limit
                ),
            );
        }
        let i = &self.ingest;
        if i.stability_ms < 50 {
            return invalid(
                "ingest.stability_ms",
                format!("is {}, expected at least 50 (two looks closer than that can both fall inside one write)", i.stability_ms),
            );
        }
        if i.poll_interval_ms == 0 {
            return invalid(
                "ingest.poll_interval_ms",
                "is 0, expected at least 1".into(),
            );
        }
        if let Err(e) = crate::ingest::dicom::SeriesChoice::parse(&i.series) {
            return invalid(
                "ingest.series",
                format!(
                    "{:?} is neither \"auto\", a series number nor a valid regex: {e}",
                    i.series
                ),
            );
        }
        match regex::Regex::new(&i.pattern) {
            Err(e) => return invalid("ingest.pattern", format!("is not a valid regex: {e}")),
            Ok(r) if r.captures_len() < 2 => {
                return invalid(
                    "ingest.pattern",
                    format!(
                        "{:?} has no capture group; expected one around the index digits",
                        i.pattern
                    ),
                )
            }
            Ok(_) => {}
        }
        if !(i.deadline_tr.is_finite() && i.deadline_tr >= 1.0) {
            return invalid(
                "ingest.deadline_tr",
                format!(
                    "is {}, expected at least 1.0 (a volume cannot be due before its TR)",
                    i.deadline_tr
                ),
            );
        }
        if !(i.quiet_trs.is_finite() && i.quiet_trs > 0.0) {
            return invalid(
                "ingest.quiet_trs",
                format!("is {}, expected > 0", i.quiet_trs),
            );
        }
        if !(i.affine_tolerance_mm.is_finite() && i.affine_tolerance_mm >= 0.0) {
            return invalid(
                "ingest.affine_tolerance_mm",
                format!("is {}, expected mm >= 0", i.affine_tolerance_mm),
            );
        }
        if i.max_voxels == 0 {
            return invalid(
                "ingest.max_voxels",
                "is 0, expected a positive voxel count".into(),
            );
        }
        if i.channel_capacity == 0 {
            return invalid(
                "ingest.channel_capacity",
                "is 0, expected at least 1".into(),
            );
        }
        for (key, ms) in [
            ("ingest.poll_interval_ms", i.poll_interval_ms),
            ("ingest.stability_ms", i.stability_ms),
            ("ingest.retry_backoff_ms", i.retry_backoff_ms),
        ] {
            if !(1..=3_600_000).contains(&ms) {
                return invalid(key, format!("is {ms}, expected 1 to 3600000 ms"));
            }
        }
        let p = &self.preprocess;
        if p.zscore_window < 3 {
            return invalid(
                "preprocess.zscore_window",
                format!("is {}, expected at least 3 volumes", p.zscore_window),
            );
        }
        if !(p.zscore_half_life.is_finite() && p.zscore_half_life >= 1.0) {
            return invalid(
                "preprocess.zscore_half_life",
                format!("is {}, expected at least 1 volume", p.zscore_half_life),
            );
        }
        if !(p.trial_window_start_s.is_finite()
            && p.trial_window_end_s.is_finite()
            && p.trial_window_start_s < p.trial_window_end_s)
        {
            return invalid(
                "preprocess.trial_window_end_s",
                format!(
                    "window {}..{} s: expected start < end",
                    p.trial_window_start_s, p.trial_window_end_s
                ),
            );
        }
        if p.labels.is_some() != p.label_table.is_some() {
            return invalid(
                "preprocess.labels",
                "and preprocess.label_table must be given together".into(),
            );
        }
        if self
            .feedback
            .address
            .parse::<std::net::SocketAddr>()
            .is_err()
        {
            return invalid(
                "feedback.address",
                format!(
                    "{:?} is not an address; expected ip:port such as \"127.0.0.1:5600\"",
                    self.feedback.address
                ),
            );
        }
        if self.feedback.max_clients == 0 || self.feedback.backlog == 0 {
            return invalid(
                "feedback.max_clients",
                "and feedback.backlog must be at least 1".into(),
            );
        }
        if self.decode.steps == 0 || self.decode.steps > 1000 {
            return invalid(
                "decode.steps",
                format!(
                    "is {}, expected 1 to 1000 denoising steps",
                    self.decode.steps
                ),
            );
        }
        if !(self.decode.guidance.is_finite() && self.decode.guidance > 0.0) {
            return invalid(
                "decode.guidance",
                format!(
                    "is {}, expected a positive scale (1 = none)",
                    self.decode.guidance
                ),
            );
        }
        if !(self.decode.time_power.is_finite() && (1.0..=20.0).contains(&self.decode.time_power)) {
            return invalid(
                "decode.time_power",
                format!(
                    "is {}, expected 1 (evenly spaced steps) to 20",
                    self.decode.time_power
                ),
            );
        }
        let d = &self.decode;
        if d.target_text.is_some() && d.target_image.is_some() {
            return invalid(
                "decode.target_text",
                "and decode.target_image are both set; give one feedback target".into(),
            );
        }
        let needs_encoder = [
            ("decode.target_text", d.target_text.is_some()),
            ("decode.target_image", d.target_image.is_some()),
            ("decode.gallery", d.gallery.is_some()),
        ];
        if let Some((key, _)) = needs_encoder.iter().find(|(_, set)| *set) {
            if d.encoder.is_none() {
                return invalid(
                    key,
                    "needs decode.encoder (the CLIP folder that embeds it)".into(),
                );
            }
        }
        if let Err(message) = self.simulate.validate() {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                key: "simulate",
                message,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(value: &toml::Value, prefix: &str, out: &mut Vec<String>) {
        if let toml::Value::Table(t) = value {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if v.is_table() {
                    keys(v, &key, out);
                } else {
                    out.push(key);
                }
            }
        }
    }

    #[test]
    fn example_is_the_defaults_and_lists_every_option() {
        let parsed = SessionConfig::parse(EXAMPLE, Path::new("example")).unwrap();
        assert_eq!(parsed, SessionConfig::default());
        let mut all = Vec::new();
        keys(
            &toml::Value::try_from(SessionConfig::default()).unwrap(),
            "",
            &mut all,
        );
        let example: toml::Value = toml::from_str(EXAMPLE).unwrap();
        let mut shown = Vec::new();
        keys(&example, "", &mut shown);
        for key in &all {
            assert!(shown.contains(key), "{key} missing from the example");
        }
        // Options without a default value are shown commented out.
        assert!(EXAMPLE.contains("# reference = "));
        assert!(all.len() >= 18, "{all:?}");
    }

    #[test]
    fn unknown_key_is_named_with_the_file() {
        let err = SessionConfig::parse("[ingest]\npoll_intervall_ms = 5\n", Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s.toml:"), "{err}");
        assert!(err.contains("poll_intervall_ms"), "{err}");
    }

    #[test]
    fn wrong_type_and_invalid_values_name_the_key() {
        let err = SessionConfig::parse("[session]\ntr = \"fast\"\n", Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("tr") && err.contains("s.toml"), "{err}");
        let err = SessionConfig::parse("[ingest]\nstability_ms = 10\n", Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`ingest.stability_ms` is 10"), "{err}");
        let err = SessionConfig::parse("[ingest]\npattern = '\\d+'\n", Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ingest.pattern") && err.contains("capture group"),
            "{err}"
        );
        let err = SessionConfig::parse("[ingest]\nwatch = \"inotify\"\n", Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("watch") && err.contains("inotify"), "{err}");
    }

    #[test]
    fn a_feedback_server_off_loopback_needs_a_token() {
        let parse = |text: &str| SessionConfig::parse(text, Path::new("s.toml"));
        let err = parse("[feedback]\naddress = \"0.0.0.0:5600\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("feedback.token") && err.contains("0.0.0.0:5600 is not a loopback"),
            "{err}"
        );
        let err = parse("[feedback]\naddress = \"0.0.0.0:5600\"\ntoken = \"short\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("has 5 characters, expected at least 16"),
            "{err}"
        );
        let ok = parse("[feedback]\naddress = \"0.0.0.0:5600\"\ntoken = \"0123456789abcdef\"\n");
        assert!(ok.is_ok(), "{ok:?}");
        // Loopback needs none.
        for address in ["127.0.0.1:5600", "[::1]:5600"] {
            let text = format!("[feedback]\naddress = \"{address}\"\n");
            let parsed = parse(&text);
            assert!(parsed.is_ok(), "{address}: {parsed:?}");
        }
        // Disabled, it listens nowhere and needs nothing.
        assert!(parse("[feedback]\nenabled = false\naddress = \"0.0.0.0:1\"\n").is_ok());
    }

    #[test]
    fn load_resolves_relative_paths_against_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("session.toml");
        std::fs::write(
            &file,
            "[ingest]\ndir = \"incoming\"\nreference = \"/abs/ref.nii\"\n",
        )
        .unwrap();
        let c = SessionConfig::load(&file).unwrap();
        assert_eq!(c.ingest.dir, dir.path().join("incoming"));
        assert_eq!(c.ingest.reference, Some(PathBuf::from("/abs/ref.nii")));
        let missing = SessionConfig::load(&dir.path().join("nope.toml"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("nope.toml"), "{missing}");
    }
}
