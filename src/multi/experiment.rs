//! Running a multi-trial experiment: the strategy proposes, workers evaluate, results feed the
//! next proposals, and everything lives in an experiment store so that a run can be stopped,
//! killed or shared between workers and still end as one uninterrupted run would.
//!
//! Each worker repeats one step until the budget is spent:
//! 1. in one write transaction: put back to `pending` the trials of workers that are gone;
//!    take the oldest pending trial, or, when none is pending and the budget allows, restore the
//!    strategy's state, ask it for an architecture, record it as a trial and save the state;
//! 2. evaluate the trial outside any transaction;
//! 3. in one write transaction, write the result.
//!
//! Because a proposal, the trial it creates and the strategy state that produced it are
//! committed together, a crash at any moment loses at most uncommitted work: a trial proposed
//! but not evaluated is evaluated by the next worker before anything new is proposed, exactly
//! when an uninterrupted run would have evaluated it. With one worker and a deterministic
//! estimator, a resumed experiment therefore ends with the same trials, metrics and order as an
//! uninterrupted one.
//!
//! [`run_in_memory`] is the same loop without a store, for the hundreds of repetitions that a
//! study on a tabular benchmark needs.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::estimator::Estimator;
use super::history::{History, Scoring};
use super::space::Space;
use super::store::{self, Outcome, Store, Trial, TrialStatus, meta};
use super::strategy::Strategy;
use super::worker::{self, Worker};
use crate::{NasError, Result};

/// What an experiment is made of: the space, how architectures are evaluated and scored, the
/// strategy, how many trials to run and the seed every trial seed derives from.
pub struct ExperimentSpec<'a> {
    /// The space searched.
    pub space: &'a dyn Space,
    /// How an architecture gets its metrics.
    pub estimator: &'a dyn Estimator,
    /// What proposes architectures; its state at the start is part of the settings.
    pub strategy: Box<dyn Strategy>,
    /// Objectives and constraints.
    pub scoring: Scoring,
    /// Number of trials (done and failed together).
    pub budget: usize,
    /// The experiment seed; trial `i` is evaluated with [`trial_seed`]`(seed, i)`.
    pub seed: u64,
}

/// One gene of the space, as recorded in an experiment's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneConfig {
    /// The gene's name.
    pub name: String,
    /// Its options.
    pub options: Vec<String>,
}

/// The settings an experiment store records and a resumed run must repeat.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExperimentConfig {
    /// The space kind.
    pub space: String,
    /// The genes of the space.
    pub genes: Vec<GeneConfig>,
    /// The estimator's one-line description.
    pub estimator: String,
    /// The strategy's command-line name.
    pub strategy: String,
    /// The strategy's state before the first proposal (its settings and seed).
    pub strategy_initial: serde_json::Value,
    /// Objectives and constraints.
    pub scoring: Scoring,
    /// Number of trials.
    pub budget: usize,
    /// The experiment seed.
    pub seed: u64,
}

impl ExperimentConfig {
    /// The settings of `spec`.
    pub fn of(spec: &ExperimentSpec<'_>) -> Self {
        ExperimentConfig {
            space: spec.space.kind().to_string(),
            genes: spec
                .space
                .genes()
                .iter()
                .map(|g| GeneConfig {
                    name: g.name.clone(),
                    options: g.options.clone(),
                })
                .collect(),
            estimator: spec.estimator.describe(),
            strategy: spec.strategy.name().to_string(),
            strategy_initial: spec.strategy.save(),
            scoring: spec.scoring.clone(),
            budget: spec.budget,
            seed: spec.seed,
        }
    }

