//! Line charts as PNG (the loss curves beside a calibration's `report.json`, the run report's
//! traces), drawn with plotters: a title, both axes named with their units, a legend naming
//! every series beside the plot, a log or linear y axis, dashed reference levels, series as
//! lines or as points. Text is set in the Ubuntu font that egui already bundles, so no system
//! font is needed; `render` gives other drawings (the report's carpet and histograms) the same
//! canvas and font. Not for images of stimuli or reconstructions (those are written as they
//! are), nor for the live window's plots (`ui/plots.rs`, egui_plot).

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use image::ImageEncoder as _;
use plotters::backend::RGBPixel;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;

pub const WIDTH: u32 = 800;
pub const HEIGHT: u32 = 500;

/// Line colours in series order (matplotlib's tab10, then navy and teal); they repeat after 12.
pub const COLOURS: [RGBColor; 12] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(0, 0, 128),
    RGBColor(0, 128, 128),
];

pub const FONT: &str = "sans-serif";
const LEGEND_FONT: f64 = 13.0;

/// One named line: its y values at x = 0, 1, 2, ... (epochs, as numbered in `report.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<f64>,
}

/// A named series at explicit x values, drawn as a line or as points (e.g. flagged volumes).
#[derive(Debug, Clone, PartialEq)]
pub struct XySeries {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub as_points: bool,
}

/// What a chart says about itself: its title, each axis's quantity and unit, the y scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub log_y: bool,
}

/// A chart that could not be drawn or written, naming its file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PlotError {
    pub path: PathBuf,
    pub message: String,
}

/// Registers the bundled font as plotters' "sans-serif", once per process.
pub fn font_loaded() -> bool {
    static LOADED: OnceLock<bool> = OnceLock::new();
    *LOADED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, epaint_default_fonts::UBUNTU_LIGHT)
            .is_ok()
    })
}

/// Writes a WIDTH x HEIGHT PNG of `series` to `path` (atomically). Non-finite values, and values
/// <= 0 on a log axis, are left out; a series without points still gets its legend entry,
/// marked "(no data)".
pub fn plot_lines(path: &Path, chart: &Chart, series: &[Series]) -> Result<(), PlotError> {
    let fail = |message: String| PlotError {
        path: path.to_owned(),
        message,
    };
    let series: Vec<XySeries> = series
        .iter()
        .map(|s| XySeries {
            name: s.name.clone(),
            points: s
                .points
                .iter()
                .enumerate()
                .map(|(x, &y)| (x as f64, y))
                .collect(),
            as_points: false,
        })
        .collect();
    let png = lines_png(chart, &series, &[], (WIDTH, HEIGHT)).map_err(fail)?;
    crate::atomic::write_atomic(path, &png).map_err(|e| fail(e.to_string()))
}

/// A `size` PNG of `series` with dashed horizontal `levels` (name, y). Non-finite values, and
/// values <= 0 on a log axis, are left out; a series without points still gets its legend
/// entry, marked "(no data)".
pub fn lines_png(
    chart: &Chart,
    series: &[XySeries],
    levels: &[(String, f64)],
    size: (u32, u32),
) -> Result<Vec<u8>, String> {
    let usable = |y: f64| y.is_finite() && (!chart.log_y || y > 0.0);
    let lines: Vec<Drawn> = series
        .iter()
        .map(|s| {
            let points: Vec<_> = s
                .points
                .iter()
                .copied()
                .filter(|&(x, y)| x.is_finite() && usable(y))
                .collect();
            let name = if points.is_empty() {
                format!("{} (no data)", s.name)
            } else {
                s.name.clone()
            };
            Drawn {
                name,
                points,
                as_points: s.as_points,
            }
        })
        .collect();
    let levels: Vec<(String, f64)> = levels.iter().filter(|l| usable(l.1)).cloned().collect();
    let all = || lines.iter().flat_map(|l| l.points.iter());
    let x = padded(extent(all().map(|p| p.0)), 0.0);
    let y = extent(all().map(|p| p.1).chain(levels.iter().map(|l| l.1)));
    render(size, |root| {
        if chart.log_y {
            draw(root, chart, &lines, &levels, x, decades(y).log_scale())
        } else {
            draw(root, chart, &lines, &levels, x, padded(y, 0.05))
        }
    })
}

/// One series as drawn: its legend name, its usable points, lines or points.
struct Drawn {
    name: String,
    points: Vec<(f64, f64)>,
    as_points: bool,
}

/// What `render` hands a drawing, and what the drawing returns.
pub type Canvas<'a> = DrawingArea<BitMapBackend<'a, RGBPixel>, Shift>;
pub type Drawing = Result<
    (),
    DrawingAreaErrorKind<<BitMapBackend<'static, RGBPixel> as DrawingBackend>::ErrorType>,
