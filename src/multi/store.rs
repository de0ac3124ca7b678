//! The experiment store: one SQLite file per experiment, `DIR/experiment.sqlite`, holding the
//! experiment's settings, the strategy's state and every trial.
//!
//! A trial is one architecture proposed by the strategy and its evaluation. It goes through
//! `pending` (proposed, not yet taken by a worker), `running` (a worker is evaluating it) and
//! ends `done` (with metrics and score) or `failed` (with the reason). Finished trials carry a
//! `finish_seq`, the order in which results arrived, which is the order strategies see them in.
//!
//! The file is in write-ahead-log mode, so readers (`nas trials`) never block the workers, and
//! every change is one transaction, so that a crash at any moment loses at most the work that
//! was not committed yet. Several connections (threads, processes on the same machine) may use
//! one file at once; a writer waits up to [`BUSY_TIMEOUT`] for another to finish.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Row, TransactionBehavior};

use super::history::{History, Observation, Score};
use super::space::Arch;
use crate::{NasError, Result};

/// The file name of the store inside an experiment directory.
pub const STORE_FILE: &str = "experiment.sqlite";

/// The version of the tables this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// How long a connection waits for another one's write transaction before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(120);

/// The value of the `format` metadata entry that marks a file as an experiment store.
const FORMAT: &str = "nasrs-experiment";

/// Metadata keys.
pub(crate) mod meta {
    /// Marks the file as an experiment store.
    pub const FORMAT: &str = "format";
    /// [`super::SCHEMA_VERSION`] of the writer.
    pub const SCHEMA_VERSION: &str = "schema_version";
    /// The experiment's settings as JSON.
    pub const CONFIG: &str = "config";
    /// The experiment seed.
    pub const SEED: &str = "seed";
    /// The strategy's command-line name.
    pub const STRATEGY: &str = "strategy";
    /// The strategy's state after the latest proposal, as JSON.
    pub const STRATEGY_STATE: &str = "strategy_state";
    /// When the store was created (Unix seconds).
    pub const CREATED: &str = "created";
}

const SCHEMA: &str = "
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE trials (
    id          INTEGER PRIMARY KEY,
    key         TEXT NOT NULL UNIQUE,
    arch        TEXT NOT NULL,
    description TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    metrics     TEXT,
    score       TEXT,
    epochs      REAL,
    seconds     REAL,
    seed        INTEGER NOT NULL,
    error       TEXT,
    worker      TEXT,
    created     REAL NOT NULL,
    started     REAL,
    finished    REAL,
    finish_seq  INTEGER UNIQUE
);
CREATE INDEX trials_by_status ON trials (status, id);
";

/// Where a trial stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrialStatus {
    /// Proposed, waiting for a worker.
    Pending,
    /// Being evaluated by a worker.
    Running,
    /// Evaluated, with metrics and score.
    Done,
    /// The evaluation failed; the trial carries the reason.
    Failed,
}

impl TrialStatus {
    /// The name stored in the `status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            TrialStatus::Pending => "pending",
            TrialStatus::Running => "running",
            TrialStatus::Done => "done",
            TrialStatus::Failed => "failed",
        }
    }

    /// Whether the trial has its result (done or failed).
    pub fn is_finished(self) -> bool {
        matches!(self, TrialStatus::Done | TrialStatus::Failed)
    }
}

impl fmt::Display for TrialStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TrialStatus {
    type Err = NasError;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "pending" => Ok(TrialStatus::Pending),
            "running" => Ok(TrialStatus::Running),
            "done" => Ok(TrialStatus::Done),
            "failed" => Ok(TrialStatus::Failed),
            other => Err(NasError::config(
                "status",
                format!("expected pending, running, done or failed, found `{other}`"),
            )),
        }
    }
}

