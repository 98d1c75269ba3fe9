//! The intent log under crashes: a child process (this test binary, re-run with the store's
//! path in its environment) runs a random, model-checked workload on a store with a small
//! log — so that checkpoints and full logs come every few batches — and dies: at every
//! crash point of the write path, at a random operation (`abort`, as `kill -9` ends it: no
//! destructor, no checkpoint), or killed from outside at a random instant. Then the store,
//! opened afresh, must hold every acknowledged operation and nothing else (the operation in
//! flight at the crash may or may not be there). A crash during the replay itself is
//! recovered by the next open.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use strata_core::snapshot::Labels;
use strata_core::{Ctx, Kind, Usage};
use strata_meta::{LOG_BYTES_ENV, Store};

/// Set in the child: the store's path.
const CHILD_ENV: &str = "STRATA_META_TEST_CHILD";
/// Set in the child: the workload's seed.
const SEED_ENV: &str = "STRATA_META_TEST_SEED";
/// Set in the child: abort before operation number this (counted from the first).
const ABORT_ENV: &str = "STRATA_META_TEST_ABORT";
/// Set in the child: the store already holds this many of the workload's operations.
const START_ENV: &str = "STRATA_META_TEST_START";
/// A log of 16 blocks: a checkpoint every ~8 batches, a full log now and then.
const SMALL_LOG: &str = "65536";

/// What the model knows of one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: Kind,
    parent: String,
    labels: Labels,
}

type Model = BTreeMap<String, Entry>;

/// One operation of the workload.
#[derive(Debug, Clone)]
enum Op {
    Create {
        kind: Kind,
        key: String,
        parent: String,
        labels: Labels,
    },
    Commit {
        key: String,
        name: String,
        labels: Labels,
    },
    Update {
        key: String,
        labels: Labels,
    },
    Remove {
        key: String,
    },
}

/// A small deterministic generator (no dependency needed for this much randomness).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, keys: &'a [&'a String]) -> Option<&'a String> {
        (!keys.is_empty()).then(|| keys[self.below(keys.len())])
    }
}

/// Labels of operation `i`: sometimes large, so that entries span several blocks.
fn labels_of(rng: &mut Rng, i: usize) -> Labels {
    let mut labels = Labels::new();
    labels.insert("op".to_owned(), i.to_string());
    if rng.below(4) == 0 {
        // Labels are at most 4 KiB each: up to ~9 KiB in three.
        for n in 0..rng.below(4) {
            labels.insert(format!("bulk{n}"), "x".repeat(rng.below(3000)));
        }
    }
    labels
}

/// The `i`th operation, valid against `model`.
fn next_op(rng: &mut Rng, model: &Model, i: usize) -> Op {
    let of = |kind: Kind| -> Vec<&String> {
        model
            .iter()
            .filter(|(_, e)| e.kind == kind)
            .map(|(k, _)| k)
            .collect()
    };
    let has_children = |key: &str| model.values().any(|e| e.parent == key);
    let committed = of(Kind::Committed);
    let active = of(Kind::Active);
    let leaves: Vec<&String> = model.keys().filter(|k| !has_children(k)).collect();
    let all: Vec<&String> = model.keys().collect();
    match rng.below(6) {
        0 | 1 => {}
        2 => {
            if let Some(key) = rng.pick(&active) {
                return Op::Commit {
                    key: key.clone(),
                    name: format!("c{i}"),
                    labels: labels_of(rng, i),
                };
            }
        }
        3 => {
            if let Some(key) = rng.pick(&all) {
                return Op::Update {
                    key: key.clone(),
                    labels: labels_of(rng, i),
                };
            }
        }
        _ => {
            if model.len() > 6
                && let Some(key) = rng.pick(&leaves)
            {
                return Op::Remove { key: key.clone() };
            }
        }
    }
    let parent = if rng.below(2) == 0 {
        rng.pick(&committed).cloned().unwrap_or_default()
    } else {
        String::new()
    };
    let kind = if !parent.is_empty() && rng.below(3) == 0 {
        Kind::View
    } else {
        Kind::Active
    };
    Op::Create {
        kind,
        key: format!("a{i}"),
        parent,
        labels: labels_of(rng, i),
    }
}

