//! Trained networks kept for later use: the weights in burn's record format (`NAME.bpk`)
//! beside a JSON description of how they were trained (`NAME.json`), every error naming the
//! file at fault.

use std::path::Path;

use burn::module::Module;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{NasError, Result};

/// Writes `network` as `dir/NAME.bpk` and `info` as `dir/NAME.json`. Pass the evaluation copy
/// (`valid()`), which holds the running statistics with every pending update committed; `what`
/// names the network in messages.
///
/// # Errors
/// I/O errors naming the file.
pub fn save_with_info<M: Module, T: Serialize>(
    dir: &Path,
    name: &str,
    what: &str,
    network: M,
    info: &T,
) -> Result<()> {
    let weights = dir.join(format!("{name}.bpk"));
    network
        .save_file(&weights)
        .map_err(|e| NasError::format(&weights, format!("cannot save the {what}: {e:?}")))?;
    let meta = dir.join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(info)
        .map_err(|e| NasError::format(&meta, format!("cannot serialize: {e}")))?;
    std::fs::write(&meta, text).map_err(|e| NasError::io(&meta, e))
}

/// Reads the description `dir/NAME.json` written by [`save_with_info`].
///
/// # Errors
/// [`NasError::Io`] when the file cannot be read; [`NasError::Format`] naming it when it is not
/// a description of a `what`.
pub fn read_info<T: DeserializeOwned>(dir: &Path, name: &str, what: &str) -> Result<T> {
    let meta = dir.join(format!("{name}.json"));
    let text = std::fs::read_to_string(&meta).map_err(|e| NasError::io(&meta, e))?;
    serde_json::from_str(&text)
        .map_err(|e| NasError::format(&meta, format!("not a description of a saved {what}: {e}")))
}

/// `shell` (a network of the saved one's shapes) with the weights of the file `path`, read
/// fully into memory ([`crate::nn::read_into_memory`]).
///
/// # Errors
/// [`NasError::Format`] naming the file when it is missing or holds weights of other shapes.
pub fn load_weights<M: Module>(path: &Path, what: &str, shell: M) -> Result<M> {
    if !path.is_file() {
        return Err(NasError::format(
            path,
            format!("missing: the weights of the {what} are not there"),
        ));
    }
    let network = shell
        .try_load_file(path)
        .map_err(|e| NasError::format(path, format!("cannot load the {what}: {e:?}")))?;
    crate::nn::read_into_memory(&network);
    Ok(network)
}
