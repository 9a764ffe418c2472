//! Turns a volume's orthogonal planes into images: grey levels scaled to the plane's own
//! range, with the outline of the ROI groups drawn over them (all visual areas in orange, the
//! high-level areas in cyan). Shown with superior/anterior up (rows are flipped).

use eframe::egui::{Color32, ColorImage};

use crate::preprocess::slices::Plane;

pub const DETAIL_COLOUR: Color32 = Color32::from_rgb(255, 150, 40);
pub const SEMANTIC_COLOUR: Color32 = Color32::from_rgb(60, 210, 255);

/// True where `inside(i)` holds and a 4-neighbour (or the border) does not.
fn edge(
    plane_w: usize,
    plane_h: usize,
    x: usize,
    y: usize,
    inside: &dyn Fn(usize) -> bool,
) -> bool {
    if !inside(x + plane_w * y) {
        return false;
    }
    let outside = |nx: isize, ny: isize| {
        nx < 0
            || ny < 0
            || nx as usize >= plane_w
            || ny as usize >= plane_h
            || !inside(nx as usize + plane_w * ny as usize)
    };
    let (x, y) = (x as isize, y as isize);
    outside(x - 1, y) || outside(x + 1, y) || outside(x, y - 1) || outside(x, y + 1)
}

/// The plane as an image, ROI outlines over it when `roi` matches its shape.
pub fn plane_image(plane: &Plane<f32>, roi: Option<&Plane<u8>>) -> ColorImage {
    let (w, h) = (plane.width, plane.height);
    let finite = plane.values.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let roi = roi.filter(|r| r.width == w && r.height == h);
    let mut pixels = Vec::with_capacity(w * h);
    for row in 0..h {
        let y = h - 1 - row;
        for x in 0..w {
            let v = plane.values[x + w * y];
            let g = if v.is_finite() {
                (((v - lo) / span) * 255.0).clamp(0.0, 255.0) as u8
            } else {
                0
            };
            let mut colour = Color32::from_gray(g);
            if let Some(r) = roi {
                let labels = &r.values;
                if edge(w, h, x, y, &|i| labels[i] == 2) {
                    colour = SEMANTIC_COLOUR;
                } else if edge(w, h, x, y, &|i| labels[i] >= 1) {
                    colour = DETAIL_COLOUR;
                }
            }
            pixels.push(colour);
        }
    }
    ColorImage::new([w, h], pixels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_levels_span_the_range_and_outlines_follow_the_labels() {
        // 4 x 3 plane, values 0..12; a 2 x 2 detail block with one semantic voxel.
        let plane = Plane {
            width: 4,
            height: 3,
            values: (0..12).map(|v| v as f32).collect(),
        };
        let mut labels = vec![0u8; 12];
        for i in [5, 6, 9, 10] {
            labels[i] = 1;
        }
        labels[10] = 2;
        let roi = Plane {
            width: 4,
            height: 3,
            values: labels,
        };
        let img = plane_image(&plane, Some(&roi));
        assert_eq!(img.size, [4, 3]);
        // Row 0 of the image is the plane's top row (y = 2): value 8 at x = 0.
        let at = |x: usize, row: usize| img.pixels[x + 4 * row];
        assert_eq!(at(0, 0), Color32::from_gray((8.0 / 11.0 * 255.0) as u8));
        assert_eq!(at(0, 2), Color32::from_gray(0));
        assert_eq!(at(3, 0), Color32::from_gray(255));
        // Voxel 10 = (2, 2): semantic outline; voxel 9 = (1, 2): detail outline.
        assert_eq!(at(2, 0), SEMANTIC_COLOUR);
        assert_eq!(at(1, 0), DETAIL_COLOUR);
        // A mismatched ROI plane is ignored.
        let small = Plane {
            width: 2,
            height: 2,
            values: vec![1u8; 4],
        };
        let plain = plane_image(&plane, Some(&small));
        assert_eq!(
            plain.pixels[1],
            Color32::from_gray((9.0 / 11.0 * 255.0) as u8)
        );
    }
}