    /// An error naming the first setting in which `given` differs from these (stored in
    /// `path`), or `Ok` when they agree.
    pub fn check_same(&self, given: &ExperimentConfig, path: &Path) -> Result<()> {
        let differ = |field: &str, stored: String, asked: String| {
            Err(NasError::config(
                field,
                format!(
                    "{} was created with {field} {stored}; this run asks for {asked} \
                     (use a new directory for different settings)",
                    path.display()
                ),
            ))
        };
        let genes = |g: &[GeneConfig]| {
            let parts: Vec<String> = g
                .iter()
                .map(|g| format!("{}({})", g.name, g.options.join("|")))
                .collect();
            format!("genes {}", parts.join(" "))
        };
        if self.space != given.space {
            return differ("space", quote(&self.space), quote(&given.space));
        }
        if self.genes != given.genes {
            return differ("space", genes(&self.genes), genes(&given.genes));
        }
        if self.estimator != given.estimator {
            return differ("estimator", quote(&self.estimator), quote(&given.estimator));
        }
        if self.strategy != given.strategy {
            return differ("strategy", quote(&self.strategy), quote(&given.strategy));
        }
        if self.strategy_initial != given.strategy_initial {
            return differ(
                "strategy",
                format!("settings {}", self.strategy_initial),
                format!("settings {}", given.strategy_initial),
            );
        }
        if self.scoring.objectives != given.scoring.objectives {
            return differ(
                "objective",
                list(&self.scoring.objectives),
                list(&given.scoring.objectives),
            );
        }
        if self.scoring.constraints != given.scoring.constraints {
            return differ(
                "constraint",
                list(&self.scoring.constraints),
                list(&given.scoring.constraints),
            );
        }
        if self.budget != given.budget {
            return differ("budget", self.budget.to_string(), given.budget.to_string());
        }
        if self.seed != given.seed {
            return differ("seed", self.seed.to_string(), given.seed.to_string());
        }
        Ok(())
    }
}

fn quote(text: &str) -> String {
    format!("`{text}`")
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "none".to_string();
    }
    let parts: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
    parts.join(", ")
}

/// The seed trial `trial_id` of an experiment seeded with `experiment_seed` is evaluated with:
/// a SplitMix64 finalisation of the two, so that neighbouring ids and seeds give unrelated
/// seeds, cut to 63 bits so that it is stored as it is in SQLite's signed integers.
pub fn trial_seed(experiment_seed: u64, trial_id: u64) -> u64 {
    let mut z = experiment_seed ^ trial_id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) >> 1
}

/// What [`Experiment::run`] did and where the experiment stands afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunSummary {
    /// Trials this call evaluated (done and failed).
    pub evaluated: usize,
    /// Trials done in the store.
    pub done: usize,
    /// Trials failed in the store.
    pub failed: usize,
    /// Trials proposed and not taken (left by a limit on evaluations).
    pub pending: usize,
    /// Trials other workers are still evaluating.
    pub running: usize,
    /// Whether the strategy said it had nothing new to propose.
    pub exhausted: bool,
}

/// An experiment backed by a store, ready to run workers on.
pub struct Experiment<'a> {
    dir: PathBuf,
    path: PathBuf,
    space: &'a dyn Space,
    estimator: &'a dyn Estimator,
    // Proposals happen inside the store's write transaction, which admits one writer at a
    // time; the lock only lets the threads of one process share the strategy object, whose
    // state is restored from the store before every proposal.
    strategy: Mutex<Box<dyn Strategy>>,
    scoring: Scoring,
    config: ExperimentConfig,
}

impl<'a> Experiment<'a> {
    /// Creates the store of a new experiment in `dir` (created if needed); an error if the
    /// directory already holds one.
    pub fn create(dir: &Path, spec: ExperimentSpec<'a>) -> Result<Self> {
        let (experiment, created) = Self::start(dir, spec)?;
        if !created {
            return Err(NasError::format(
                &experiment.path,
                "an experiment store already exists here; open it to resume, or choose a new \
                 directory",
            ));
        }
        Ok(experiment)
    }

    /// Opens the existing experiment in `dir` to resume it. The settings of `spec` must be the
    /// stored ones; trials of workers that are gone go back to `pending`.
    pub fn open(dir: &Path, spec: ExperimentSpec<'a>) -> Result<Self> {
        // Opening first gives the clear errors for a missing or foreign file.
        Store::open(dir)?;
        let (experiment, _) = Self::start(dir, spec)?;
        Ok(experiment)
    }

    /// Opens the experiment in `dir`, creating it when there is none. Workers in separate
    /// processes can all call this on one directory.
    pub fn open_or_create(dir: &Path, spec: ExperimentSpec<'a>) -> Result<Self> {
        Ok(Self::start(dir, spec)?.0)
    }