/// One trial: a proposed architecture and, once finished, its evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct Trial {
    /// 1 for the first proposal, then consecutive.
    pub id: u64,
    /// The canonical key of the architecture; unique in an experiment.
    pub key: String,
    /// The architecture as proposed: one option index per gene.
    pub arch: Arch,
    /// The space's readable description of the architecture.
    pub description: String,
    /// Where the trial stands.
    pub status: TrialStatus,
    /// The metrics of a done trial.
    pub metrics: Option<BTreeMap<String, f64>>,
    /// The score of a done trial.
    pub score: Option<Score>,
    /// Training epochs the estimator reported for a done trial.
    pub epochs: Option<f64>,
    /// Seconds spent: what the estimator reported for a done trial, the wall-clock time until
    /// the failure for a failed one.
    pub seconds: Option<f64>,
    /// The seed the evaluation was given (derived from the experiment seed and the id).
    pub seed: u64,
    /// Why a failed trial failed.
    pub error: Option<String>,
    /// The worker that claimed the trial last (see the `worker` module for the id's form).
    pub worker: Option<String>,
    /// When the trial was proposed (Unix seconds).
    pub created: f64,
    /// When a worker claimed it last.
    pub started: Option<f64>,
    /// When its result was written.
    pub finished: Option<f64>,
    /// Position of a finished trial in the order results arrived, from 1.
    pub finish_seq: Option<u64>,
}

impl Trial {
    /// The trial as strategies see it; `None` while it is not finished.
    pub fn observation(&self) -> Option<Observation> {
        self.status.is_finished().then(|| Observation {
            arch: self.arch.clone(),
            key: self.key.clone(),
            metrics: self.metrics.clone(),
            score: self.score.clone(),
        })
    }
}

/// How many trials are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Proposed, waiting for a worker.
    pub pending: usize,
    /// Being evaluated.
    pub running: usize,
    /// Evaluated.
    pub done: usize,
    /// Failed.
    pub failed: usize,
}

impl Counts {
    /// Every trial proposed so far.
    pub fn total(&self) -> usize {
        self.pending + self.running + self.done + self.failed
    }

    /// Trials with a result.
    pub fn finished(&self) -> usize {
        self.done + self.failed
    }
}

/// The result a worker writes for a trial.
#[derive(Clone, Debug)]
pub(crate) enum Outcome {
    /// The evaluation succeeded.
    Done {
        metrics: BTreeMap<String, f64>,
        score: Score,
        epochs: f64,
        seconds: f64,
    },
    /// The evaluation failed.
    Failed { error: String, seconds: f64 },
}

/// An open connection to an experiment store.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// The store file of the experiment in `dir`.
pub fn store_path(dir: &Path) -> PathBuf {
    dir.join(STORE_FILE)
}

impl Store {
    /// Opens the existing store of the experiment in `dir`, checking that it is an experiment
    /// store of this schema version.
    pub fn open(dir: &Path) -> Result<Self> {
        let path = store_path(dir);
        if !path.is_file() {
            return Err(NasError::format(
                &path,
                "no experiment store here (the file does not exist)",
            ));
        }
        let store = Store::connect(path, false)?;
        store.check_format()?;
        Ok(store)
    }

