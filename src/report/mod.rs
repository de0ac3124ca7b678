//! What a run leaves behind: an output directory with machine-readable records and files a
//! person can open (Markdown summary, HTML report, SVG charts).

pub mod html;
pub mod output;
pub mod progress;
pub mod svg;

pub use output::OutputDir;
