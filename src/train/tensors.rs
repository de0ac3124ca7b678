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