    /// Opens the store of the experiment in `dir`, creating the file and its tables with the
    /// metadata `entries` when there is none. Returns whether it was created. The check and the
    /// creation are one transaction, so that workers starting together create it once.
    pub(crate) fn open_or_init(dir: &Path, entries: &[(&str, String)]) -> Result<(Self, bool)> {
        std::fs::create_dir_all(dir).map_err(|e| NasError::io(dir, e))?;
        let mut store = Store::connect(store_path(dir), true)?;
        let path = store.path.clone();
        let tx = store
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| db_error(&path, "cannot start a transaction", e))?;
        let tables: Vec<String> = {
            let mut stmt = tx
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
                .map_err(|e| db_error(&path, "cannot list tables", e))?;
            stmt.query_map([], |row| row.get(0))
                .and_then(|rows| rows.collect())
                .map_err(|e| db_error(&path, "cannot list tables", e))?
        };
        let created = tables.is_empty();
        if created {
            tx.execute_batch(SCHEMA)
                .map_err(|e| db_error(&path, "cannot create the tables", e))?;
            let mut all = vec![
                (meta::FORMAT, FORMAT.to_string()),
                (meta::SCHEMA_VERSION, SCHEMA_VERSION.to_string()),
                (meta::CREATED, now().to_string()),
            ];
            all.extend(entries.iter().cloned());
            for (key, value) in all {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                    (key, value),
                )
                .map_err(|e| db_error(&path, "cannot write the metadata", e))?;
            }
        }
        tx.commit()
            .map_err(|e| db_error(&path, "cannot commit the new store", e))?;
        if !created {
            store.check_format()?;
        }
        Ok((store, created))
    }

    fn connect(path: PathBuf, create: bool) -> Result<Self> {
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = Connection::open_with_flags(&path, flags)
            .map_err(|e| db_error(&path, "cannot open", e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| db_error(&path, "cannot set the busy timeout", e))?;
        let store = Store { conn, path };
        // A database of something else is turned away before anything in it changes.
        let has_tables: bool = store
            .conn
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table'",
                [],
                |row| row.get(0),
            )
            .map_err(|e| db_error(&store.path, "cannot read the tables", e))?;
        if has_tables {
            store.check_format()?;
        }
        let Store { conn, path } = store;

        // Switching a new file to WAL takes a lock that another connection doing the same may
        // hold for a moment; the mode is persistent, so only the first switch does any work.
        let mut attempt = 0;
        let mode: String = loop {
            match conn.pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0)) {
                Ok(mode) => break mode,
                Err(e)
                    if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) && attempt < 100 =>
                {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(db_error(&path, "cannot switch to write-ahead logging", e)),
            }
        };
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(NasError::format(
                &path,
                format!("expected write-ahead-log journal mode, the file stays in `{mode}` mode"),
            ));
        }
        // FULL makes a committed trial survive a power loss as well as a crash.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| db_error(&path, "cannot set synchronous mode", e))?;
        Ok(Store { conn, path })
    }

    /// Checks that the file is an experiment store of [`SCHEMA_VERSION`].
    fn check_format(&self) -> Result<()> {
        let has_meta: bool = self
            .conn
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
                [],
                |row| row.get(0),
            )
            .map_err(|e| db_error(&self.path, "cannot read the tables", e))?;
        let format = if has_meta {
            self.meta(meta::FORMAT)?
        } else {
            None
        };
        if format.as_deref() != Some(FORMAT) {
            return Err(NasError::format(
                &self.path,
                "an SQLite database but not a nasrs experiment store (no `format` entry \
                 `nasrs-experiment` in a `meta` table)",
            ));
        }
        let version = self.meta(meta::SCHEMA_VERSION)?.unwrap_or_default();
        if version != SCHEMA_VERSION.to_string() {
            return Err(NasError::format(
                &self.path,
                format!(
                    "experiment store of schema version `{version}`; this build of nasrs reads \
                     version {SCHEMA_VERSION}"
                ),
            ));
        }
        Ok(())
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The metadata entry `key`.
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()
            .map_err(|e| db_error(&self.path, &format!("cannot read metadata `{key}`"), e))
    }

    /// Every trial, by id.
    pub fn trials(&self) -> Result<Vec<Trial>> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {TRIAL_COLUMNS} FROM trials ORDER BY id"))
            .map_err(|e| db_error(&self.path, "cannot read the trials", e))?;
        let raw: Vec<RawTrial> = stmt
            .query_map([], RawTrial::from_row)
            .and_then(|rows| rows.collect())
            .map_err(|e| db_error(&self.path, "cannot read the trials", e))?;
        raw.into_iter().map(|r| r.parse(&self.path)).collect()
    }

    /// How many trials are in each state.
    pub fn counts(&self) -> Result<Counts> {
        counts(&self.conn, &self.path)
    }

    /// Runs SQLite's `integrity_check`; an error lists what it found.
    pub fn integrity_check(&self) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare("PRAGMA integrity_check")
            .map_err(|e| db_error(&self.path, "cannot check integrity", e))?;
        let lines: Vec<String> = stmt
            .query_map([], |row| row.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| db_error(&self.path, "cannot check integrity", e))?;
        if lines != ["ok"] {
            return Err(NasError::format(
                &self.path,
                format!("integrity check failed: {}", lines.join("; ")),
            ));
        }
        Ok(())
    }

    /// Starts a write transaction that holds the write lock from its first statement, so that
    /// what it reads stays true until it commits.
    pub(crate) fn write(&mut self) -> Result<Write<'_>> {
        // Threads of one process queue here rather than in SQLite's busy handler, which polls
        // with growing sleeps and can leave one thread waiting while others write again and
        // again. Processes still meet in the busy handler.
        let turn = WRITE_TURN.lock().unwrap_or_else(|p| p.into_inner());
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| db_error(&self.path, "cannot start a write transaction", e))?;
        Ok(Write {
            tx,
            _turn: turn,
            path: &self.path,
        })
    }
}

