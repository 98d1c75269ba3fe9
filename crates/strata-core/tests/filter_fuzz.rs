//! The filter parser on arbitrary input (the stable-toolchain twin of the cargo-fuzz target
//! `fuzz/fuzz_targets/filter_parse.rs`): it never panics, it either parses or says why not,
//! and whatever parses can be evaluated.

use std::time::UNIX_EPOCH;

use proptest::prelude::*;
use strata_core::{Filter, Info, Kind};

fn sample() -> Info {
    Info {
        name: "default/1/sha256:abc".into(),
        parent: "base".into(),
        kind: Kind::Committed,
        labels: [(
            "containerd.io/snapshot.ref".to_string(),
            "sha256:abc".to_string(),
        )]
        .into(),
        created: UNIX_EPOCH,
        updated: UNIX_EPOCH,
    }
}

/// What the fuzz target does with one input.
fn exercise(input: &str) {
    match Filter::parse(input) {
        Ok(filter) => {
            let _ = filter.matches(&sample());
            let _ = filter.required_label_equalities();
        }
        Err(e) => assert!(!e.to_string().is_empty(), "an error must say something"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    /// Arbitrary Unicode never panics the parser.
    #[test]
    fn arbitrary_strings(input in "\\PC{0,64}") {
        exercise(&input);
    }

    /// Strings built from the grammar's own alphabet reach deep into the parser.
    #[test]
    fn grammar_alphabet(input in "[a-z.\"/|,=!~ \\\\0-9:^$*()\\[\\]{}+?-]{0,48}") {
        exercise(&input);
    }

    /// Several filters OR-ed behave like the parts.
    #[test]
    fn parse_all(a in "[a-z.=!~,\"]{0,16}", b in "[a-z.=!~,\"]{0,16}") {
        let all = Filter::parse_all(&[a.as_str(), b.as_str()]);
        let each = Filter::parse(&a).is_ok() && Filter::parse(&b).is_ok();
        prop_assert_eq!(all.is_ok(), each);
    }
}

/// Seeds worth keeping: inputs that once needed care (quotes, escapes, regexps, NUL).
#[test]
fn seeds() {
    for input in [
        "",
        " ",
        "labels.\"containerd.io/snapshot.ref\"==sha256:abc,parent==\"base\"",
        "name~=/(/",
        "name~=|[a-z]+|",
        "labels.\"a\\\"b\"==c",
        "name==\"\\xff\"",
        "name==a\0",
        "\u{fffd}",
        ",,,",
        "labels.",
        "kind==active,,kind==view",
    ] {
        exercise(input);
    }
}
