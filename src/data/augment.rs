//! Data augmentation: zero-padded random crop, horizontal flip and cutout.
//!
//! Crop and flip act on the raw image, before normalisation, so padding pixels are raw zeros
//! (black), as in the usual CIFAR recipe. Cutout acts after normalisation and writes 0, which
//! is the dataset mean (DeVries & Taylor, 2017).

use rand::Rng;

/// Which augmentations a loader applies to each image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Augment {
    /// Zero padding on each side before a random crop back to the original size; 0 = off.
    pub crop_padding: usize,
    /// Mirror left-right with probability 0.5.
    pub horizontal_flip: bool,
    /// Side of the square set to 0 after normalisation; 0 = off.
    pub cutout: usize,
}

impl Augment {
    /// No augmentation (evaluation, and datasets where flips change the class, like digits).
    pub fn none() -> Self {
        Augment::default()
    }

    /// The standard CIFAR-10 recipe: pad 4, random crop, random flip, no cutout.
    pub fn cifar() -> Self {
        Augment {
            crop_padding: 4,
            horizontal_flip: true,
            cutout: 0,
        }
    }

    /// The random choices for one `height x width` image. Nothing is drawn for a disabled
    /// augmentation, so turning one off does not shift the random stream of the others.
    pub(crate) fn draw<R: Rng>(&self, height: usize, width: usize, rng: &mut R) -> Draw {
        let pad = self.crop_padding;
        let (dy, dx) = if pad > 0 {
            (rng.random_range(0..=2 * pad), rng.random_range(0..=2 * pad))
        } else {
            (pad, pad)
        };
        let flip = self.horizontal_flip && rng.random_bool(0.5);
        let cutout_center = (self.cutout > 0 && height > 0 && width > 0)
            .then(|| (rng.random_range(0..height), rng.random_range(0..width)));
        Draw {
            dy,
            dx,
            flip,
            cutout_center,
        }
    }

    /// Writes the augmented, normalised image into `out` (`[C, H, W]`, same size as `image`).
    ///
    /// `tables` holds one byte-to-value table per channel (see `Normalization`).
    pub(crate) fn render(
        &self,
        image: &[u8],
        shape: (usize, usize, usize),
        draw: &Draw,
        tables: &[[f32; 256]],
        out: &mut [f32],
    ) {
        let (channels, height, width) = shape;
        let plane = height * width;
        let pad = self.crop_padding as isize;
        for c in 0..channels {
            let table = &tables[c];
            let src = &image[c * plane..(c + 1) * plane];
            let dst = &mut out[c * plane..(c + 1) * plane];
            for (y, row) in dst.chunks_exact_mut(width).enumerate() {
                // Output (y, x) reads padded (y + dy, x + dx), i.e. source (y + dy - pad, ...).
                let sy = y as isize + draw.dy as isize - pad;
                if sy < 0 || sy >= height as isize {
                    row.fill(table[0]);
                    continue;
                }
                let src_row = &src[sy as usize * width..(sy as usize + 1) * width];
                for (x, value) in row.iter_mut().enumerate() {
                    let cx = if draw.flip { width - 1 - x } else { x };
                    let sx = cx as isize + draw.dx as isize - pad;
                    *value = if sx < 0 || sx >= width as isize {
                        table[0]
                    } else {
                        table[src_row[sx as usize] as usize]
                    };
                }
            }
        }
        if let Some((cy, cx)) = draw.cutout_center {
            let (y0, y1) = clipped_span(cy, self.cutout, height);
            let (x0, x1) = clipped_span(cx, self.cutout, width);
            for c in 0..channels {
                for y in y0..y1 {
                    let start = c * plane + y * width;
                    out[start + x0..start + x1].fill(0.0);
                }
            }
        }
    }
}

/// The random choices made for one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Draw {
    /// Crop offset into the padded image, `0..=2 * crop_padding`; `crop_padding` = centred.
    pub dy: usize,
    /// Horizontal crop offset, like `dy`.
    pub dx: usize,
    /// Mirror left-right after cropping.
    pub flip: bool,
    /// Centre of the cutout square, when cutout is on.
    pub cutout_center: Option<(usize, usize)>,
}