/// The turn of one thread of this process to write to any store.
static WRITE_TURN: Mutex<()> = Mutex::new(());

/// One write transaction on a store; dropping it without [`Write::commit`] undoes it.
pub(crate) struct Write<'a> {
    // Declared before `_turn`, so that an uncommitted transaction is rolled back before the
    // next thread's turn.
    tx: rusqlite::Transaction<'a>,
    _turn: MutexGuard<'static, ()>,
    path: &'a Path,
}

impl Write<'_> {
    /// Makes the changes permanent.
    pub(crate) fn commit(self) -> Result<()> {
        self.tx
            .commit()
            .map_err(|e| db_error(self.path, "cannot commit", e))
    }

    /// The metadata entry `key`, which must exist.
    pub(crate) fn meta(&self, key: &str) -> Result<String> {
        self.tx
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()
            .map_err(|e| db_error(self.path, &format!("cannot read metadata `{key}`"), e))?
            .ok_or_else(|| NasError::format(self.path, format!("metadata `{key}` is missing")))
    }

    /// Sets the metadata entry `key`.
    pub(crate) fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.tx
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
            .map_err(|e| db_error(self.path, &format!("cannot write metadata `{key}`"), e))?;
        Ok(())
    }

    /// How many trials are in each state.
    pub(crate) fn counts(&self) -> Result<Counts> {
        counts(&self.tx, self.path)
    }

    /// Puts every `running` trial whose worker `alive` says is gone back to `pending`; returns
    /// their ids.
    pub(crate) fn reclaim(&self, alive: impl Fn(&str) -> bool) -> Result<Vec<u64>> {
        let running: Vec<(u64, Option<String>)> = {
            let mut stmt = self
                .tx
                .prepare("SELECT id, worker FROM trials WHERE status = 'running' ORDER BY id")
                .map_err(|e| db_error(self.path, "cannot read running trials", e))?;
            stmt.query_map([], |row| Ok((row.get::<_, i64>(0)? as u64, row.get(1)?)))
                .and_then(|rows| rows.collect())
                .map_err(|e| db_error(self.path, "cannot read running trials", e))?
        };
        let mut reclaimed = Vec::new();
        for (id, worker) in running {
            if worker.as_deref().is_some_and(&alive) {
                continue;
            }
            self.tx
                .execute(
                    "UPDATE trials SET status = 'pending' WHERE id = ?1",
                    [id as i64],
                )
                .map_err(|e| db_error(self.path, "cannot reset a running trial", e))?;
            reclaimed.push(id);
        }
        Ok(reclaimed)
    }

    /// The history strategies learn from: finished trials in the order their results arrived,
    /// then unfinished ones by id.
    pub(crate) fn history(&self) -> Result<History> {
        let read = |sql: &str| -> Result<Vec<Trial>> {
            let mut stmt = self
                .tx
                .prepare(sql)
                .map_err(|e| db_error(self.path, "cannot read the history", e))?;
            let raw: Vec<RawTrial> = stmt
                .query_map([], RawTrial::from_row)
                .and_then(|rows| rows.collect())
                .map_err(|e| db_error(self.path, "cannot read the history", e))?;
            raw.into_iter().map(|r| r.parse(self.path)).collect()
        };
        let mut history = History::new();
        let finished = read(&format!(
            "SELECT {TRIAL_COLUMNS} FROM trials WHERE status IN ('done', 'failed')
             ORDER BY finish_seq"
        ))?;
        for trial in finished {
            if let Some(observation) = trial.observation() {
                history.add_done(observation);
            }
        }
        let unfinished = read(&format!(
            "SELECT {TRIAL_COLUMNS} FROM trials WHERE status IN ('pending', 'running')
             ORDER BY id"
        ))?;
        for trial in unfinished {
            history.add_pending(trial.arch, trial.key);
        }
        Ok(history)
    }

    /// The id the next proposal gets.
    pub(crate) fn next_id(&self) -> Result<u64> {
        let max: i64 = self
            .tx
            .query_row("SELECT coalesce(max(id), 0) FROM trials", [], |row| {
                row.get(0)
            })
            .map_err(|e| db_error(self.path, "cannot read the trial ids", e))?;
        Ok(max as u64 + 1)
    }

    /// Records a proposal as `pending`.
    pub(crate) fn insert_pending(
        &self,
        id: u64,
        key: &str,
        arch: &[usize],
        description: &str,
        seed: u64,
    ) -> Result<()> {
        let arch = serde_json::to_string(arch).map_err(|e| {
            NasError::format(self.path, format!("trial {id}: cannot encode arch: {e}"))
        })?;
        self.tx
            .execute(
                "INSERT INTO trials (id, key, arch, description, status, seed, created)
                 VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6)",
                (id as i64, key, arch, description, seed_to_sql(seed), now()),
            )
            .map_err(|e| db_error(self.path, &format!("cannot insert trial {id} ({key})"), e))?;
        Ok(())
    }

    /// Moves the oldest pending trial to `running` under `worker` and returns it; `None` when
    /// nothing is pending.
    pub(crate) fn claim_oldest(&self, worker: &str) -> Result<Option<Trial>> {
        let id: Option<i64> = self
            .tx
            .query_row(
                "SELECT id FROM trials WHERE status = 'pending' ORDER BY id LIMIT 1",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| db_error(self.path, "cannot look for a pending trial", e))?;
        let Some(id) = id else {
            return Ok(None);
        };
        self.tx
            .execute(
                "UPDATE trials SET status = 'running', worker = ?2, started = ?3
                 WHERE id = ?1 AND status = 'pending'",
                (id, worker, now()),
            )
            .map_err(|e| db_error(self.path, &format!("cannot claim trial {id}"), e))?;
        let raw = self
            .tx
            .query_row(
                &format!("SELECT {TRIAL_COLUMNS} FROM trials WHERE id = ?1"),
                [id],
                RawTrial::from_row,
            )
            .map_err(|e| db_error(self.path, &format!("cannot read trial {id}"), e))?;
        raw.parse(self.path).map(Some)
    }

    /// Writes the result of trial `id`, which `worker` must still hold; returns false (and
    /// writes nothing) when it does not.
    pub(crate) fn finish(&self, id: u64, worker: &str, outcome: &Outcome) -> Result<bool> {
        let seq: i64 = self
            .tx
            .query_row(
                "SELECT coalesce(max(finish_seq), 0) + 1 FROM trials",
                [],
                |row| row.get(0),
            )
            .map_err(|e| db_error(self.path, "cannot read the finish order", e))?;
        let encode = |what: &str, value: serde_json::Result<String>| {
            value.map_err(|e| {
                NasError::format(self.path, format!("trial {id}: cannot encode {what}: {e}"))
            })
        };
        let changed = match outcome {
            Outcome::Done {
                metrics,
                score,
                epochs,
                seconds,
            } => self.tx.execute(
                "UPDATE trials SET status = 'done', metrics = ?3, score = ?4, epochs = ?5,
                     seconds = ?6, error = NULL, finished = ?7, finish_seq = ?8
                 WHERE id = ?1 AND status = 'running' AND worker = ?2",
                (
                    id as i64,
                    worker,
                    encode("metrics", serde_json::to_string(metrics))?,
                    encode("score", serde_json::to_string(score))?,
                    epochs,
                    seconds,
                    now(),
                    seq,
                ),
            ),
            Outcome::Failed { error, seconds } => self.tx.execute(
                "UPDATE trials SET status = 'failed', error = ?3, seconds = ?4, finished = ?5,
                     finish_seq = ?6
                 WHERE id = ?1 AND status = 'running' AND worker = ?2",
                (id as i64, worker, error, seconds, now(), seq),
            ),
        }
        .map_err(|e| {
            db_error(
                self.path,
                &format!("cannot write the result of trial {id}"),
                e,
            )
        })?;
        Ok(changed == 1)
    }
}

