//! Per-epoch checkpoints, so that an interrupted search or training run resumes where it
//! stopped and ends exactly as an uninterrupted run with the same seed would.
//!
//! A checkpoint is a directory holding the model (`model.bpk`), each optimiser's state
//! (`NAME.optim.bpk`) and the loop state as JSON (`state.json`: next epoch, records so far,
//! data-loader positions and generators, the settings it was made with). It is written to a
//! temporary directory first and then renamed into place, so a crash at any moment leaves
//! either the previous checkpoint or the new one, never a mixture.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{NasError, Result};

/// The checkpoint directory of a run.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    dir: PathBuf,
}

impl Checkpoint {
    /// The checkpoint kept in `run_dir/checkpoint`.
    pub fn in_run(run_dir: &Path) -> Self {
        Self {
            dir: run_dir.join("checkpoint"),
        }
    }

    /// Where the checkpoint lives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn staging(&self) -> PathBuf {
        self.dir.with_extension("tmp")
    }

    fn previous(&self) -> PathBuf {
        self.dir.with_extension("old")
    }

    /// Whether a complete checkpoint exists (including one left as `.old` by a crash between
    /// the two renames of [`save`](Self::save)).
    pub fn exists(&self) -> bool {
        self.dir.join("state.json").is_file() || self.previous().join("state.json").is_file()
    }

    /// Writes `model`, the optimisers and `state`, replacing the previous checkpoint.
    pub fn save<M: Module, S: Serialize>(
        &self,
        model: &M,
        optimizers: &[(&str, &ModuleOptimizer)],
        state: &S,
    ) -> Result<()> {
        let staging = self.staging();
        if staging.exists() {
            fs::remove_dir_all(&staging).map_err(|e| NasError::io(&staging, e))?;
        }
        fs::create_dir_all(&staging).map_err(|e| NasError::io(&staging, e))?;

        let model_path = staging.join("model.bpk");
        // burn keeps the last update of a running statistic (batch norm) pending until the
        // next update or a sync, and a record reads the committed value: `valid()` commits
        // it first, so the file holds the statistics the model would use.
        model
            .valid()
            .save_file(&model_path)
            .map_err(|e| NasError::format(&model_path, format!("cannot save model: {e:?}")))?;
        for (name, optimizer) in optimizers {
            let path = staging.join(format!("{name}.optim.bpk"));
            optimizer
                .save(&path)
                .map_err(|e| NasError::format(&path, format!("cannot save optimiser: {e:?}")))?;
        }
        let state_path = staging.join("state.json");
        let text = serde_json::to_string(state)
            .map_err(|e| NasError::format(&state_path, format!("cannot serialize: {e}")))?;
        fs::write(&state_path, text).map_err(|e| NasError::io(&state_path, e))?;

        let previous = self.previous();
        if previous.exists() {
            fs::remove_dir_all(&previous).map_err(|e| NasError::io(&previous, e))?;
        }
        if self.dir.exists() {
            fs::rename(&self.dir, &previous).map_err(|e| NasError::io(&self.dir, e))?;
        }
        fs::rename(&staging, &self.dir).map_err(|e| NasError::io(&staging, e))?;
        if previous.exists() {
            fs::remove_dir_all(&previous).map_err(|e| NasError::io(&previous, e))?;
        }
        Ok(())
    }

    fn readable_dir(&self) -> Result<PathBuf> {
        if self.dir.join("state.json").is_file() {
            Ok(self.dir.clone())
        } else if self.previous().join("state.json").is_file() {
            Ok(self.previous())
        } else {
            Err(NasError::config(
                "resume",
                format!(
                    "no checkpoint in {} (expected state.json there)",
                    self.dir.display()
                ),
            ))
        }
    }

    /// Whether the checkpoint belongs to a run that finished: its state says the next epoch is
    /// past the configured number (`config.epochs`) or that the run stopped early.
    pub fn is_finished(&self) -> Result<bool> {
        let state: serde_json::Value = self.load_state()?;
        let next = state["next_epoch"].as_u64().unwrap_or(0);
        let epochs = state["config"]["epochs"].as_u64().unwrap_or(u64::MAX);
        let stopped = !state["stopped_early"].is_null();
        Ok(next >= epochs || stopped)
    }

    /// Deletes the checkpoint (before a fresh run reuses the directory).
    pub fn remove(&self) -> Result<()> {
        for dir in [self.dir.clone(), self.previous(), self.staging()] {
            if dir.exists() {
                fs::remove_dir_all(&dir).map_err(|e| NasError::io(&dir, e))?;
            }
        }
        Ok(())
    }

    /// Prepares the checkpoint of a run about to start in its directory. Resuming needs an
    /// existing checkpoint (checked when it is loaded). A fresh start over an existing run is
    /// refused unless `overwrite` is set, so that no result is lost to a forgotten flag.
    pub fn prepare(&self, resume: bool, overwrite: bool) -> Result<()> {
        if resume || !self.exists() {
            return Ok(());
        }
        if overwrite {
            tracing::warn!(dir = %self.dir.display(), "replacing the run in this output directory");
            return self.remove();
        }
        let run = self.dir.parent().unwrap_or(&self.dir).display();
        let message = if self.is_finished()? {
            format!(
                "{run} holds a finished run: pass --overwrite to replace it, or choose another \
                 --output"
            )
        } else {
            format!(
                "{run} holds an unfinished run: pass --resume to continue it, --overwrite to \
                 replace it, or choose another --output"
            )
        };
        Err(NasError::config("output", message))
    }

    /// Reads the loop state.
    pub fn load_state<S: DeserializeOwned>(&self) -> Result<S> {
        let path = self.readable_dir()?.join("state.json");
        let text = fs::read_to_string(&path).map_err(|e| NasError::io(&path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| NasError::format(&path, format!("not a checkpoint state: {e}")))
    }

    /// Loads the saved weights into `model`, which must have the same structure.
    pub fn load_model<M: Module>(&self, model: M) -> Result<M> {
        let path = self.readable_dir()?.join("model.bpk");
        let model = model
            .try_load_file(&path)
            .map_err(|e| NasError::format(&path, format!("cannot load model: {e:?}")))?;
        // The next checkpoint replaces this directory.
        crate::nn::read_into_memory(&model);
        Ok(model)
    }

    /// Loads the saved state of optimiser `name` into `optimizer`.
    pub fn load_optimizer(
        &self,
        name: &str,
        optimizer: ModuleOptimizer,
    ) -> Result<ModuleOptimizer> {
        let path = self.readable_dir()?.join(format!("{name}.optim.bpk"));
        optimizer
            .load(&path)
            .map_err(|e| NasError::format(&path, format!("cannot load optimiser: {e:?}")))
    }
}

