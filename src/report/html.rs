//! The report page: a summary table, then one section per figure, then decoding (metrics, the
//! feedback trace, stimulus | reconstruction pairs). Images are inline PNG (`data:` URLs) and
//! the style is in the page, so it needs no network and no other file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::Value;

use super::figures::{self, series};
use super::log::{MonitorRow, RunLog, TrialRow};
use super::Maps;

/// Trials shown in the gallery at most (evenly spread over the run).
const GALLERY_MAX: usize = 48;
const THUMBNAIL: u32 = 112;

const STYLE: &str = "body{font-family:sans-serif;margin:24px;max-width:960px;color:#222}\
h1{font-size:24px}h2{font-size:19px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}\
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 9px;text-align:right}\
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}img{max-width:100%}\
.pairs{display:flex;flex-wrap:wrap;gap:10px}.pair{font-size:12px;text-align:center}\
.pair img{width:112px;height:112px;image-rendering:pixelated;margin:1px}.note{color:#666;font-size:13px}\
.flag{color:#c0392b}";

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn img(png: &[u8], alt: &str) -> String {
    format!(
        "<img alt=\"{}\" src=\"data:image/png;base64,{}\">",
        escape(alt),
        base64::engine::general_purpose::STANDARD.encode(png)
    )
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.filter(|v| v.is_finite())
        .map_or("n/a".into(), |v| format!("{v:.digits$}"))
}

fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut t = String::from("<table><tr>");
    for h in head {
        let _ = write!(t, "<th>{}</th>", escape(h));
    }
    t.push_str("</tr>");
    for row in rows {
        t.push_str("<tr>");
        for cell in row {
            let _ = write!(t, "<td>{cell}</td>");
        }
        t.push_str("</tr>");
    }
    t.push_str("</table>");
    t
}

fn section(out: &mut String, id: &str, title: &str, body: &str) {
    let _ = write!(
        out,
        "<section id=\"{id}\"><h2>{}</h2>{body}</section>",
        escape(title)
    );
}

fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_unstable_by(f64::total_cmp);
    Some(v[((v.len() - 1) as f64 * p).round() as usize])
}

fn summary(log: &RunLog) -> String {
    let started = log.started.clone().unwrap_or_default();
    let count = |name: &str| log.count(name).map_or("n/a".into(), |n| n.to_string());
    let flagged_fd = log.monitors.iter().filter(|m| m.fd_over_limit).count();
    let spikes = log.monitors.iter().filter(|m| m.dvars_spike).count();
    let duration = match (&log.started, &log.ended) {
        (Some(s), Some(e)) => s["at_ns"]
            .as_u64()
            .zip(e["at_ns"].as_u64())
            .map(|(a, b)| format!("{:.1} s", b.saturating_sub(a) as f64 / 1e9)),
        _ => None,
    };
    let mut rows = vec![
        vec![
            "device".into(),
            escape(started["device"].as_str().unwrap_or("?")),
        ],
        vec![
            "TR".into(),
            format!("{} s", num(started["tr_s"].as_f64(), 2)),
        ],
        vec!["volumes preprocessed".into(), log.volumes.len().to_string()],
        vec!["dummy scans left out".into(), log.dummies.to_string()],
        vec!["delivered".into(), count("delivered")],
        vec!["missing".into(), count("missing")],
        vec!["late".into(), count("late")],
        vec!["rejected".into(), count("rejected")],
        vec!["duplicates".into(), count("duplicates")],
        vec![
            "volumes over the FD limit".into(),
            format!("<span class=\"flag\">{flagged_fd}</span>"),
        ],
        vec![
            "DVARS spikes".into(),
            format!("<span class=\"flag\">{spikes}</span>"),
        ],
        vec![
            "run length".into(),
            duration.unwrap_or_else(|| "n/a (the run did not end)".into()),
        ],
    ];
    if let Some(last) = log.monitors.last() {
        for (group, value) in &last.tsnr {
            rows.push(vec![
                format!("median tSNR, {}", escape(group)),
                num(Some(*value), 1),
            ]);
        }
    }
    table(&["", "value"], &rows)
}