>;

/// Draws on a white-backed `size` bitmap with the chart font loaded, and encodes it as PNG.
pub fn render(
    size: (u32, u32),
    paint: impl FnOnce(&Canvas<'_>) -> Drawing,
) -> Result<Vec<u8>, String> {
    if !font_loaded() {
        return Err("the bundled chart font did not load".into());
    }
    let (w, h) = size;
    let mut rgb = vec![255u8; (w * h * 3) as usize];
    {
        let backend = BitMapBackend::<RGBPixel>::with_buffer_and_format(&mut rgb, size)
            .map_err(|e| format!("cannot make the chart's bitmap: {e}"))?;
        let root = backend.into_drawing_area();
        paint(&root)
            .and_then(|()| root.present())
            .map_err(|e| format!("cannot draw the chart: {e}"))?;
    }
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&rgb, w, h, image::ExtendedColorType::Rgb8)
        .map_err(|e| format!("cannot encode PNG: {e}"))?;
    Ok(png)
}

/// Draws the chart on `root`; `y_range` is a linear range or a `.log_scale()` one.
fn draw<DB, Y>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart,
    lines: &[Drawn],
    levels: &[(String, f64)],
    x_range: Range<f64>,
    y_range: Y,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>
where
    DB: DrawingBackend,
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    root.fill(&WHITE)?;
    // The legend sits right of the plot, in a margin fitted to its longest name.
    let legend_font = FontDesc::new(FontFamily::SansSerif, LEGEND_FONT, FontStyle::Normal);
    let longest = lines
        .iter()
        .map(|l| l.name.as_str())
        .chain(levels.iter().map(|l| l.0.as_str()))
        .filter_map(|name| legend_font.box_size(name).ok())
        .map(|(w, _)| w)
        .max()
        .unwrap_or(0);
    let mut plot = ChartBuilder::on(root)
        .caption(chart.title, (FONT, 20))
        .margin(12)
        .margin_right(longest + 80)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range.clone(), y_range)?;
    // Integer-spaced x (epochs) gets a tick per step while there are few of them.
    let x_ticks = ((x_range.end - x_range.start).round() as usize + 1).clamp(2, 10);
    plot.configure_mesh()
        .x_desc(chart.x_label)
        .y_desc(chart.y_label)
        .axis_desc_style((FONT, 15))
        .label_style((FONT, 12))
        .x_labels(x_ticks)
        .light_line_style(RGBColor(235, 235, 235))
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .draw()?;
    let (x0, y0) = plot.plotting_area().get_base_pixel();
    let legend_x = x0 + plot.plotting_area().dim_in_pixel().0 as i32 + 16;
    for (k, line) in lines.iter().enumerate() {
        let style = COLOURS[k % COLOURS.len()].stroke_width(2);
        let y = y0 + 10 + 20 * k as i32;
        if line.as_points {
            let fill = COLOURS[k % COLOURS.len()].filled();
            plot.draw_series(line.points.iter().map(|&p| Circle::new(p, 4, fill)))?;
            root.draw(&Circle::new((legend_x + 10, y), 4, fill))?;
        } else {
            let marker = if line.points.len() == 1 { 3 } else { 0 };
            plot.draw_series(
                LineSeries::new(line.points.iter().copied(), style).point_size(marker),
            )?;
            // The legend, drawn on the root: the chart's own legend is clipped to the plot.
            root.draw(&PathElement::new(
                vec![(legend_x, y), (legend_x + 20, y)],
                style,
            ))?;
        }
        root.draw(&Text::new(
            line.name.as_str(),
            (legend_x + 28, y - 6),
            legend_font.clone(),
        ))?;
    }
    let grey = RGBColor(110, 110, 110);
    for (k, (name, level)) in levels.iter().enumerate() {
        // Dashes drawn as short segments: plotters 0.3's bitmap has no dashed stroke.
        let (lo, hi) = (x_range.start, x_range.end);
        let step = (hi - lo) / 60.0;
        plot.draw_series((0..60).step_by(2).map(|i| {
            let a = lo + step * i as f64;
            PathElement::new(vec![(a, *level), (a + step, *level)], grey.stroke_width(1))
        }))?;
        let y = y0 + 10 + 20 * (lines.len() + k) as i32;
        for d in [0, 8, 16] {
            root.draw(&PathElement::new(
                vec![(legend_x + d, y), (legend_x + d + 4, y)],
                grey.stroke_width(1),
            ))?;
        }
        root.draw(&Text::new(
            name.as_str(),
            (legend_x + 28, y - 6),
            legend_font.clone(),
        ))?;
    }
    Ok(())
}

