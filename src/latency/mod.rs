//! Latency on the user's machine: tables of measured per-operation latencies of the
//! inverted-residual space, the predictor that sums a table over an architecture, and the
//! check of that predictor against whole networks measured the same way.
//!
//! A table is valid for the device, processor, thread count and batch size it was measured
//! with; [`LatencyTable::mismatches`] names every difference from the current settings.

pub mod measure;
pub mod table;

pub use measure::{
    Protocol, Validated, measure_network, measure_table, on_timing_pool, random_arch,
    validate_table,
};
pub use table::{LatencyEntry, LatencySettings, LatencyTable, Timing, quantile};

/// Keeps freed memory in the process instead of handing large blocks back to the system.
///
/// glibc's allocator serves large blocks (the activations of a forward pass) with fresh pages
/// from the system and returns them when freed, until a freed block raises its threshold; every
/// fresh page costs a fault on first touch. So the same network ran about 25% slower in a
/// fresh process than in one that had been training for an hour, and a table measured in one
/// did not predict the other. Fixing both thresholds high at start makes every process behave
/// alike. Call it before any tensor work; it does nothing outside glibc.
pub fn steady_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; it is called once, at start,
        // before other threads exist.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
        }
    }
}