fn usable_table(log: &RunLog) -> String {
    let Some(last) = log.monitors.last() else {
        return "<p class=\"note\">No monitor records in this log.</p>".into();
    };
    let target = log
        .monitor_setting("target_minutes")
        .and_then(Value::as_f64);
    let rows: Vec<Vec<String>> = last
        .usable
        .iter()
        .map(|u| {
            vec![
                format!("FD ≤ {} mm", crate::chart::tick(&u.threshold_mm)),
                u.volumes.to_string(),
                num(Some(u.minutes), 2),
                num(Some(u.percent), 1),
                num(u.projected_total_minutes, 1),
            ]
        })
        .collect();
    let target = target.map_or("the target".into(), |t| format!("{t} usable minutes"));
    table(
        &[
            "threshold",
            "usable volumes",
            "usable minutes",
            "usable %",
            &format!("scan minutes to reach {target}"),
        ],
        &rows,
    )
}

fn flagged_points(
    log: &RunLog,
    flag: fn(&MonitorRow) -> bool,
    value: impl Fn(u32) -> Option<f64>,
) -> Vec<(f64, f64)> {
    log.monitors
        .iter()
        .filter(|m| flag(m))
        .filter_map(|m| value(m.index).map(|v| (f64::from(m.index), v)))
        .collect()
}

/// A thumbnail of an image file, or nothing when it cannot be read.
fn thumbnail(path: &Path) -> Option<Vec<u8>> {
    let image = image::open(path).ok()?;
    let small = image.resize_exact(THUMBNAIL, THUMBNAIL, image::imageops::FilterType::Triangle);
    let mut png = std::io::Cursor::new(Vec::new());
    small.write_to(&mut png, image::ImageFormat::Png).ok()?;
    Some(png.into_inner())
}

fn gallery(log: &RunLog, stimuli: Option<PathBuf>, session: &Path) -> String {
    let drawn: Vec<&TrialRow> = log.trials.iter().filter(|t| t.image.is_some()).collect();
    if drawn.is_empty() {
        return "<p class=\"note\">No reconstructions were drawn in this run.</p>".into();
    }
    let step = drawn.len().div_ceil(GALLERY_MAX).max(1);
    let mut out = String::from("<div class=\"pairs\">");
    for t in drawn.iter().step_by(step) {
        // A name from the log is opened only inside the stimuli folder.
        let stimulus = t
            .stimulus
            .as_ref()
            .filter(|s| crate::preprocess::trials::unsafe_stimulus_name(s).is_none())
            .zip(stimuli.as_ref())
            .and_then(|(s, dir)| thumbnail(&dir.join(s)));
        // Looked up by name in the session folder, so a moved or copied folder still shows it.
        let reconstruction = t
            .image
            .as_deref()
            .and_then(|p| p.file_name())
            .and_then(|name| thumbnail(&session.join("reconstructions").join(name)));
        let show = |png: Option<Vec<u8>>, what: &str| {
            png.map_or(format!("<span class=\"note\">no {what}</span>"), |p| {
                img(&p, what)
            })
        };
        let _ = write!(
            out,
            "<div class=\"pair\">{}{}<br>trial {}{}</div>",
            show(stimulus, "stimulus"),
            show(reconstruction, "reconstruction"),
            t.trial,
            t.feedback
                .map_or(String::new(), |f| format!(" · feedback {f:.3}"))
        );
    }
    out.push_str("</div>");
    out
}

fn decoding(log: &RunLog, demo: Option<&Value>) -> Result<String, String> {
    if log.trials.is_empty() {
        return Ok("<p class=\"note\">No trials were decoded in this run.</p>".into());
    }
    let pick =
        |f: fn(&TrialRow) -> Option<f64>| -> Vec<f64> { log.trials.iter().filter_map(f).collect() };
    let identification = pick(|t| t.identification);
    let feedback = pick(|t| t.feedback);
    let decode = pick(|t| t.decode_ms);
    let generate = pick(|t| t.generate_ms);
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let mut rows = vec![
        vec!["trials decoded".into(), log.trials.len().to_string()],
        vec![
            "reconstructions drawn".into(),
            log.trials
                .iter()
                .filter(|t| t.image.is_some())
                .count()
                .to_string(),
        ],
        vec![
            format!(
                "mean identification (0.5 = chance; n = {})",
                identification.len()
            ),
            num(mean(&identification), 3),
        ],
        vec!["mean feedback".into(), num(mean(&feedback), 3)],
        vec!["decode ms, median".into(), num(percentile(&decode, 0.5), 1)],
        vec![
            "generate ms, median".into(),
            num(percentile(&generate, 0.5), 1),
        ],
    ];
    if let Some(Value::Object(summary)) = demo {
        for (key, value) in summary {
            let shown = match value {
                Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
                Value::Number(n) => n.as_f64().map(|v| num(Some(v), 3)),
                Value::Object(o) => o.get("mean").and_then(Value::as_f64).map(|m| {
                    let ci = o
                        .get("ci95")
                        .map_or(String::new(), |c| format!(" (95 % CI {c})"));
                    format!("{}{}", num(Some(m), 3), escape(&ci))
                }),
                _ => None,
            };
            if let Some(shown) = shown {
                rows.push(vec![format!("demo: {}", escape(key)), shown]);
            }
        }
    }
    let mut body = table(&["metric", "value"], &rows);
    let feedback_points: Vec<(f64, f64)> = log
        .trials
        .iter()
        .filter_map(|t| t.feedback.map(|f| (t.trial as f64, f)))
        .collect();
    let label = log
        .started
        .as_ref()
        .and_then(|s| s["feedback_label"].as_str())
        .unwrap_or("feedback value");
    let chart = figures::line_chart(
        &format!("Feedback per trial: {label}"),
        "trial",
        "feedback (cosine)",
        &[series("feedback", feedback_points, false)],
        &[],
    )?;
    body.push_str(&img(&chart, "feedback trace"));
    body.push_str("<h3>Stimulus | reconstruction</h3>");
    let stimuli = log
        .started
        .as_ref()
        .and_then(|s| s["stimuli"].as_str())
        .map(PathBuf::from);
    let session = log.path.parent().unwrap_or(Path::new("."));
    body.push_str(&gallery(log, stimuli, session));
    Ok(body)
}