fn apply_to_model(model: &mut Model, op: &Op) {
    match op.clone() {
        Op::Create {
            kind,
            key,
            parent,
            labels,
        } => {
            model.insert(
                key,
                Entry {
                    kind,
                    parent,
                    labels,
                },
            );
        }
        Op::Commit { key, name, labels } => {
            let old = model.remove(&key).expect("active in the model");
            model.insert(
                name,
                Entry {
                    kind: Kind::Committed,
                    parent: old.parent,
                    labels,
                },
            );
        }
        Op::Update { key, labels } => {
            model.get_mut(&key).expect("in the model").labels = labels;
        }
        Op::Remove { key } => {
            model.remove(&key);
        }
    }
}

fn apply_to_store(store: &Store, op: &Op) {
    let op = op.clone();
    let ctx = Ctx::background();
    let done = match op {
        Op::Create {
            kind,
            key,
            parent,
            labels,
        } => store.write(&ctx, move |tx| {
            let plan = tx.plan_create(kind, &key, &parent)?;
            tx.create(plan, labels).map(drop)
        }),
        Op::Commit { key, name, labels } => store.write(&ctx, move |tx| {
            let usage = Usage { size: 1, inodes: 1 };
            tx.commit(&key, &name, labels, None, usage, None).map(drop)
        }),
        Op::Update { key, labels } => {
            store.write(&ctx, move |tx| tx.update(&key, &labels, &[]).map(drop))
        }
        Op::Remove { key } => store.write(&ctx, move |tx| tx.remove(&key).map(drop)),
    };
    done.expect("a valid operation succeeds");
}

/// The models after 0, 1, 2, … operations of the workload seeded `seed`.
fn models(seed: u64, ops: usize) -> Vec<Model> {
    let mut rng = Rng(seed);
    let mut model = Model::new();
    let mut all = vec![model.clone()];
    for i in 0..ops {
        let op = next_op(&mut rng, &model, i);
        apply_to_model(&mut model, &op);
        all.push(model.clone());
    }
    all
}

fn contents(store: &Store) -> Model {
    store
        .read(&Ctx::background(), |tx| {
            let mut model = Model::new();
            tx.for_each(&mut |key, record| {
                model.insert(
                    key.to_owned(),
                    Entry {
                        kind: record.kind,
                        parent: record.parent,
                        labels: record.labels,
                    },
                );
                Ok(())
            })?;
            Ok(model)
        })
        .unwrap()
}

/// The child's side: the workload, one line on stdout per acknowledged operation.
fn child(path: &Path) -> ! {
    let seed: u64 = std::env::var(SEED_ENV).unwrap().parse().unwrap();
    let abort_after: Option<usize> = std::env::var(ABORT_ENV).ok().map(|v| v.parse().unwrap());
    let start: usize = std::env::var(START_ENV).map_or(0, |v| v.parse().unwrap());
    let store = Store::open(path).unwrap();
    let mut rng = Rng(seed);
    let mut model = Model::new();
    for i in 0..start {
        let op = next_op(&mut rng, &model, i);
        apply_to_model(&mut model, &op);
    }
    assert_eq!(
        contents(&store),
        model,
        "the store holds the first {start} operations"
    );
    let mut out = std::io::stdout().lock();
    for i in start..start + 400 {
        if abort_after == Some(i) {
            std::process::abort();
        }
        let op = next_op(&mut rng, &model, i);
        apply_to_store(&store, &op);
        apply_to_model(&mut model, &op);
        writeln!(out, "ack {i}").unwrap();
        out.flush().unwrap();
    }
    std::process::abort();
}

/// How a child run ended.
struct Run {
    /// How many of the workload's operations (from the first) are acknowledged.
    acked: usize,
    stderr: String,
}

