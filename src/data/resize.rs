//! Bilinear resizing of square image batches, for networks that run at more than one input
//! resolution (Once-for-All's elastic resolution).
//!
//! The convention is that of PyTorch's `F.interpolate(mode="bilinear", align_corners=False,
//! antialias=False)`: pixel centres sit at half-integer positions, so output pixel `o` of an
//! axis resized from `n` to `m` reads the input at `(o + 0.5) x n / m - 0.5`, clamped below at
//! 0, between its two neighbours (the upper one clamped to the last pixel).

use super::Batch;

/// For each output position of an axis resized from `from` to `to`: the lower input index,
/// the upper one and the weight of the upper one.
fn axis_weights(from: usize, to: usize) -> Vec<(usize, usize, f32)> {
    let scale = from as f64 / to as f64;
    (0..to)
        .map(|o| {
            let source = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
            let low = (source.floor() as usize).min(from - 1);
            let high = (low + 1).min(from - 1);
            (low, high, (source - low as f64) as f32)
        })
        .collect()
}

/// Resizes `planes` planes of `height x width` pixels, stored plane after plane in `images`
/// (`[n, channels, height, width]` with `planes = n x channels`), to `side x side`. Planes
/// already at that size come back unchanged.
///
/// # Panics
/// When `images` does not hold `planes x height x width` values, or a side is 0.
pub fn resize_bilinear(
    images: &[f32],
    planes: usize,
    height: usize,
    width: usize,
    side: usize,
) -> Vec<f32> {
    assert_eq!(
        images.len(),
        planes * height * width,
        "resize_bilinear: {} values do not make {planes} planes of {height}x{width}",
        images.len()
    );
    assert!(
        height > 0 && width > 0 && side > 0,
        "resize_bilinear: empty side"
    );
    if height == side && width == side {
        return images.to_vec();
    }
    let rows = axis_weights(height, side);
    let cols = axis_weights(width, side);
    let mut out = Vec::with_capacity(planes * side * side);
    for plane in images.chunks_exact(height * width) {
        for &(r0, r1, wr) in &rows {
            let (top, bottom) = (&plane[r0 * width..][..width], &plane[r1 * width..][..width]);
            for &(c0, c1, wc) in &cols {
                let upper = top[c0] + (top[c1] - top[c0]) * wc;
                let lower = bottom[c0] + (bottom[c1] - bottom[c0]) * wc;
                out.push(upper + (lower - upper) * wr);
            }
        }
    }
    out
}

impl Batch {
    /// The batch with every image resized to `side x side` ([`resize_bilinear`]); the batch
    /// itself when it already has that size.
    pub fn resized(self, side: usize) -> Batch {
        if self.height == side && self.width == side {
            return self;
        }
        Batch {
            images: resize_bilinear(
                &self.images,
                self.n * self.channels,
                self.height,
                self.width,
                side,
            ),
            labels: self.labels,
            n: self.n,
            channels: self.channels,
            height: side,
            width: side,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Halving averages each 2x2 block: output pixel `o` reads position `2o + 0.5`, halfway
    /// between input pixels `2o` and `2o + 1` along both axes.
    #[test]
    fn halving_averages_blocks() {
        let image: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let out = resize_bilinear(&image, 1, 4, 4, 2);
        // Block (0, 0) holds 0, 1, 4, 5; block (0, 1) 2, 3, 6, 7; and so on.
        assert_eq!(out, [2.5, 4.5, 10.5, 12.5]);
    }

    /// From 3 to 2 pixels the scale is 1.5: output 0 reads position 0.25 (0.75 of pixel 0,
    /// 0.25 of pixel 1), output 1 position 1.75 (0.25 of pixel 1, 0.75 of pixel 2). On the
    /// separable image `10 r + c` the result is `10 r' + c'` with r', c' in {0.25, 1.75}.
    #[test]
    fn three_to_two_by_hand() {
        let image: Vec<f32> = (0..3)
            .flat_map(|r| (0..3).map(move |c| (10 * r + c) as f32))
            .collect();
        let out = resize_bilinear(&image, 1, 3, 3, 2);
        let expected = [2.75, 4.25, 17.75, 19.25];
        for (a, b) in out.iter().zip(expected) {
            assert!((a - b).abs() < 1e-5, "{out:?} vs {expected:?}");
        }
    }

    /// Doubling 2 pixels to 4: positions -0.25 (clamped to 0), 0.25, 0.75 and 1.25 (the upper
    /// neighbour clamped to pixel 1), so the row (0, 4) becomes (0, 1, 3, 4).
    #[test]
    fn doubling_clamps_at_the_edges() {
        let image = [0.0, 4.0, 0.0, 4.0];
        let out = resize_bilinear(&image, 1, 2, 2, 4);
        assert_eq!(&out[..4], &[0.0, 1.0, 3.0, 4.0]);
        assert_eq!(&out[12..], &[0.0, 1.0, 3.0, 4.0]);
    }

    /// Planes are resized independently, the same size comes back unchanged, and a batch keeps
    /// its labels and gets its new side.
    #[test]
    fn planes_and_batches() {
        let two: Vec<f32> = (0..16)
            .map(|v| v as f32)
            .chain((0..16).map(|_| 7.0))
            .collect();
        let out = resize_bilinear(&two, 2, 4, 4, 2);
        assert_eq!(out, [2.5, 4.5, 10.5, 12.5, 7.0, 7.0, 7.0, 7.0]);
        assert_eq!(resize_bilinear(&two, 2, 4, 4, 4), two);

        let batch = Batch {
            images: two,
            labels: vec![3],
            n: 1,
            channels: 2,
            height: 4,
            width: 4,
        };
        let small = batch.resized(2);
        assert_eq!(
            (small.height, small.width, small.n, small.channels),
            (2, 2, 1, 2)
        );
        assert_eq!(small.labels, [3]);
        assert_eq!(small.images, out);
    }
}