fn counts(conn: &Connection, path: &Path) -> Result<Counts> {
    let mut stmt = conn
        .prepare("SELECT status, count(*) FROM trials GROUP BY status")
        .map_err(|e| db_error(path, "cannot count the trials", e))?;
    let rows: Vec<(String, i64)> = stmt
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .and_then(|rows| rows.collect())
        .map_err(|e| db_error(path, "cannot count the trials", e))?;
    let mut counts = Counts::default();
    for (status, n) in rows {
        let n = n as usize;
        match status.parse::<TrialStatus>() {
            Ok(TrialStatus::Pending) => counts.pending = n,
            Ok(TrialStatus::Running) => counts.running = n,
            Ok(TrialStatus::Done) => counts.done = n,
            Ok(TrialStatus::Failed) => counts.failed = n,
            Err(e) => return Err(NasError::format(path, format!("trials table: {e}"))),
        }
    }
    Ok(counts)
}

const TRIAL_COLUMNS: &str = "id, key, arch, description, status, metrics, score, epochs, \
                             seconds, seed, error, worker, created, started, finished, finish_seq";

/// A row of `trials` before its JSON columns are read.
struct RawTrial {
    id: i64,
    key: String,
    arch: String,
    description: String,
    status: String,
    metrics: Option<String>,
    score: Option<String>,
    epochs: Option<f64>,
    seconds: Option<f64>,
    seed: i64,
    error: Option<String>,
    worker: Option<String>,
    created: f64,
    started: Option<f64>,
    finished: Option<f64>,
    finish_seq: Option<i64>,
}

