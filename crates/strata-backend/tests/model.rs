//! Property test: random sequences of operations run against Strata's engine (both drivers,
//! in-process, on a real directory and a real store) and against a small in-memory model of
//! containerd's snapshot semantics; every answer must agree — which error, which info, which
//! listing.

use std::collections::BTreeMap;

use proptest::prelude::*;
use std::path::Path;

use strata_backend::btrfs::{Btrfs, BtrfsOptions};
use strata_backend::native::Native;
use strata_backend::overlay::{Overlay, OverlayOptions};
use strata_backend::{Driver, Engine, EngineOptions};
use strata_core::snapshot::Labels;
use strata_core::{Ctx, Error, Filter, Kind, Snapshotter};

/// The context of work no client waits on.
fn bg() -> Ctx {
    Ctx::background()
}

/// The model: containerd's rules, and nothing else.
#[derive(Debug, Default)]
struct Model {
    snapshots: BTreeMap<String, (Kind, String, Labels)>,
}

/// The class of an answer, which is what containerd's clients act on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Ok,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    Info(Kind, String, Labels),
    Names(Vec<String>),
}

fn class(e: &Error) -> Answer {
    match e {
        Error::NotFound { .. } => Answer::NotFound,
        Error::AlreadyExists { .. } => Answer::AlreadyExists,
        Error::FailedPrecondition(_) => Answer::FailedPrecondition,
        Error::InvalidArgument(_) | Error::Filter(_) => Answer::InvalidArgument,
        other => panic!("not a contract error: {other}"),
    }
}

#[derive(Debug, Clone)]
enum Op {
    Prepare(String, String, Labels),
    View(String, String),
    Commit(String, String, Labels),
    Remove(String),
    Stat(String),
    Update(String, Labels, Vec<String>),
    List(String),
}

impl Model {
    fn create(&mut self, kind: Kind, key: &str, parent: &str, labels: &Labels) -> Answer {
        if !parent.is_empty() {
            match self.snapshots.get(parent) {
                None => return Answer::NotFound,
                Some((k, _, _)) if *k != Kind::Committed => return Answer::InvalidArgument,
                _ => {}
            }
        }
        if self.snapshots.contains_key(key) {
            return Answer::AlreadyExists;
        }
        self.snapshots
            .insert(key.into(), (kind, parent.into(), labels.clone()));
        Answer::Ok
    }

    fn apply(&mut self, op: &Op) -> Answer {
        match op {
            Op::Prepare(k, p, l) => self.create(Kind::Active, k, p, l),
            Op::View(k, p) => self.create(Kind::View, k, p, &Labels::new()),
            Op::Commit(name, key, labels) => {
                if self.snapshots.contains_key(name) {
                    return Answer::AlreadyExists;
                }
                let Some((kind, parent, _)) = self.snapshots.get(key).cloned() else {
                    return Answer::NotFound;
                };
                if kind != Kind::Active {
                    return Answer::FailedPrecondition;
                }
                self.snapshots.remove(key);
                self.snapshots
                    .insert(name.clone(), (Kind::Committed, parent, labels.clone()));
                Answer::Ok
            }
            Op::Remove(key) => {
                if !self.snapshots.contains_key(key) {
                    return Answer::NotFound;
                }
                if self.snapshots.values().any(|(_, p, _)| p == key) {
                    return Answer::FailedPrecondition;
                }
                self.snapshots.remove(key);
                Answer::Ok
            }
            Op::Stat(key) => match self.snapshots.get(key) {
                Some((k, p, l)) => Answer::Info(*k, p.clone(), l.clone()),
                None => Answer::NotFound,
            },
            Op::Update(key, labels, paths) => {
                let Some(entry) = self.snapshots.get_mut(key) else {
                    return Answer::NotFound;
                };
                let mut updated = entry.2.clone();
                if paths.is_empty() {
                    updated = labels.clone();
                }
                for path in paths {
                    if let Some(k) = path.strip_prefix("labels.") {
                        match labels.get(k) {
                            Some(v) => updated.insert(k.into(), v.clone()),
                            None => updated.remove(k),
                        };
                    } else if path == "labels" {
                        updated = labels.clone();
                    } else {
                        return Answer::InvalidArgument;
                    }
                }
                entry.2 = updated.clone();
                Answer::Info(entry.0, entry.1.clone(), updated)
            }
            Op::List(filter) => {
                // The model's own reading of the few filter shapes the generator produces.
                let names = self
                    .snapshots
                    .iter()
                    .filter(
                        |(name, (kind, parent, labels))| match filter.split_once("==") {
                            Some(("kind", v)) => kind.as_str() == v,
                            Some(("parent", v)) => parent == v,
                            Some(("labels.x", v)) => labels.get("x").is_some_and(|l| l == v),
                            Some(("name", v)) => name.as_str() == v,
                            _ => true,
                        },
                    )
                    .map(|(n, _)| n.clone())
                    .collect();
                Answer::Names(names)
            }
        }
    }
}