/// Fails unless the settings stored in a checkpoint equal the current ones, naming the first
/// setting that differs.
pub fn ensure_same_settings<T: Serialize>(saved: &T, current: &T) -> Result<()> {
    let saved = serde_json::to_value(saved).unwrap_or_default();
    let current = serde_json::to_value(current).unwrap_or_default();
    if saved == current {
        return Ok(());
    }
    let field = match (&saved, &current) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => a
            .iter()
            .find(|(k, v)| b.get(*k) != Some(*v))
            .map(|(k, v)| {
                format!(
                    "{k} (checkpoint {v}, now {})",
                    b.get(k).cloned().unwrap_or_default()
                )
            })
            .unwrap_or_else(|| "settings".to_string()),
        _ => "settings".to_string(),
    };
    Err(NasError::config(
        "resume",
        format!("the run was started with other settings: {field}; resume with the same command"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_state(name: &str, state: &str) -> Checkpoint {
        let run = std::env::temp_dir().join(format!("nasrs-ckpt-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&run);
        let checkpoint = Checkpoint::in_run(&run);
        fs::create_dir_all(checkpoint.dir()).unwrap();
        fs::write(checkpoint.dir().join("state.json"), state).unwrap();
        checkpoint
    }

    #[test]
    fn a_fresh_start_needs_overwrite_over_an_existing_run() {
        let unfinished = with_state(
            "unfinished",
            r#"{"next_epoch": 1, "config": {"epochs": 3}}"#,
        );
        let message = unfinished.prepare(false, false).unwrap_err().to_string();
        assert!(
            message.contains("unfinished") && message.contains("--resume"),
            "{message}"
        );
        assert!(unfinished.prepare(true, false).is_ok());
        assert!(unfinished.exists());

        let finished = with_state("finished", r#"{"next_epoch": 3, "config": {"epochs": 3}}"#);
        let message = finished.prepare(false, false).unwrap_err().to_string();
        assert!(
            message.contains("finished run") && message.contains("--overwrite"),
            "{message}"
        );
        assert!(finished.exists());
        finished.prepare(false, true).unwrap();
        assert!(!finished.exists());

        let stopped = with_state(
            "stopped",
            r#"{"next_epoch": 1, "config": {"epochs": 3}, "stopped_early": "skips"}"#,
        );
        assert!(stopped.is_finished().unwrap());
        for c in [unfinished, finished, stopped] {
            let _ = fs::remove_dir_all(c.dir().parent().unwrap());
        }
    }

    #[test]
    fn a_crash_between_the_renames_leaves_a_readable_checkpoint() {
        let c = with_state("renamed", r#"{"next_epoch": 2, "config": {"epochs": 3}}"#);
        // The state of a crash after `checkpoint` became `checkpoint.old` and before the new
        // one was renamed into place.
        fs::rename(c.dir(), c.previous()).unwrap();
        assert!(c.exists());
        let state: serde_json::Value = c.load_state().unwrap();
        assert_eq!(state["next_epoch"], 2);
        let _ = fs::remove_dir_all(c.dir().parent().unwrap());
    }
}