impl RawTrial {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(RawTrial {
            id: row.get(0)?,
            key: row.get(1)?,
            arch: row.get(2)?,
            description: row.get(3)?,
            status: row.get(4)?,
            metrics: row.get(5)?,
            score: row.get(6)?,
            epochs: row.get(7)?,
            seconds: row.get(8)?,
            seed: row.get(9)?,
            error: row.get(10)?,
            worker: row.get(11)?,
            created: row.get(12)?,
            started: row.get(13)?,
            finished: row.get(14)?,
            finish_seq: row.get(15)?,
        })
    }

    fn parse(self, path: &Path) -> Result<Trial> {
        let id = self.id;
        let bad = |column: &str, expected: &str, e: &dyn fmt::Display| {
            NasError::format(
                path,
                format!("trial {id}: column `{column}` is not {expected}: {e}"),
            )
        };
        let arch: Arch = serde_json::from_str(&self.arch)
            .map_err(|e| bad("arch", "a JSON list of option indices", &e))?;
        let metrics = self
            .metrics
            .map(|m| serde_json::from_str(&m))
            .transpose()
            .map_err(|e| bad("metrics", "a JSON object of numbers", &e))?;
        let score = self
            .score
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(|e| bad("score", "a JSON score", &e))?;
        let status = self
            .status
            .parse()
            .map_err(|e| bad("status", "a trial status", &e))?;
        Ok(Trial {
            id: id as u64,
            key: self.key,
            arch,
            description: self.description,
            status,
            metrics,
            score,
            epochs: self.epochs,
            seconds: self.seconds,
            seed: self.seed as u64,
            error: self.error,
            worker: self.worker,
            created: self.created,
            started: self.started,
            finished: self.finished,
            finish_seq: self.finish_seq.map(|s| s as u64),
        })
    }
}

/// Trial seeds are below 2^63 (see `trial_seed`), so they fit SQLite's signed integers as they
/// are and read the same in any SQLite client.
fn seed_to_sql(seed: u64) -> i64 {
    (seed & (u64::MAX >> 1)) as i64
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// An SQLite error on `path` while doing `what`, worded for someone who did not write the code.
fn db_error(path: &Path, what: &str, e: rusqlite::Error) -> NasError {
    let detail = match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => {
            "the file is not an SQLite database (an experiment store is one)".to_string()
        }
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => format!(
            "another worker held the store for more than {} s",
            BUSY_TIMEOUT.as_secs()
        ),
        _ => e.to_string(),
    };
    NasError::format(path, format!("{what}: {detail}"))
}