    fn start(dir: &Path, spec: ExperimentSpec<'a>) -> Result<(Self, bool)> {
        check_spec(&spec)?;
        let config = ExperimentConfig::of(&spec);
        let config_json = serde_json::to_string(&config)
            .map_err(|e| NasError::config("experiment", format!("cannot encode: {e}")))?;
        let entries = [
            (meta::CONFIG, config_json),
            (meta::SEED, spec.seed.to_string()),
            (meta::STRATEGY, config.strategy.clone()),
            (meta::STRATEGY_STATE, config.strategy_initial.to_string()),
        ];
        let (mut store, created) = Store::open_or_init(dir, &entries)?;
        let path = store.path().to_path_buf();

        if !created {
            let stored = store.meta(meta::CONFIG)?.ok_or_else(|| {
                NasError::format(&path, "metadata `config` is missing from the store")
            })?;
            let stored: ExperimentConfig = serde_json::from_str(&stored).map_err(|e| {
                NasError::format(&path, format!("metadata `config` is not readable: {e}"))
            })?;
            stored.check_same(&config, &path)?;
            let write = store.write()?;
            let reclaimed = write.reclaim(worker::alive)?;
            write.commit()?;
            if !reclaimed.is_empty() {
                tracing::info!(
                    "{}: trials {reclaimed:?} were left running by workers that are gone; they \
                     are pending again",
                    path.display()
                );
            }
        }

        let experiment = Experiment {
            dir: dir.to_path_buf(),
            path,
            space: spec.space,
            estimator: spec.estimator,
            strategy: Mutex::new(spec.strategy),
            scoring: spec.scoring,
            config,
        };
        Ok((experiment, created))
    }

    /// The settings.
    pub fn config(&self) -> &ExperimentConfig {
        &self.config
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every trial, by id.
    pub fn trials(&self) -> Result<Vec<Trial>> {
        Store::open(&self.dir)?.trials()
    }

    /// Runs `workers` workers (threads of this process, each with its own connection) until
    /// the budget is spent or the strategy has nothing new to propose. Other processes may run
    /// workers on the same store at the same time.
    pub fn run(&self, workers: usize) -> Result<RunSummary> {
        self.run_limited(workers, None)
    }

    /// As [`Experiment::run`], but evaluates at most `max_evaluations` trials in this call
    /// (all workers together) when given; the experiment can be run further later.
    pub fn run_limited(
        &self,
        workers: usize,
        max_evaluations: Option<usize>,
    ) -> Result<RunSummary> {
        if workers == 0 {
            return Err(NasError::config(
                "workers",
                "expected at least 1 worker, found 0",
            ));
        }
        let slots = AtomicUsize::new(max_evaluations.unwrap_or(usize::MAX));
        let outcomes: Vec<Result<(usize, bool)>> = if workers == 1 {
            vec![self.work(&slots)]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..workers)
                    .map(|_| scope.spawn(|| self.work(&slots)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                    })
                    .collect()
            })
        };
        let mut evaluated = 0;
        let mut exhausted = false;
        for outcome in outcomes {
            let (n, out_of_ideas) = outcome?;
            evaluated += n;
            exhausted |= out_of_ideas;
        }
        let counts = Store::open(&self.dir)?.counts()?;
        Ok(RunSummary {
            evaluated,
            done: counts.done,
            failed: counts.failed,
            pending: counts.pending,
            running: counts.running,
            exhausted,
        })
    }

    /// One worker's loop; returns how many trials it evaluated and whether the strategy ran
    /// out of proposals.
    fn work(&self, slots: &AtomicUsize) -> Result<(usize, bool)> {
        let me = Worker::start();
        let mut store = Store::open(&self.dir)?;
        let mut evaluated = 0;
        loop {
            // A slot is taken before claiming, so that a limit is never exceeded by workers
            // claiming at the same moment.
            if slots
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_err()
            {
                return Ok((evaluated, false));
            }
            let trial = match self.next_trial(&mut store, me.id())? {
                Next::Trial(trial) => trial,
                Next::BudgetSpent => return Ok((evaluated, false)),
                Next::Exhausted => return Ok((evaluated, true)),
            };
            let outcome = evaluate(
                self.space,
                self.estimator,
                &self.scoring,
                &trial.arch,
                trial.seed,
            );
            log_result(&trial, &outcome, self.config.budget);
            let write = store.write()?;
            let kept = write.finish(trial.id, me.id(), &outcome)?;
            write.commit()?;
            if !kept {
                tracing::warn!(
                    "{}: trial {} was taken from worker {} while it ran; its result is dropped",
                    self.path.display(),
                    trial.id,
                    me.id()
                );
            }
            evaluated += 1;
        }
    }

    /// Step 1 of the loop, in one write transaction.
    fn next_trial(&self, store: &mut Store, worker: &str) -> Result<Next> {
        let write = store.write()?;
        let reclaimed = write.reclaim(worker::alive)?;
        if !reclaimed.is_empty() {
            tracing::info!("trials {reclaimed:?} were left running by workers that are gone");
        }
        if let Some(trial) = write.claim_oldest(worker)? {
            write.commit()?;
            return Ok(Next::Trial(Box::new(trial)));
        }
        if write.counts()?.total() >= self.config.budget {
            write.commit()?;
            return Ok(Next::BudgetSpent);
        }

        let history = write.history()?;
        let state = write.meta(meta::STRATEGY_STATE)?;
        let state: serde_json::Value = serde_json::from_str(&state)
            .map_err(|e| NasError::format(&self.path, format!("metadata `strategy_state`: {e}")))?;
        // A worker that panicked while holding the lock left nothing half-done that matters:
        // the state is restored from the store right away.
        let mut strategy = self.strategy.lock().unwrap_or_else(|p| p.into_inner());
        strategy.restore(state)?;
        let Some(arch) = strategy.ask(self.space, &history)? else {
            write.commit()?;
            return Ok(Next::Exhausted);
        };
        let key = check_proposal(self.space, &history, strategy.name(), &arch)?;
        let id = write.next_id()?;
        let description = self.space.describe(&arch);
        write.insert_pending(
            id,
            &key,
            &arch,
            &description,
            trial_seed(self.config.seed, id),
        )?;
        write.set_meta(meta::STRATEGY_STATE, &strategy.save().to_string())?;
        drop(strategy);
        let trial = write.claim_oldest(worker)?.ok_or_else(|| {
            NasError::format(
                &self.path,
                format!("trial {id} vanished after its insertion"),
            )
        })?;
        write.commit()?;
        Ok(Next::Trial(Box::new(trial)))
    }
}