/// The whole page.
pub fn page(log: &RunLog, maps: &Maps, demo: Option<&Value>) -> Result<String, String> {
    let mut out = String::new();
    let started = log.started.clone().unwrap_or_default();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>brainmclip session report</title><style>{STYLE}</style></head><body><h1>brainmclip session report</h1><p class=\"note\">{} · brainmclip {} · watching {}</p>",
        escape(&log.path.display().to_string()),
        escape(started["version"].as_str().unwrap_or("?")),
        escape(started["watching"].as_str().unwrap_or("?")),
    );
    let mut head = summary(log);
    head.push_str("<h3>Usable data (framewise displacement, as FIRMM counts it)</h3>");
    head.push_str(&usable_table(log));
    if !log.errors.is_empty() || log.unreadable_lines > 0 {
        head.push_str("<h3>Problems</h3><ul>");
        for e in &log.errors {
            let _ = write!(head, "<li class=\"flag\">{}</li>", escape(e));
        }
        if log.unreadable_lines > 0 {
            let _ = write!(
                head,
                "<li class=\"flag\">{} unreadable log lines skipped</li>",
                log.unreadable_lines
            );
        }
        head.push_str("</ul>");
    }
    section(&mut out, "summary", "Run summary", &head);

    let v = &log.volumes;
    let x = |k: usize| f64::from(v[k].index);
    let trace = |f: &dyn Fn(usize) -> Option<f64>| -> Vec<(f64, f64)> {
        (0..v.len())
            .filter_map(|k| f(k).map(|y| (x(k), y)))
            .collect()
    };
    let axis = |name: &str, a: usize| series(name, trace(&|k| v[k].motion.map(|m| m[a])), false);
    let translation = figures::line_chart(
        "Translation",
        "volume",
        "mm",
        &[axis("x", 0), axis("y", 1), axis("z", 2)],
        &[],
    )?;
    let rotation = figures::line_chart(
        "Rotation",
        "volume",
        "degrees",
        &[
            axis("pitch (x)", 3),
            axis("roll (y)", 4),
            axis("yaw (z)", 5),
        ],
        &[],
    )?;
    section(
        &mut out,
        "motion",
        "Head motion (realignment to the reference volume)",
        &(img(&translation, "translation") + &img(&rotation, "rotation")),
    );

    let setting_list = |name: &str| -> Vec<f64> {
        log.monitor_setting(name)
            .and_then(Value::as_array)
            .map_or(Vec::new(), |a| a.iter().filter_map(Value::as_f64).collect())
    };
    let fd_levels: Vec<(String, f64)> = setting_list("fd_thresholds_mm")
        .into_iter()
        .map(|t| (format!("{} mm", crate::chart::tick(&t)), t))
        .collect();
    let fd_of = |index: u32| v.iter().find(|r| r.index == index).and_then(|r| r.fd_mm);
    let fd = figures::line_chart(
        "Framewise displacement (Power)",
        "volume",
        "FD (mm)",
        &[
            series("FD", trace(&|k| v[k].fd_mm), false),
            series(
                "over the FD limit",
                flagged_points(log, |m| m.fd_over_limit, fd_of),
                true,
            ),
        ],
        &fd_levels,
    )?;
    section(
        &mut out,
        "fd",
        "Framewise displacement, with the usable-data thresholds",
        &img(&fd, "framewise displacement"),
    );

    let m = &log.monitors;
    let monitor_trace = |f: fn(&MonitorRow) -> Option<f64>| -> Vec<(f64, f64)> {
        m.iter()
            .filter_map(|r| f(r).map(|y| (f64::from(r.index), y)))
            .collect()
    };
    let std_of = |index: u32| {
        m.iter()
            .find(|r| r.index == index)
            .and_then(|r| r.std_dvars)
    };
    let limit = log
        .monitor_setting("std_dvars_limit")
        .and_then(Value::as_f64);
    let dvars = figures::line_chart(
        "DVARS",
        "volume",
        "RMS change over mask voxels (signal units)",
        &[series("DVARS", monitor_trace(|r| r.dvars), false)],
        &[],
    )?;
    let std_dvars = figures::line_chart(
        "Standardised DVARS",
        "volume",
        "DVARS / expected (unitless)",
        &[
            series("std DVARS", monitor_trace(|r| r.std_dvars), false),
            series(
                "spike",
                flagged_points(log, |r| r.dvars_spike, std_of),
                true,
            ),
        ],
        &limit.map_or(Vec::new(), |l| vec![(format!("limit {l}"), l)]),
    )?;
    section(
        &mut out,
        "dvars",
        "DVARS",
        &(img(&dvars, "DVARS") + &img(&std_dvars, "standardised DVARS")),
    );

    let global = figures::line_chart(
        "Global signal",
        "volume",
        "mean over the mask (signal units)",
        &[series("global", trace(&|k| v[k].global_signal), false)],
        &[],
    )?;
    section(
        &mut out,
        "global-signal",
        "Global signal",
        &img(&global, "global signal"),
    );

    let carpet = match &maps.carpet {
        Some(columns) if !columns.is_empty() => {
            let groups: Vec<(String, usize)> = log
                .quality_maps
                .as_ref()
                .and_then(|q| q["carpet_groups"].as_array())
                .map_or(Vec::new(), |g| {
                    g.iter()
                        .filter_map(|g| {
                            Some((
                                g["name"].as_str()?.to_string(),
                                g["rows"].as_u64()? as usize,
                            ))
                        })
                        .collect()
                });
            // The carpet's columns are the preprocessed volumes, in order.
            let indices: Vec<u32> = v.iter().map(|r| r.index).take(columns.len()).collect();
            if indices.len() == columns.len() {
                img(&figures::carpet(columns, &indices, &groups)?, "carpet plot")
            } else {
                "<p class=\"note\">The carpet has more columns than the log has volumes.</p>".into()
            }
        }
        _ => "<p class=\"note\">No carpet was written (the run did not end).</p>".into(),
    };
    section(&mut out, "carpet", "Carpet plot", &carpet);

    let tsnr = match &maps.tsnr {
        Some((map, dims)) => {
            format!(
                "{}<p class=\"note\">tSNR = mean / standard deviation over the run's preprocessed volumes, per voxel; its median in each mask is in the run summary.</p>",
                img(&figures::tsnr_slices(map, *dims)?, "tSNR map"),
            )
        }
        None => "<p class=\"note\">No tSNR map was written (the run did not end).</p>".into(),
    };
    section(&mut out, "tsnr", "Temporal SNR", &tsnr);

    let per_volume = |f: fn(&super::log::VolumeRow) -> Option<f64>| -> Vec<f64> {
        v.iter().filter_map(f).collect()
    };
    let per_trial =
        |f: fn(&TrialRow) -> Option<f64>| -> Vec<f64> { log.trials.iter().filter_map(f).collect() };
    let latency = figures::latency_histograms(&[
        ("file seen -> read", "volumes", per_volume(|r| r.read_ms)),
        (
            "read -> preprocessed",
            "volumes",
            per_volume(|r| r.preprocess_ms),
        ),
        ("sample -> decoded", "trials", per_trial(|t| t.decode_ms)),
        ("decoded -> drawn", "trials", per_trial(|t| t.generate_ms)),
    ])?;
    section(
        &mut out,
        "latency",
        "Latency per stage",
        &img(&latency, "latency histograms"),
    );

    section(&mut out, "decoding", "Decoding", &decoding(log, demo)?);
    out.push_str("</body></html>\n");
    Ok(out)
}