/// Runs the workload seeded `seed` in a child on the store at `path`, which holds its first
/// `start` operations, with `env`; kills it after `kill_after` if given.
fn run_child(
    test: &str,
    path: &Path,
    seed: u64,
    start: usize,
    env: &[(&str, String)],
    kill_after: Option<Duration>,
) -> Run {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, path)
        .env(SEED_ENV, seed.to_string())
        .env(START_ENV, start.to_string())
        .env(LOG_BYTES_ENV, SMALL_LOG)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let killer = kill_after.map(|after| {
        let pid = child.id();
        std::thread::spawn(move || {
            std::thread::sleep(after);
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        })
    });
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let acked = stdout
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| line.strip_prefix("ack ")?.parse::<usize>().ok())
        .map(|i| i + 1)
        .max()
        .unwrap_or(start);
    let output = child.wait_with_output().unwrap();
    if let Some(killer) = killer {
        killer.join().unwrap();
    }
    assert!(!output.status.success(), "the child must die");
    Run {
        acked,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The store at `path` holds the first `acked` operations, or the first `acked + 1` (the
/// one in flight when the child died).
fn assert_holds(path: &Path, seed: u64, acked: usize, what: &str) {
    let all = models(seed, acked + 1);
    let store = Store::open(path).unwrap();
    let found = contents(&store);
    assert!(
        found == all[acked] || found == all[acked + 1],
        "{what}: after {acked} acknowledged operations the store holds {} snapshots, the model {} (or {})",
        found.len(),
        all[acked].len(),
        all[acked + 1].len()
    );
}

/// A crash at each step of the write path, the checkpoint and the log's reuse: every
/// acknowledged operation survives.
#[test]
fn a_crash_at_every_step_loses_nothing_acknowledged() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        child(Path::new(&path));
    }
    let points = [
        "meta-before-commit",
        "log-after-write",
        "log-after-flush",
        "meta-after-commit",
        "checkpoint-before-commit",
        "checkpoint-after-commit",
    ];
    for (n, point) in points.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.db");
        let seed = 11 + n as u64;
        // Some operations first, then the crash at the point's next passage.
        let warm = run_child(
            "a_crash_at_every_step_loses_nothing_acknowledged",
            &path,
            seed,
            0,
            &[(ABORT_ENV, "30".to_owned())],
            None,
        );
        assert_eq!(warm.acked, 30, "{}", warm.stderr);
        assert_holds(&path, seed, 30, "abort after 30");
        let run = run_child(
            "a_crash_at_every_step_loses_nothing_acknowledged",
            &path,
            seed,
            30,
            &[("STRATA_CRASH_AT", point.to_string())],
            None,
        );
        assert!(
            run.stderr.contains(&format!("crash point {point:?}")),
            "{point} was never reached: {}",
            run.stderr
        );
        assert_holds(&path, seed, run.acked, point);
    }
}

/// A crash in the middle of replaying the log, and just before the replay is durable: the
/// next open replays again, and everything acknowledged is there.
#[test]
fn a_crash_during_replay_is_replayed_again() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        child(Path::new(&path));
    }
    for (n, point) in ["replay-mid", "replay-before-commit"].iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.db");
        let seed = 40 + n as u64;
        let first = run_child(
            "a_crash_during_replay_is_replayed_again",
            &path,
            seed,
            0,
            // A log too large to be checkpointed on the way: all 45 are in it.
            &[
                (ABORT_ENV, "45".to_owned()),
                (LOG_BYTES_ENV, (4u64 << 20).to_string()),
            ],
            None,
        );
        assert_eq!(first.acked, 45);
        let replay = run_child(
            "a_crash_during_replay_is_replayed_again",
            &path,
            seed,
            45,
            &[
                (ABORT_ENV, "45".to_owned()),
                ("STRATA_CRASH_AT", point.to_string()),
            ],
            None,
        );
        assert!(
            replay.stderr.contains(&format!("crash point {point:?}")),
            "{point}: the log had nothing to replay: {}",
            replay.stderr
        );
        assert_eq!(replay.acked, 45);
        assert_holds(&path, seed, 45, point);
    }
}

/// `kill -9` at random instants, many times over one store: every acknowledged operation
/// is there after each, and the store is never left unopenable.
#[test]
fn random_kills_lose_nothing_acknowledged() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        child(Path::new(&path));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(7);
    let mut kills = 0;
    for round in 0..12 {
        // A fresh store per round, so that each round's model starts empty.
        let path = dir.path().join(format!("metadata-{round}.db"));
        let seed = 100 + round;
        let after = Duration::from_millis(20 + rng.below(400) as u64);
        let run = run_child(
            "random_kills_lose_nothing_acknowledged",
            &path,
            seed,
            0,
            &[],
            Some(after),
        );
        if run.acked < 400 {
            kills += 1;
        }
        assert_holds(&path, seed, run.acked, &format!("killed after {after:?}"));
    }
    eprintln!("{kills} kills mid-workload survived");
    assert!(
        kills >= 6,
        "only {kills} of 12 kills landed before the workload's end"
    );
}
