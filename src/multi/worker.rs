//! Who evaluates a trial of an experiment store, and whether that worker is still alive.
//!
//! A worker is one loop claiming and evaluating trials: a thread of some process on this
//! machine. Its id, written next to every trial it claims, is `PID:START:N`: the process id, the
//! process start time (clock ticks since boot, from `/proc/PID/stat`; `-` where that is not
//! available) and a counter that tells the threads of one process apart.
//!
//! A trial left `running` by a worker that is gone (a crash, `kill -9`, a panic) must go back to
//! `pending`, and one whose worker is evaluating it must not. A process id alone is not enough
//! to tell: ids are reused, so the start time must match as well; and inside the process that
//! asks, a worker is alive exactly while its [`Worker`] value exists.
//!
//! Process ids mean nothing on another machine: every worker of a store must run on one
//! machine (SQLite's write-ahead log needs that anyway).

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The workers of this process whose loops are running.
static LIVE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Tells apart the workers one process starts.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// A worker of this process; it counts as alive until dropped, which also happens when its
/// thread unwinds from a panic.
#[derive(Debug)]
pub(crate) struct Worker {
    id: String,
}

impl Worker {
    /// A new worker with a fresh id, registered as alive.
    pub(crate) fn start() -> Self {
        let pid = std::process::id();
        let start = process_start(pid).map_or_else(|| "-".to_string(), |t| t.to_string());
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = format!("{pid}:{start}:{n}");
        live().insert(id.clone());
        Worker { id }
    }

    /// The id written into the store.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        live().remove(&self.id);
    }
}

fn live() -> std::sync::MutexGuard<'static, BTreeSet<String>> {
    // The set stays consistent even if a thread panicked while holding the lock: every
    // operation on it is a single insert or remove.
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether the worker with id `id` may still be evaluating its trial. An id that does not have
/// the form this module writes counts as dead, so that its trial is evaluated again rather than
/// never.
pub(crate) fn alive(id: &str) -> bool {
    let mut parts = id.split(':');
    let (Some(pid), Some(start), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    let start: Option<u64> = match start {
        "-" => None,
        text => match text.parse() {
            Ok(ticks) => Some(ticks),
            Err(_) => return false,
        },
    };

    if pid == std::process::id() && start == process_start(pid) {
        return live().contains(id);
    }
    if !process_exists(pid) {
        return false;
    }
    match (start, process_start(pid)) {
        // The id was reused by a process that started at another time.
        (Some(recorded), Some(now)) => recorded == now,
        // Without start times the process id is all there is to go by.
        _ => true,
    }
}

/// Whether a process with id `pid` exists and has not exited (a zombie has exited).
fn process_exists(pid: u32) -> bool {
    // 0 and ids beyond the positive range of pid_t address process groups or every process;
    // they are never the id of one worker.
    let Ok(pid_t) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid_t <= 0 {
        return false;
    }
    // SAFETY: signal 0 performs only the existence and permission checks; nothing is sent.
    let found = unsafe { libc::kill(pid_t, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    found && proc_stat(pid).is_none_or(|fields| fields.first().map(String::as_str) != Some("Z"))
}

/// The start time of process `pid` in clock ticks since boot, where `/proc` tells it.
fn process_start(pid: u32) -> Option<u64> {
    // After the state (field 3 of `proc_pid_stat(5)`), the start time is field 22.
    proc_stat(pid)?.get(22 - 3)?.parse().ok()
}

/// The fields of `/proc/PID/stat` after the command name, starting with the state.
fn proc_stat(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain spaces and parentheses.
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_is_alive_until_dropped() {
        let worker = Worker::start();
        let id = worker.id().to_string();
        assert!(alive(&id));
        drop(worker);
        assert!(!alive(&id));
    }

    #[test]
    fn malformed_and_vanished_workers_are_dead() {
        assert!(!alive("not a worker"));
        assert!(!alive("0:-:0"));
        assert!(!alive("4294967295:-:0"));
        // The parent of this process exists; with a start time that cannot be its own it is
        // another process that reused the id.
        let parent = std::os::unix::process::parent_id();
        if process_start(parent).is_some() {
            assert!(alive(&format!(
                "{parent}:{}:0",
                process_start(parent).unwrap()
            )));
            assert!(!alive(&format!("{parent}:{}:0", u64::MAX)));
        }
    }
}
