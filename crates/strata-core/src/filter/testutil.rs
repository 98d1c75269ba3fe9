//! The snapshots and helpers the filter tests share: containerd's filter_test corpus,
//! reshaped into snapshots.

use std::time::SystemTime;

use super::{Filter, Operator, Selector};
use crate::snapshot::{Info, Kind};

pub(super) fn info(name: &str, kind: Kind, parent: &str, labels: &[(&str, &str)]) -> Info {
    Info {
        name: name.to_owned(),
        parent: parent.to_owned(),
        kind,
        labels: labels
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        created: SystemTime::UNIX_EPOCH,
        updated: SystemTime::UNIX_EPOCH,
    }
}

/// containerd's filter_test corpus, reshaped into snapshots: unique names, `other` became
/// `parent`, plus kinds and a few labels for the adaptor's own rules.
pub(super) fn fixture() -> Vec<Info> {
    use Kind::*;
    vec![
        info("a1", Committed, "", &[]),
        info("a2", Active, "a1", &[("foo", "true")]),
        info(
            "b1",
            View,
            "a1",
            &[("foo", "present"), ("more complex label", "present")],
        ),
        info(
            "b2",
            Committed,
            "p",
            &[
                ("bar", "true"),
                ("containerd.io/snapshot.ref", "sha256:abc"),
            ],
        ),
        info(
            "c1",
            Active,
            "p",
            &[("more complex label with \\ and \"", "present")],
        ),
        info(
            "c2",
            Active,
            "too complex, yo",
            &[("more complex label with \\ and \".post", "present")],
        ),
        info(
            "d1",
            Committed,
            "abc",
            &[
                ("foo", "omg_asdf.asdf-qwer"),
                ("containerd.io/snapshot.ref", "sha256:def"),
            ],
        ),
        info("e1", View, "p", &[("a.b", "dotted"), ("牛", "moo")]),
    ]
}

pub(super) const ALL: &[&str] = &["a1", "a2", "b1", "b2", "c1", "c2", "d1", "e1"];

pub(super) fn matching(filter: &Filter) -> Vec<String> {
    fixture()
        .into_iter()
        .filter(|i| filter.matches(i))
        .map(|i| i.name)
        .collect()
}

pub(super) fn parse_one(input: &str) -> Filter {
    Filter::parse(input).unwrap_or_else(|e| panic!("{input:?} should parse: {e}"))
}

pub(super) fn check(cases: &[(&str, &[&str])]) {
    for &(input, want) in cases {
        assert_eq!(matching(&parse_one(input)), want, "filter {input:?}");
    }
}

/// The only selector of a one-selector filter.
pub(super) fn only_selector(input: &str) -> Selector {
    let mut filter = parse_one(input);
    assert_eq!(filter.alternatives.len(), 1, "{input:?}");
    let mut conjunction = filter.alternatives.remove(0);
    assert_eq!(conjunction.selectors.len(), 1, "{input:?}");
    conjunction.selectors.remove(0)
}

/// The value of a one-selector `==` or `~=` filter.
pub(super) fn value_of(input: &str) -> String {
    match only_selector(input).operator {
        Operator::Equal(v) | Operator::NotEqual(v) => v,
        Operator::Matches(re) => re.as_str().to_owned(),
        Operator::Present => panic!("{input:?} has no value"),
    }
}
