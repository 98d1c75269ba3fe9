//! containerd's filter language, as `ctr snapshots ls` and the snapshots `List` RPC speak it.
//!
//! This is a port of containerd 1.6.20's `filters` package together with
//! `snapshots/storage.adaptSnapshot`, which decides what a field path means for a snapshot.
//!
//! A filter string is a comma-separated list of selectors that must all hold; several filter
//! strings are alternatives, any of which may hold. A selector is
//! `<fieldpath>[<operator><value>]`:
//!
//! - the field path is fields separated by `.`, each either a bare word of ASCII letters,
//!   digits and `_`, or a `"`-quoted Go string (`labels."containerd.io/snapshot.ref"`);
//! - the operator is `==`, `!=` or `~=` (a regular expression searched for in the value);
//!   without one, the selector only asks for the field to be present;
//! - the value is a `"`-quoted Go string or a bare run of printable characters up to the next
//!   `,` or blank (`sha256:abc`, `a/b.c-d`, `x==y` are all single values), except that it may
//!   not start with `.`, `,`, `=`, `!`, `~` or a quote: `name~=.*` is an error, `name~=/.*/`
//!   is not. A `~=` value may also be quoted with `/…/` or `|…|`, so that a regular expression
//!   can hold `,` or blanks. `'` is no quote: `name=='x'` compares with `'x'`, quotes included.
//!
//! Blanks may start a filter string and surround operators and follow commas; anywhere else
//! (after a value, before a comma) they are an error.
//!
//! For a snapshot, `kind`, `name` and `parent` are always present (an empty parent is the empty
//! string, not an absent field) and `labels.<key>` is present when the label is set, `<key>`
//! being the rest of the path joined with `.`, so `labels.a.b` and `labels."a.b"` are the same
//! label. Anything else is absent. `==` needs the field present, but `!=` and `~=` compare an
//! absent field as the empty string: `labels.x!=y` selects the snapshots without label `x` too.
//!
//! Differences from containerd:
//!
//! - a `~=` value that is not a valid regular expression is a parse error here, where
//!   containerd accepts the filter and then matches nothing with that selector;
//! - quoted escapes spelling bytes that are not UTF-8 (`"\xff"`) are a parse error, where
//!   containerd keeps the raw bytes, which no label or name can equal;
//! - both are reported only once the whole string has parsed, so a string containerd rejects
//!   is rejected with containerd's message and position;
//! - regular expressions are compiled by the `regex` crate. Its syntax is RE2's, like Go's, but
//!   it also accepts `\u`/`\U` escapes, `(?x)`, `(?<name>…)`, nested and set-operation classes,
//!   and rejects a `{` that starts no repetition (literal in Go); its `\d`, `\w`, `\s` and
//!   `\b` are Unicode-aware where Go's are ASCII-only.
//!
//! The code is split as containerd splits its `filters` package: `scanner` (tokens), `parser`
//! (the grammar and its error messages), `quote` (Go string literals) and `eval` (what a parsed
//! filter selects, with `adaptSnapshot`'s rules for snapshot fields).

mod eval;
mod parser;
mod quote;
mod scanner;
#[cfg(test)]
mod testutil;

use regex::Regex;

/// Why a filter string was rejected.
///
/// The message is containerd's: it points at the offending character as
/// `[before >|here|< after]`, or shows the whole input when the problem is at its end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(pub String);

/// A parsed set of filter strings: it matches a snapshot when any alternative does.
#[derive(Debug, Clone)]
pub struct Filter {
    /// One alternative per filter string; an empty list matches everything.
    pub alternatives: Vec<Conjunction>,
}

/// One filter string: it matches a snapshot when every selector does.
#[derive(Debug, Clone)]
pub struct Conjunction {
    /// The comma-separated selectors; an empty list matches everything.
    pub selectors: Vec<Selector>,
}

/// One `<fieldpath>[<operator><value>]` test.
#[derive(Debug, Clone)]
pub struct Selector {
    /// The path, each part already unquoted: `labels."a.b"` is `["labels", "a.b"]`.
    pub fieldpath: Vec<String>,
    /// What the value at that path must satisfy.
    pub operator: Operator,
}

/// The test a selector applies to the value at its field path.
#[derive(Debug, Clone)]
pub enum Operator {
    /// No operator: the field must be present.
    Present,
    /// `==`: the field must be present and equal to the value.
    Equal(String),
    /// `!=`: the field's value, taken as the empty string when absent, must differ from this.
    NotEqual(String),
    /// `~=`: the expression must match somewhere in the field's value, taken as the empty
    /// string when absent.
    Matches(Regex),
}

impl Filter {
    /// The filter that matches every snapshot.
    pub fn always() -> Filter {
        Filter {
            alternatives: Vec::new(),
        }
    }

    /// Parses one filter string; the empty string matches everything.
    pub fn parse(s: &str) -> Result<Filter, FilterError> {
        Ok(Filter::from_alternatives(vec![parser::conjunction(s)?]))
    }

    /// Parses several filter strings into a filter matching what any of them matches; no
    /// strings at all match everything. The first malformed string is the error.
    pub fn parse_all<S: AsRef<str>>(filters: &[S]) -> Result<Filter, FilterError> {
        let alternatives = filters
            .iter()
            .map(|s| parser::conjunction(s.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Filter::from_alternatives(alternatives))
    }

    fn from_alternatives(alternatives: Vec<Conjunction>) -> Filter {
        // An alternative that lets everything through makes the others moot; folding it into
        // the canonical form keeps `alternatives` meaningful to planners like
        // `required_label_equalities`.
        if alternatives.iter().any(Conjunction::is_always) {
            Filter::always()
        } else {
            Filter { alternatives }
        }
    }
}
