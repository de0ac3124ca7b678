//! Moving host batches onto a device.

use burn::prelude::*;
use burn::tensor::TensorData;

use crate::data::Batch;

/// Images `[n, c, h, w]` and labels `[n]` of `batch` on `device`.
pub fn batch_tensors(batch: &Batch, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let shape = [batch.n, batch.channels, batch.height, batch.width];
    let images = Tensor::from_data(TensorData::new(batch.images.clone(), shape), device);
    let labels = Tensor::from_data(TensorData::new(batch.labels.clone(), [batch.n]), device);
    (images, labels)
}

/// Images `[n, c, h, w]` resized to `[n, c, side, side]` on their device
/// ([`crate::data::resize_bilinear`], through host memory); `images` itself when already of
/// that size. Carries no gradient: it is for inputs.
pub fn resize_images(images: Tensor<4>, side: usize) -> Tensor<4> {
    let [n, c, h, w] = images.dims();
    if h == side && w == side {
        return images;
    }
    let device = images.device();
    let values = images
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("converted to f32 just above");
    let resized = crate::data::resize_bilinear(&values, n * c, h, w, side);
    Tensor::from_data(TensorData::new(resized, [n, c, side, side]), &device)
}
