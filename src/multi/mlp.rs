//! A small fully connected regression network with ReLU hidden layers, trained by minibatch
//! Adam on the squared error. Kept outside burn on purpose: predictors fit hundreds of these
//! per experiment on a few hundred 30-dimensional points, where tensor-library overhead would
//! dominate the arithmetic.

use rand::Rng;
use rand::seq::SliceRandom;

/// One dense layer, weights row-major `outputs x inputs`.
#[derive(Clone, Debug)]
struct Layer {
    inputs: usize,
    outputs: usize,
    w: Vec<f32>,
    b: Vec<f32>,
}

/// Adam moments of one layer.
#[derive(Clone, Debug)]
struct Moments {
    mw: Vec<f32>,
    vw: Vec<f32>,
    mb: Vec<f32>,
    vb: Vec<f32>,
}

/// A multilayer perceptron with one output.
#[derive(Clone, Debug)]
pub struct Mlp {
    layers: Vec<Layer>,
}

/// How to fit an [`Mlp`].
#[derive(Clone, Copy, Debug)]
pub struct Fit {
    /// Gradient steps.
    pub steps: usize,
    /// Points per minibatch (all of them when there are fewer).
    pub batch: usize,
    /// Adam step size.
    pub lr: f32,
    /// L2 penalty on the weights.
    pub weight_decay: f32,
}

impl Mlp {
    /// A network `inputs -> hidden[0] -> ... -> 1` with He-uniform initial weights and zero
    /// biases.
    pub fn new(inputs: usize, hidden: &[usize], rng: &mut impl Rng) -> Self {
        let mut sizes = vec![inputs];
        sizes.extend_from_slice(hidden);
        sizes.push(1);
        let layers = sizes
            .windows(2)
            .map(|pair| {
                let (i, o) = (pair[0], pair[1]);
                let bound = (6.0 / i as f32).sqrt();
                Layer {
                    inputs: i,
                    outputs: o,
                    w: (0..i * o)
                        .map(|_| rng.random_range(-bound..bound))
                        .collect(),
                    b: vec![0.0; o],
                }
            })
            .collect();
        Mlp { layers }
    }

    /// The prediction for `x`.
    pub fn predict(&self, x: &[f32]) -> f32 {
        let mut a = x.to_vec();
        for (l, layer) in self.layers.iter().enumerate() {
            let last = l + 1 == self.layers.len();
            a = forward_layer(layer, &a, !last);
        }
        a[0]
    }

    /// Fits the network to `(xs, ys)` from its current weights.
    pub fn fit(&mut self, xs: &[Vec<f32>], ys: &[f32], fit: Fit, rng: &mut impl Rng) {
        let n = xs.len();
        if n == 0 {
            return;
        }
        let mut moments: Vec<Moments> = self
            .layers
            .iter()
            .map(|l| Moments {
                mw: vec![0.0; l.w.len()],
                vw: vec![0.0; l.w.len()],
                mb: vec![0.0; l.b.len()],
                vb: vec![0.0; l.b.len()],
            })
            .collect();
        let mut grads: Vec<(Vec<f32>, Vec<f32>)> = self
            .layers
            .iter()
            .map(|l| (vec![0.0; l.w.len()], vec![0.0; l.b.len()]))
            .collect();
        let mut order: Vec<usize> = (0..n).collect();
        let mut cursor = n;
        let batch = fit.batch.clamp(1, n);
        let (beta1, beta2) = (0.9f32, 0.999f32);
        for step in 1..=fit.steps {
            for (gw, gb) in &mut grads {
                gw.fill(0.0);
                gb.fill(0.0);
            }
            for _ in 0..batch {
                if cursor == n {
                    order.shuffle(rng);
                    cursor = 0;
                }
                let i = order[cursor];
                cursor += 1;
                self.accumulate(&xs[i], ys[i], &mut grads, 1.0 / batch as f32);
            }
            let c1 = 1.0 - beta1.powi(step as i32);
            let c2 = 1.0 - beta2.powi(step as i32);
            for ((layer, m), (gw, gb)) in self.layers.iter_mut().zip(&mut moments).zip(&grads) {
                adam(&mut layer.w, gw, &mut m.mw, &mut m.vw, fit, c1, c2, true);
                adam(&mut layer.b, gb, &mut m.mb, &mut m.vb, fit, c1, c2, false);
            }
        }
    }