fn run(engine: &dyn Snapshotter, op: &Op) -> Answer {
    let answer = match op {
        Op::Prepare(k, p, l) => engine.prepare(&bg(), k, p, l.clone()).map(|_| Answer::Ok),
        Op::View(k, p) => engine.view(&bg(), k, p, Labels::new()).map(|_| Answer::Ok),
        Op::Commit(name, key, labels) => engine
            .commit(&bg(), name, key, labels.clone(), None)
            .map(|_| Answer::Ok),
        Op::Remove(key) => engine.remove(&bg(), key).map(|_| Answer::Ok),
        Op::Stat(key) => engine
            .stat(&bg(), key)
            .map(|i| Answer::Info(i.kind, i.parent, i.labels)),
        Op::Update(key, labels, paths) => engine
            .update(&bg(), key, labels, paths)
            .map(|i| Answer::Info(i.kind, i.parent, i.labels)),
        Op::List(filter) => {
            let filter = Filter::parse(filter).expect("generated filters are valid");
            let mut names = Vec::new();
            engine
                .walk(&bg(), &filter, &mut |info| {
                    names.push(info.name);
                    Ok(())
                })
                .map(|_| Answer::Names(names))
        }
    };
    answer.unwrap_or_else(|e| class(&e))
}

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c", "d", "e"]).prop_map(String::from)
}

fn parent() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", "", "a", "b", "c", "d", "e"]).prop_map(String::from)
}

fn labels() -> impl Strategy<Value = Labels> {
    prop::collection::btree_map(
        prop::sample::select(vec!["x", "y"]).prop_map(String::from),
        prop::sample::select(vec!["1", "2"]).prop_map(String::from),
        0..3,
    )
}

fn op() -> impl Strategy<Value = Op> {
    let paths = prop::collection::vec(
        prop::sample::select(vec!["labels", "labels.x", "labels.y", "parent"])
            .prop_map(String::from),
        0..3,
    );
    let filters = prop::sample::select(vec![
        "",
        "kind==active",
        "kind==committed",
        "kind==view",
        "parent==a",
        "labels.x==1",
        "name==c",
    ])
    .prop_map(String::from);
    prop_oneof![
        3 => (key(), parent(), labels()).prop_map(|(k, p, l)| Op::Prepare(k, p, l)),
        1 => (key(), parent()).prop_map(|(k, p)| Op::View(k, p)),
        3 => (key(), key(), labels()).prop_map(|(n, k, l)| Op::Commit(n, k, l)),
        2 => key().prop_map(Op::Remove),
        1 => key().prop_map(Op::Stat),
        1 => (key(), labels(), paths).prop_map(|(k, l, p)| Op::Update(k, l, p)),
        1 => filters.prop_map(Op::List),
    ]
}

fn check<D: Driver>(driver: D, ops: &[Op]) -> Result<(), TestCaseError> {
    check_in(&std::env::temp_dir(), driver, ops)
}

fn check_in<D: Driver>(base: &Path, driver: D, ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir_in(base).unwrap();
    let (engine, _) =
        Engine::open(&dir.path().join("root"), driver, EngineOptions::default()).unwrap();
    let mut model = Model::default();
    for (i, op) in ops.iter().enumerate() {
        let want = model.apply(op);
        let got = run(&engine, op);
        prop_assert_eq!(&got, &want, "step {} {:?}", i, op);
    }
    // The census a metrics scrape reads agrees with the model, and its committed usage with
    // the figures Usage answers one by one.
    let census = engine.census(&bg()).unwrap();
    let of_kind = |kind: Kind| {
        model
            .snapshots
            .iter()
            .filter(move |(_, (k, _, _))| *k == kind)
            .map(|(key, _)| key.clone())
    };
    prop_assert_eq!(&census.active, &of_kind(Kind::Active).collect::<Vec<_>>());
    prop_assert_eq!(census.views as usize, of_kind(Kind::View).count());
    prop_assert_eq!(census.committed as usize, of_kind(Kind::Committed).count());
    let mut stored = strata_core::Usage::default();
    for name in of_kind(Kind::Committed) {
        stored.add(engine.usage(&bg(), &name).unwrap());
    }
    prop_assert_eq!(census.committed_usage, stored);
    let report = engine.cleanup(&bg()).unwrap();
    prop_assert!(report.directories as usize <= ops.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// The native engine answers every operation as containerd's model does.
    #[test]
    fn native_agrees_with_the_model(ops in prop::collection::vec(op(), 1..40)) {
        check(Native, &ops)?;
    }

    /// The overlay engine answers every operation as containerd's model does.
    #[test]
    fn overlay_agrees_with_the_model(ops in prop::collection::vec(op(), 1..40)) {
        check(Overlay::with_options(OverlayOptions::default()), &ops)?;
    }
}

/// The btrfs engine answers every operation as containerd's model does, on a loop btrfs
/// (needs root, as the other btrfs tests).
#[test]
fn btrfs_agrees_with_the_model() {
    let fs = strata_sys::testing::LoopBtrfs::new(512 << 20);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    });
    let result = runner.run(&prop::collection::vec(op(), 1..40), |ops| {
        let root = tempfile::tempdir_in(fs.path()).unwrap();
        let driver = Btrfs::new(root.path(), BtrfsOptions::default()).unwrap();
        check_in(root.path(), driver, &ops)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
