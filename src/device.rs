//! Choosing the compute device and the CPU thread count.

use burn::prelude::*;

use crate::error::{NasError, Result};

/// The backends this build can use, in the order `auto` tries them.
pub fn available_backends() -> Vec<&'static str> {
    let mut names = Vec::new();
    if cfg!(feature = "cuda") {
        names.push("cuda");
    }
    if cfg!(feature = "wgpu") {
        names.push("wgpu");
    }
    if cfg!(feature = "flex") {
        names.push("flex");
    }
    names
}

/// The backend `name` stands for: `auto` resolves to the first available backend, `cpu` to
/// `flex`; other names are returned as given. Latency tables record this name.
pub fn resolved_name(name: &str) -> String {
    match name {
        "auto" => available_backends()
            .first()
            .map_or_else(|| "auto".to_string(), |b| (*b).to_string()),
        "cpu" => "flex".to_string(),
        other => other.to_string(),
    }
}

/// The device named `name` (`auto`, `flex`, `cuda`, `cuda:N`, `wgpu`), if this build has it.
pub fn select(name: &str) -> Result<Device> {
    let unavailable = |backend: &str| {
        NasError::config(
            "device",
            format!(
                "backend `{backend}` is not compiled in (available: {}); rebuild with \
                 `--features {backend}`",
                available_backends().join(", ")
            ),
        )
    };
    match name {
        "auto" => {
            let first = available_backends()
                .first()
                .copied()
                .ok_or_else(|| NasError::config("device", "no backend compiled in"))?;
            select(first)
        }
        "flex" | "cpu" => {
            #[cfg(feature = "flex")]
            return Ok(Device::flex());
            #[cfg(not(feature = "flex"))]
            return Err(unavailable("flex"));
        }
        "wgpu" => {
            #[cfg(feature = "wgpu")]
            return Ok(Device::wgpu(Default::default()));
            #[cfg(not(feature = "wgpu"))]
            return Err(unavailable("wgpu"));
        }
        _ if name == "cuda" || name.starts_with("cuda:") => {
            let index = match name.strip_prefix("cuda:") {
                Some(i) => i.parse::<usize>().map_err(|_| {
                    NasError::config(
                        "device",
                        format!("expected cuda:N with N a number, found {name}"),
                    )
                })?,
                None => 0,
            };
            #[cfg(feature = "cuda")]
            return Ok(Device::cuda(index));
            #[cfg(not(feature = "cuda"))]
            {
                let _ = index;
                Err(unavailable("cuda"))
            }
        }
        other => Err(NasError::config(
            "device",
            format!("unknown device `{other}` (expected auto, flex, cuda, cuda:N or wgpu)"),
        )),
    }
}

/// Fixes the number of CPU threads the flex backend uses. Call once, before any tensor work.
pub fn set_threads(threads: usize) -> Result<()> {
    if threads == 0 {
        return Err(NasError::config("threads", "must be at least 1"));
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|e| NasError::config("threads", format!("cannot size the thread pool: {e}")))
}
