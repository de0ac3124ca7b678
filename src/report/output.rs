//! The output directory of a run.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{NasError, Result};

/// A directory that a run writes its files into.
#[derive(Clone, Debug)]
pub struct OutputDir {
    root: PathBuf,
}

impl OutputDir {
    /// Creates `root` (and its parents) if needed.
    pub fn create(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        if root.exists() && !root.is_dir() {
            return Err(NasError::config(
                "output",
                format!("{} exists and is not a directory", root.display()),
            ));
        }
        fs::create_dir_all(&root).map_err(|e| NasError::io(&root, e))?;
        Ok(Self { root })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of `name` inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Writes `text` to `name`, replacing it atomically (write to a temporary file, then rename),
    /// so an interrupted run never leaves a half-written file.
    pub fn write_text(&self, name: &str, text: &str) -> Result<PathBuf> {
        let path = self.path(name);
        let tmp = self.path(&format!(".{name}.tmp"));
        fs::write(&tmp, text).map_err(|e| NasError::io(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| NasError::io(&path, e))?;
        Ok(path)
    }

    /// Writes `value` as pretty JSON to `name`.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<PathBuf> {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| NasError::format(self.path(name), format!("cannot serialize: {e}")))?;
        self.write_text(name, &(text + "\n"))
    }

    /// Removes `name` if it exists, so that a fresh run does not append to an old log.
    pub fn remove(&self, name: &str) -> Result<()> {
        let path = self.path(name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(NasError::io(path, e)),
        }
    }

    /// Appends `value` as one JSON line to `name` and flushes it to disk.
    pub fn append_jsonl<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let path = self.path(name);
        let line = serde_json::to_string(value)
            .map_err(|e| NasError::format(&path, format!("cannot serialize: {e}")))?;
        let mut file: File = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| NasError::io(&path, e))?;
        writeln!(file, "{line}").map_err(|e| NasError::io(&path, e))?;
        file.sync_data().map_err(|e| NasError::io(&path, e))
    }
}
