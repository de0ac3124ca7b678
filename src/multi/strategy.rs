//! The interface of multi-trial strategies.

use super::history::History;
use super::space::{Arch, Space};
use crate::Result;

/// Proposes architectures one at a time from what has been evaluated so far.
///
/// A strategy owns its random generator and any state beyond the history; [`Strategy::save`]
/// and [`Strategy::restore`] carry that state through an experiment store, so that a resumed
/// experiment proposes exactly what an uninterrupted one would.
pub trait Strategy: Send {
    /// The strategy's command-line name.
    fn name(&self) -> &'static str;

    /// The next architecture to evaluate, never one `history` has seen (finished or pending);
    /// `None` when the strategy can propose nothing new (the space is exhausted).
    fn ask(&mut self, space: &dyn Space, history: &History) -> Result<Option<Arch>>;

    /// The strategy's state as JSON.
    fn save(&self) -> serde_json::Value;

    /// Replaces the state with one written by [`Strategy::save`].
    fn restore(&mut self, state: serde_json::Value) -> Result<()>;
}