    /// Adds `scale` times the gradient of `(prediction - y)^2 / 2` at `x` to `grads`.
    fn accumulate(&self, x: &[f32], y: f32, grads: &mut [(Vec<f32>, Vec<f32>)], scale: f32) {
        let mut acts: Vec<Vec<f32>> = vec![x.to_vec()];
        for (l, layer) in self.layers.iter().enumerate() {
            let last = l + 1 == self.layers.len();
            let next = forward_layer(layer, acts.last().expect("input"), !last);
            acts.push(next);
        }
        let mut delta = vec![(acts.last().expect("output")[0] - y) * scale];
        for l in (0..self.layers.len()).rev() {
            let layer = &self.layers[l];
            let input = &acts[l];
            let (gw, gb) = &mut grads[l];
            for o in 0..layer.outputs {
                let d = delta[o];
                if d == 0.0 {
                    continue;
                }
                gb[o] += d;
                let row = &mut gw[o * layer.inputs..(o + 1) * layer.inputs];
                for (g, &a) in row.iter_mut().zip(input) {
                    *g += d * a;
                }
            }
            if l == 0 {
                break;
            }
            let mut back = vec![0.0; layer.inputs];
            for (row, &d) in layer.w.chunks_exact(layer.inputs).zip(&delta) {
                if d == 0.0 {
                    continue;
                }
                for (b, &w) in back.iter_mut().zip(row) {
                    *b += d * w;
                }
            }
            // The input of layer l is the ReLU output of layer l - 1: pass the gradient only
            // where that output is positive.
            for (b, &a) in back.iter_mut().zip(input) {
                if a <= 0.0 {
                    *b = 0.0;
                }
            }
            delta = back;
        }
    }
}

fn forward_layer(layer: &Layer, input: &[f32], relu: bool) -> Vec<f32> {
    (0..layer.outputs)
        .map(|o| {
            let row = &layer.w[o * layer.inputs..(o + 1) * layer.inputs];
            let z = layer.b[o] + row.iter().zip(input).map(|(w, a)| w * a).sum::<f32>();
            if relu { z.max(0.0) } else { z }
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn adam(
    param: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    fit: Fit,
    c1: f32,
    c2: f32,
    decay: bool,
) {
    let wd = if decay { fit.weight_decay } else { 0.0 };
    for i in 0..param.len() {
        let g = grad[i] + wd * param[i];
        m[i] = 0.9 * m[i] + 0.1 * g;
        v[i] = 0.999 * v[i] + 0.001 * g * g;
        param[i] -= fit.lr * (m[i] / c1) / ((v[i] / c2).sqrt() + 1e-8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn gradient_matches_finite_differences() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let net = Mlp::new(4, &[5, 3], &mut rng);
        let x = [0.3, -0.7, 1.1, 0.4];
        let y = 0.25;
        let mut grads: Vec<(Vec<f32>, Vec<f32>)> = net
            .layers
            .iter()
            .map(|l| (vec![0.0; l.w.len()], vec![0.0; l.b.len()]))
            .collect();
        net.accumulate(&x, y, &mut grads, 1.0);
        let loss = |n: &Mlp| 0.5 * (n.predict(&x) - y).powi(2);
        for (l, (layer_grads, _)) in grads.iter().enumerate() {
            for (i, &backprop) in layer_grads.iter().enumerate() {
                let h = 1e-3;
                let mut plus = net.clone();
                plus.layers[l].w[i] += h;
                let mut minus = net.clone();
                minus.layers[l].w[i] -= h;
                let numeric = (loss(&plus) - loss(&minus)) / (2.0 * h);
                assert!(
                    (numeric - backprop).abs() < 2e-3,
                    "layer {l} weight {i}: numeric {numeric}, backprop {backprop}"
                );
            }
        }
    }

    #[test]
    fn fits_a_known_function() {
        // y = 2 x0 - x1 + x0 x1 on a grid: the fitted network must come within 0.05 RMS.
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        for i in 0..10 {
            for j in 0..10 {
                let (a, b) = (i as f32 / 9.0, j as f32 / 9.0);
                xs.push(vec![a, b]);
                ys.push(2.0 * a - b + a * b);
            }
        }
        let mut net = Mlp::new(2, &[32, 32], &mut rng);
        let fit = Fit {
            steps: 3000,
            batch: 32,
            lr: 0.01,
            weight_decay: 0.0,
        };
        net.fit(&xs, &ys, fit, &mut rng);
        let mse: f32 = xs
            .iter()
            .zip(&ys)
            .map(|(x, y)| (net.predict(x) - y).powi(2))
            .sum::<f32>()
            / xs.len() as f32;
        assert!(mse.sqrt() < 0.05, "rms error {}", mse.sqrt());
    }
}