enum Next {
    Trial(Box<Trial>),
    BudgetSpent,
    Exhausted,
}

/// Rejects settings no run can use.
fn check_spec(spec: &ExperimentSpec<'_>) -> Result<()> {
    if spec.budget == 0 {
        return Err(NasError::config(
            "budget",
            "expected at least 1 trial, found 0",
        ));
    }
    if spec.scoring.objectives.is_empty() {
        return Err(NasError::config(
            "objective",
            "expected at least one objective",
        ));
    }
    let reported = spec.estimator.metrics();
    let names = spec
        .scoring
        .objectives
        .iter()
        .map(|o| (&o.metric, "objective"))
        .chain(
            spec.scoring
                .constraints
                .iter()
                .map(|c| (&c.metric, "constraint")),
        );
    for (metric, field) in names {
        if !reported.contains(metric) {
            return Err(NasError::config(
                field,
                format!(
                    "the estimator ({}) reports no metric `{metric}`; it reports {}",
                    spec.estimator.describe(),
                    reported.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// The key of a proposal, after checking that the strategy kept its promise: a valid
/// architecture that the history has not seen.
fn check_proposal(
    space: &dyn Space,
    history: &History,
    strategy: &str,
    arch: &[usize],
) -> Result<String> {
    if !space.is_valid(arch) {
        return Err(NasError::config(
            "strategy",
            format!("{strategy} proposed {arch:?}, which is not an architecture of the space"),
        ));
    }
    let key = space.key(arch);
    if history.seen(&key) {
        return Err(NasError::config(
            "strategy",
            format!("{strategy} proposed `{key}` again"),
        ));
    }
    Ok(key)
}

/// Evaluates one trial; an estimator error or a non-finite number is a failed trial, not an
/// error of the run. An architecture whose cheap metrics ([`Estimator::cost`]) already violate a
/// constraint is a failed trial that is never evaluated: no training time goes to it.
fn evaluate(
    space: &dyn Space,
    estimator: &dyn Estimator,
    scoring: &Scoring,
    arch: &[usize],
    seed: u64,
) -> Outcome {
    let clock = Instant::now();
    let failed = |error: String| Outcome::Failed {
        error,
        seconds: clock.elapsed().as_secs_f64(),
    };
    if let Some(known) = estimator.cost(space, arch)
        && let Some(violation) = scoring.violation(&known)
    {
        return failed(format!("rejected before evaluation: {violation}"));
    }
    let evaluation = match estimator.evaluate(space, arch, seed) {
        Ok(evaluation) => evaluation,
        Err(e) => return failed(e.to_string()),
    };
    let numbers = evaluation
        .metrics
        .iter()
        .map(|(name, &value)| (name.as_str(), value))
        .chain([
            ("epochs", evaluation.epochs),
            ("seconds", evaluation.seconds),
        ]);
    for (name, value) in numbers {
        if !value.is_finite() {
            return failed(format!("the estimator reported {name} = {value}"));
        }
    }
    match scoring.score(&evaluation.metrics) {
        Ok(score) => Outcome::Done {
            metrics: evaluation.metrics,
            score,
            epochs: evaluation.epochs,
            seconds: evaluation.seconds,
        },
        Err(e) => failed(e.to_string()),
    }
}

fn log_result(trial: &Trial, outcome: &Outcome, budget: usize) {
    match outcome {
        Outcome::Done {
            metrics, seconds, ..
        } => {
            let shown: Vec<String> = metrics.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
            tracing::info!(
                "trial {}/{budget} {}: {} ({seconds:.1} s)",
                trial.id,
                trial.description,
                shown.join(", ")
            );
        }
        Outcome::Failed { error, .. } => {
            tracing::warn!(
                "trial {}/{budget} {} failed: {error}",
                trial.id,
                trial.description
            );
        }
    }
}

/// Runs the experiment of `spec` without a store, in this thread: the same proposals, seeds,
/// evaluations and order as a one-worker [`Experiment`] with the same settings. Returns the
/// trials by id (which is also the order they finished in); [`history_of`] turns them into the
/// strategies' view.
pub fn run_in_memory(spec: ExperimentSpec<'_>) -> Result<Vec<Trial>> {
    check_spec(&spec)?;
    let ExperimentSpec {
        space,
        estimator,
        mut strategy,
        scoring,
        budget,
        seed,
    } = spec;
    let mut history = History::new();
    let mut trials = Vec::with_capacity(budget);
    for id in 1..=budget as u64 {
        let Some(arch) = strategy.ask(space, &history)? else {
            break;
        };
        let key = check_proposal(space, &history, strategy.name(), &arch)?;
        let trial_seed = trial_seed(seed, id);
        let created = store::now();
        let outcome = evaluate(space, estimator, &scoring, &arch, trial_seed);
        let mut trial = Trial {
            id,
            key,
            description: space.describe(&arch),
            arch,
            status: TrialStatus::Done,
            metrics: None,
            score: None,
            epochs: None,
            seconds: None,
            seed: trial_seed,
            error: None,
            worker: None,
            created,
            started: Some(created),
            finished: Some(store::now()),
            finish_seq: Some(id),
        };
        match outcome {
            Outcome::Done {
                metrics,
                score,
                epochs,
                seconds,
            } => {
                trial.metrics = Some(metrics);
                trial.score = Some(score);
                trial.epochs = Some(epochs);
                trial.seconds = Some(seconds);
            }
            Outcome::Failed { error, seconds } => {
                trial.status = TrialStatus::Failed;
                trial.error = Some(error);
                trial.seconds = Some(seconds);
            }
        }
        if let Some(observation) = trial.observation() {
            history.add_done(observation);
        }
        trials.push(trial);
    }
    Ok(trials)
}

/// The history strategies would see after `trials`: finished ones in the order they finished,
/// then unfinished ones by id.
pub fn history_of(trials: &[Trial]) -> History {
    let mut finished: Vec<&Trial> = trials.iter().filter(|t| t.status.is_finished()).collect();
    finished.sort_by_key(|t| (t.finish_seq, t.id));
    let mut history = History::new();
    for trial in finished {
        if let Some(observation) = trial.observation() {
            history.add_done(observation);
        }
    }
    let mut unfinished: Vec<&Trial> = trials.iter().filter(|t| !t.status.is_finished()).collect();
    unfinished.sort_by_key(|t| t.id);
    for trial in unfinished {
        history.add_pending(trial.arch.clone(), trial.key.clone());
    }
    history
}

/// What `nas trials DIR` shows: the settings and every trial of the experiment in `dir`, read
/// without changing anything.
pub fn list_trials(dir: &Path) -> Result<(ExperimentConfig, Vec<Trial>)> {
    let store = Store::open(dir)?;
    let config = store
        .meta(meta::CONFIG)?
        .ok_or_else(|| NasError::format(store.path(), "metadata `config` is missing"))?;
    let config: ExperimentConfig = serde_json::from_str(&config).map_err(|e| {
        NasError::format(
            store.path(),
            format!("metadata `config` is not readable: {e}"),
        )
    })?;
    Ok((config, store.trials()?))
}

/// The metrics of `trial` named in `names`, in that order (`None` where it has none).
pub fn metric_values(trial: &Trial, names: &[String]) -> Vec<Option<f64>> {
    names
        .iter()
        .map(|n| trial.metrics.as_ref().and_then(|m| m.get(n)).copied())
        .collect()
}