/// `[center - side/2, center - side/2 + side)` clipped to `[0, limit)`.
fn clipped_span(center: usize, side: usize, limit: usize) -> (usize, usize) {
    let start = center as isize - (side / 2) as isize;
    let end = start + side as isize;
    (
        start.clamp(0, limit as isize) as usize,
        end.clamp(0, limit as isize) as usize,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Identity tables: normalised value = raw byte, so outputs can be read as pixels.
    fn raw_tables(channels: usize) -> Vec<[f32; 256]> {
        let mut t = [0f32; 256];
        for (v, slot) in t.iter_mut().enumerate() {
            *slot = v as f32;
        }
        vec![t; channels]
    }

    /// 3x3 one-channel image with pixels 1..=9.
    const IMG: [u8; 9] = [1, 2, 3, 4, 5, 6, 7, 8, 9];

    fn render(aug: Augment, draw: Draw) -> Vec<f32> {
        let mut out = vec![-1.0; 9];
        aug.render(&IMG, (1, 3, 3), &draw, &raw_tables(1), &mut out);
        out
    }

    #[test]
    fn crop_offset_shifts_in_zero_padding() {
        let aug = Augment {
            crop_padding: 1,
            ..Augment::none()
        };
        // Offset (0, 0) in the padded 5x5 image: the picture moves one pixel down-right.
        let draw = Draw {
            dy: 0,
            dx: 0,
            flip: false,
            cutout_center: None,
        };
        assert_eq!(render(aug, draw), vec![0., 0., 0., 0., 1., 2., 0., 4., 5.]);
        // Offset (2, 1): one up, no horizontal shift.
        let draw = Draw {
            dy: 2,
            dx: 1,
            ..draw
        };
        assert_eq!(render(aug, draw), vec![4., 5., 6., 7., 8., 9., 0., 0., 0.]);
        // Centred crop is the identity.
        let draw = Draw {
            dy: 1,
            dx: 1,
            ..draw
        };
        assert_eq!(render(aug, draw), IMG.map(f32::from).to_vec());
    }

    #[test]
    fn flip_applies_after_crop() {
        let aug = Augment {
            crop_padding: 1,
            horizontal_flip: true,
            cutout: 0,
        };
        let draw = Draw {
            dy: 1,
            dx: 0,
            flip: true,
            cutout_center: None,
        };
        // Crop shifted right gives rows [0,1,2], [0,4,5], [0,7,8]; mirrored: [2,1,0], ...
        assert_eq!(render(aug, draw), vec![2., 1., 0., 5., 4., 0., 8., 7., 0.]);
    }

    #[test]
    fn cutout_zeroes_a_clipped_square_after_normalising() {
        let aug = Augment {
            cutout: 2,
            ..Augment::none()
        };
        let draw = Draw {
            dy: 0,
            dx: 0,
            flip: false,
            cutout_center: Some((0, 2)),
        };
        // Side 2 at (0, 2): rows -1..1 and columns 1..3, clipped to row 0, columns 1..3.
        let mut out = vec![-1.0; 9];
        // Tables that add 100 show that the zeros are written after normalisation.
        let mut t = [0f32; 256];
        for (v, slot) in t.iter_mut().enumerate() {
            *slot = v as f32 + 100.0;
        }
        aug.render(&IMG, (1, 3, 3), &draw, &[t], &mut out);
        assert_eq!(out, vec![101., 0., 0., 104., 105., 106., 107., 108., 109.]);
    }

    #[test]
    fn cutout_on_every_channel() {
        let aug = Augment {
            cutout: 1,
            ..Augment::none()
        };
        let draw = Draw {
            dy: 0,
            dx: 0,
            flip: false,
            cutout_center: Some((1, 1)),
        };
        let image: Vec<u8> = IMG.iter().chain(IMG.iter()).copied().collect();
        let mut out = vec![-1.0; 18];
        aug.render(&image, (2, 3, 3), &draw, &raw_tables(2), &mut out);
        assert_eq!(out[4], 0.0);
        assert_eq!(out[13], 0.0);
        assert_eq!(out.iter().filter(|&&v| v == 0.0).count(), 2);
    }

    #[test]
    fn draws_stay_in_range_and_cover_it() {
        let aug = Augment {
            crop_padding: 2,
            horizontal_flip: true,
            cutout: 3,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut offsets = [false; 5];
        let mut flips = [0usize; 2];
        for _ in 0..500 {
            let d = aug.draw(4, 6, &mut rng);
            assert!(d.dy <= 4 && d.dx <= 4);
            offsets[d.dy] = true;
            flips[usize::from(d.flip)] += 1;
            let (cy, cx) = d.cutout_center.expect("cutout is on");
            assert!(cy < 4 && cx < 6);
        }
        assert!(offsets.iter().all(|&seen| seen));
        // p = 0.5 over 500 draws: outside 200..300 has probability below 1e-5.
        assert!((200..300).contains(&flips[1]), "{flips:?}");
        let none = Augment::none().draw(4, 6, &mut rng);
        assert_eq!(
            (none.dy, none.dx, none.flip, none.cutout_center),
            (0, 0, false, None)
        );
    }
}
