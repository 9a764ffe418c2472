//! The stimulus world: procedural RGB images of one to three coloured shapes on a background,
//! each with its attributes and an English caption, all drawn from a seed.
//!
//! It knows nothing of brains: `neural.rs` turns these images and attributes into responses.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

pub const SHAPES: [&str; 8] = [
    "circle", "square", "triangle", "star", "cross", "ring", "crescent", "arrow",
];
pub const COLOURS: [(&str, [f32; 3]); 8] = [
    ("red", [0.85, 0.12, 0.10]),
    ("orange", [0.95, 0.55, 0.08]),
    ("yellow", [0.95, 0.88, 0.15]),
    ("green", [0.15, 0.68, 0.22]),
    ("blue", [0.12, 0.30, 0.85]),
    ("purple", [0.55, 0.20, 0.70]),
    ("white", [0.95, 0.95, 0.95]),
    ("black", [0.06, 0.06, 0.06]),
];
pub const BACKGROUNDS: [&str; 3] = ["plain", "gradient", "striped"];
pub const SIZES: [(&str, f32); 3] = [("small", 0.11), ("medium", 0.17), ("large", 0.25)];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Object {
    /// Index into `SHAPES`.
    pub shape: usize,
    /// Index into `COLOURS`.
    pub colour: usize,
    /// Centre in image coordinates, 0..1 (x to the right, y down).
    pub x: f32,
    pub y: f32,
    /// Index into `SIZES`.
    pub size: usize,
    /// Radians.
    pub rotation: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Background {
    /// Index into `BACKGROUNDS`.
    pub kind: usize,
    /// Index into `COLOURS`.
    pub colour: usize,
    /// Gradient direction or stripe orientation, radians.
    pub angle: f32,
    /// Stripes per image width.
    pub frequency: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stimulus {
    pub id: String,
    pub objects: Vec<Object>,
    pub background: Background,
    pub caption: String,
}

/// The nine position words of a 3 x 3 grid.
pub fn position_words(x: f32, y: f32) -> &'static str {
    let col = ((x * 3.0) as usize).min(2);
    let row = ((y * 3.0) as usize).min(2);
    [
        ["at the top left", "at the top", "at the top right"],
        ["on the left", "in the centre", "on the right"],
        ["at the bottom left", "at the bottom", "at the bottom right"],
    ][row][col]
}

pub fn caption(objects: &[Object], background: &Background) -> String {
    let phrases: Vec<String> = objects
        .iter()
        .map(|o| {
            format!(
                "a {} {} {} {}",
                SIZES[o.size].0,
                COLOURS[o.colour].0,
                SHAPES[o.shape],
                position_words(o.x, o.y)
            )
        })
        .collect();
    let joined = match phrases.len() {
        0 => "nothing".to_string(),
        1 => phrases[0].clone(),
        n => format!("{} and {}", phrases[..n - 1].join(", "), phrases[n - 1]),
    };
    let bg = BACKGROUNDS[background.kind];
    format!(
        "{joined} on a {bg} {} background",
        COLOURS[background.colour].0
    )
}

/// Draws one stimulus from `rng`: 1-3 objects, no two centred closer than their sizes allow
/// (so each stays visible), an object colour never equal to the background's.
pub fn random_stimulus(rng: &mut ChaCha8Rng, id: String) -> Stimulus {
    let background = Background {
        kind: rng.random_range(0..BACKGROUNDS.len()),
        colour: rng.random_range(0..COLOURS.len()),
        angle: rng.random_range(0.0..std::f32::consts::PI),
        frequency: rng.random_range(3.0..7.0),
    };
    let n = rng.random_range(1..=3);
    let mut objects: Vec<Object> = Vec::new();
    let mut tries = 0;
    while objects.len() < n && tries < 200 {
        tries += 1;
        let size = rng.random_range(0..SIZES.len());
        let r = SIZES[size].1;
        let o = Object {
            shape: rng.random_range(0..SHAPES.len()),
            colour: loop {
                let c = rng.random_range(0..COLOURS.len());
                if c != background.colour {
                    break c;
                }
            },
            x: rng.random_range(r..1.0 - r),
            y: rng.random_range(r..1.0 - r),
            size,
            rotation: rng.random_range(0.0..std::f32::consts::TAU),
        };
        let clear = objects.iter().all(|p| {
            let d = ((p.x - o.x).powi(2) + (p.y - o.y).powi(2)).sqrt();
            d > 0.8 * (r + SIZES[p.size].1)
        });
        if clear {
            objects.push(o);
        }
    }
    let caption = caption(&objects, &background);
    Stimulus {
        id,
        objects,
        background,
        caption,
    }
}

/// `n` stimuli from `seed`, ids `{prefix}{0001..}`.
pub fn stimulus_set(seed: u64, n: usize, prefix: &str) -> Vec<Stimulus> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| random_stimulus(&mut rng, format!("{prefix}{:05}", i + 1)))
        .collect()
}