/// Smallest and largest value, if any.
fn extent(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// A linear axis range around `extent`, widened by `pad` of its span on each side (0..1 when
/// there is nothing to show, +-1 around a single value).
fn padded(extent: Option<(f64, f64)>, pad: f64) -> Range<f64> {
    match extent {
        None => 0.0..1.0,
        Some((lo, hi)) if hi > lo => {
            let d = (hi - lo) * pad;
            lo - d..hi + d
        }
        Some((v, _)) => v - 1.0..v + 1.0,
    }
}

/// A log axis range from the power of ten at or below the smallest value to the one above the
/// largest: plotters labels a log axis only at and between powers of ten it contains.
fn decades(extent: Option<(f64, f64)>) -> Range<f64> {
    let Some((lo, hi)) = extent else {
        return 1.0..10.0;
    };
    let lo = lo.log10().floor();
    let hi = hi.log10().ceil().max(lo + 1.0);
    // Nudged outwards so that rounding in plotters keeps both end decades labelled.
    10f64.powi(lo as i32) * (1.0 - 1e-9)..10f64.powi(hi as i32) * (1.0 + 1e-9)
}

/// A tick label: at most 4 significant digits, no trailing zeros, exponent form when tiny or huge;
/// below 1e-12 it is rounding noise in plotters' tick positions (a zero printed as -5.55e-17).
pub fn tick(v: &f64) -> String {
    fn trim(s: &str) -> &str {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.')
        } else {
            s
        }
    }
    let a = v.abs();
    if a < 1e-12 {
        "0".into()
    } else if (1e-3..1e5).contains(&a) {
        let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
        trim(&format!("{v:.decimals$}")).to_string()
    } else {
        let s = format!("{v:.2e}");
        match s.split_once('e') {
            Some((mantissa, exponent)) => format!("{}e{exponent}", trim(mantissa)),
            None => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn decaying(name: &str, start: f64, rate: f64) -> Series {
        Series {
            name: name.into(),
            points: (0..30).map(|e| start * rate.powi(e)).collect(),
        }
    }

    #[test]
    fn writes_a_titled_chart_with_every_series() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("loss.png");
        let mut validation = decaying("validation", 3.0, 0.85);
        validation.points[5] = f64::NAN;
        validation.points[6] = 0.0;
        let series = [
            decaying("train", 2.0, 0.8),
            validation,
            Series {
                name: "empty".into(),
                points: vec![],
            },
        ];
        let chart = Chart {
            title: "Loss",
            x_label: "epoch",
            y_label: "loss (log scale)",
            log_y: true,
        };
        plot_lines(&path, &chart, &series).expect("plot");

        let img = image::open(&path).expect("decode").to_rgb8();
        assert_eq!(img.dimensions(), (WIDTH, HEIGHT));
        let distinct: HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
        assert!(distinct.len() > 8, "only {} colours", distinct.len());
        for (k, c) in COLOURS[..3].iter().enumerate() {
            let n = img.pixels().filter(|p| p.0 == [c.0, c.1, c.2]).count();
            // A line across the plot is hundreds of pixels; a legend entry alone about 60.
            let least = if k < 2 { 150 } else { 20 };
            assert!(n >= least, "series {k}: {n} pixels of its colour");
        }
        // The title is drawn (text needs the registered font), centred above the plot.
        let dark_in_title = (WIDTH / 2 - 150..WIDTH / 2 + 150)
            .flat_map(|x| (0..40).map(move |y| (x, y)))
            .any(|(x, y)| img.get_pixel(x, y).0.iter().all(|&c| c < 160));
        assert!(dark_in_title, "no title text");
    }

    #[test]
    fn linear_chart_without_usable_points_is_still_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("empty.png");
        let series = [Series {
            name: "train".into(),
            points: vec![f64::NAN, f64::INFINITY],
        }];
        let chart = Chart {
            title: "Nothing yet",
            x_label: "epoch",
            y_label: "loss",
            log_y: false,
        };
        plot_lines(&path, &chart, &series).expect("plot");
        let img = image::open(&path).expect("decode");
        assert_eq!((img.width(), img.height()), (WIDTH, HEIGHT));
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick(&0.0), "0");
        assert_eq!(tick(&-5.551115123125783e-17), "0");
        assert_eq!(tick(&0.30000000000000004), "0.3");
        assert_eq!(tick(&2.5), "2.5");
        assert_eq!(tick(&150.0), "150");
        assert_eq!(tick(&1e-4), "1e-4");
        assert_eq!(tick(&1.2e-4), "1.2e-4");
    }
}