/// Whether the point (u, v), in the object's own frame scaled so its radius is 1, is inside.
fn inside(shape: usize, u: f32, v: f32) -> bool {
    let r = (u * u + v * v).sqrt();
    match SHAPES[shape] {
        "circle" => r <= 1.0,
        "square" => u.abs().max(v.abs()) <= 0.78,
        // Equilateral, pointing up (-v), circumradius 1: vertices (0, -1), (±√3/2, 0.5).
        "triangle" => v <= 0.5 && u.abs() <= (v + 1.0) / 3f32.sqrt(),
        "star" => {
            let angle = v.atan2(u);
            let k = (angle * 5.0 / std::f32::consts::TAU).rem_euclid(1.0);
            let edge = 0.45 + 0.55 * (1.0 - 2.0 * (k - 0.5).abs()).powf(1.5);
            r <= edge
        }
        "cross" => (u.abs() <= 0.3 && v.abs() <= 0.95) || (v.abs() <= 0.3 && u.abs() <= 0.95),
        "ring" => (0.6..=1.0).contains(&r),
        "crescent" => r <= 1.0 && ((u - 0.45).powi(2) + v * v).sqrt() > 0.8,
        "arrow" => {
            ((-0.95..=0.2).contains(&u) && v.abs() <= 0.22)
                || (u > 0.2 && u <= 0.95 && v.abs() <= 0.75 * (0.95 - u))
        }
        _ => false,
    }
}

fn background_colour(b: &Background, x: f32, y: f32) -> [f32; 3] {
    let base = COLOURS[b.colour].1;
    let (c, s) = (b.angle.cos(), b.angle.sin());
    let t = (x - 0.5) * c + (y - 0.5) * s; // -0.7..0.7
    let factor = match BACKGROUNDS[b.kind] {
        "plain" => 1.0,
        "gradient" => 0.55 + 0.45 * (t + 0.7) / 1.4,
        _ => {
            if (t * b.frequency * std::f32::consts::TAU).sin() >= 0.0 {
                1.0
            } else {
                0.45
            }
        }
    };
    base.map(|v| (v * factor).clamp(0.0, 1.0))
}

/// Renders a stimulus as `size x size` RGB, values 0..1, row-major (y down), 2 x 2
/// supersampled so edges are anti-aliased.
pub fn render(stimulus: &Stimulus, size: usize) -> Vec<[f32; 3]> {
    let mut out = vec![[0.0f32; 3]; size * size];
    let offsets = [0.25f32, 0.75];
    for py in 0..size {
        for px in 0..size {
            let mut acc = [0.0f32; 3];
            for oy in offsets {
                for ox in offsets {
                    let x = (px as f32 + ox) / size as f32;
                    let y = (py as f32 + oy) / size as f32;
                    let mut colour = background_colour(&stimulus.background, x, y);
                    // Later objects are drawn on top.
                    for o in &stimulus.objects {
                        let radius = SIZES[o.size].1;
                        let (dx, dy) = ((x - o.x) / radius, (y - o.y) / radius);
                        let (c, s) = (o.rotation.cos(), o.rotation.sin());
                        let (u, v) = (c * dx + s * dy, -s * dx + c * dy);
                        if inside(o.shape, u, v) {
                            colour = COLOURS[o.colour].1;
                        }
                    }
                    for k in 0..3 {
                        acc[k] += colour[k] / 4.0;
                    }
                }
            }
            out[py * size + px] = acc;
        }
    }
    out
}

/// 8-bit RGB bytes of a rendered image (for PNG files).
pub fn to_rgb8(pixels: &[[f32; 3]]) -> Vec<u8> {
    pixels
        .iter()
        .flat_map(|p| p.map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8))
        .collect()
}
