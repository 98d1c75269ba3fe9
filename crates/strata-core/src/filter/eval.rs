//! What a parsed filter selects: containerd's `filter.go` (`Match` of selectors, `All`,
//! `Any`) and `snapshots/storage.adaptSnapshot`, which says what a field path means for a
//! snapshot.

use super::{Conjunction, Filter, Operator, Selector};
use crate::snapshot::Info;

impl Filter {
    /// Whether `info` passes the filter.
    pub fn matches(&self, info: &Info) -> bool {
        self.alternatives.is_empty() || self.alternatives.iter().any(|c| c.matches(info))
    }

    /// Whether the filter lets every snapshot through, so that callers can skip matching.
    pub fn is_always(&self) -> bool {
        self.alternatives.is_empty() || self.alternatives.iter().any(Conjunction::is_always)
    }

    /// If every alternative requires `labels.<key> == value` for some label, returns one such
    /// `(key, value)` pair per alternative, in order; otherwise `None`.
    ///
    /// A snapshot can only match the filter if it carries one of these labels, so a label index
    /// can produce the candidates, which must still go through [`Filter::matches`].
    pub fn required_label_equalities(&self) -> Option<Vec<(String, String)>> {
        if self.is_always() {
            return None;
        }
        self.alternatives
            .iter()
            .map(Conjunction::label_equality)
            .collect()
    }
}

impl Conjunction {
    /// Whether `info` passes every selector.
    pub fn matches(&self, info: &Info) -> bool {
        self.selectors.iter().all(|s| s.matches(info))
    }

    pub(super) fn is_always(&self) -> bool {
        self.selectors.is_empty()
    }

    fn label_equality(&self) -> Option<(String, String)> {
        self.selectors
            .iter()
            .find_map(|s| match (s.fieldpath.split_first(), &s.operator) {
                (Some((first, key)), Operator::Equal(value)) if first == "labels" => {
                    Some((key.join("."), value.clone()))
                }
                _ => None,
            })
    }
}

impl Selector {
    /// Whether `info` passes this selector, with containerd's treatment of absent fields.
    pub fn matches(&self, info: &Info) -> bool {
        let value = snapshot_field(info, &self.fieldpath);
        match &self.operator {
            Operator::Present => value.is_some(),
            Operator::Equal(want) => value == Some(want.as_str()),
            // containerd compares the zero value of an absent field, so `labels.x!=y` selects
            // the snapshots without label `x` too, and a regexp may match an absent field.
            Operator::NotEqual(unwanted) => value.unwrap_or_default() != unwanted,
            Operator::Matches(re) => re.is_match(value.unwrap_or_default()),
        }
    }
}

/// The value at `fieldpath` in `info`, if present: containerd's `adaptSnapshot`.
fn snapshot_field<'a>(info: &'a Info, fieldpath: &[String]) -> Option<&'a str> {
    let (first, rest) = fieldpath.split_first()?;
    // Extra path parts after a scalar field are ignored, as containerd does.
    match first.as_str() {
        "kind" => Some(info.kind.as_str()),
        "name" => Some(&info.name),
        "parent" => Some(&info.parent),
        "labels" => info.labels.get(&rest.join(".")).map(String::as_str),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    /// containerd's TestFilters cases that apply to snapshots still select the same items.
    #[test]
    fn containerd_filter_cases() {
        check(&[
            ("", ALL),
            ("name", ALL),
            ("labels.foo", &["a2", "b1", "d1"]),
            ("labels.foo,name", &["a2", "b1", "d1"]),
            ("labels.foo==true", &["a2"]),
            ("labels.foo==omg_asdf.asdf-qwer", &["d1"]),
            ("name==b2", &["b2"]),
            ("name!=b2", &["a1", "a2", "b1", "c1", "c2", "d1", "e1"]),
            ("name==b2,labels.bar", &["b2"]),
            ("parent==\"too complex, yo\"", &["c2"]),
            ("parent~=[abc]+,name!=d1", &["a2", "b1", "c2"]),
            ("parent~=/[abc]+/,name!=d1", &["a2", "b1", "c2"]),
            ("parent~=/[abc]{1,2}/,name!=d1", &["a2", "b1", "c2"]),
            ("parent~=/[abc]{0,1}\"\\//,name!=d1", &[]),
            ("name==b2,labels.bar==true", &["b2"]),
            ("name==b2,labels.bar==wrong", &[]),
            (r#"name==b1,labels."more complex label""#, &["b1"]),
            (
                r#"labels."more complex label with \\ and \""==present"#,
                &["c1"],
            ),
            (
                r#"labels."more complex label with \\ and \"".post==present"#,
                &["c2"],
            ),
        ]);
    }

    /// `kind`, `name` and `parent` follow adaptSnapshot: always present, even when empty.
    #[test]
    fn snapshot_fields() {
        check(&[
            ("kind", ALL),
            ("parent", ALL),
            ("parent==\"\"", &["a1"]),
            ("parent==a1", &["a2", "b1"]),
            ("kind==committed", &["a1", "b2", "d1"]),
            ("kind==view", &["b1", "e1"]),
            ("kind!=active", &["a1", "b1", "b2", "d1", "e1"]),
            ("name.anything==a1", &["a1"]),
            ("other", &[]),
            ("other!=x", ALL),
            ("created", &[]),
        ]);
    }

    /// Label keys are the rest of the path joined with `.`, quoted or not; a bare `labels`
    /// names the empty key, which no snapshot has.
    #[test]
    fn label_paths() {
        check(&[
            ("labels", &[]),
            ("labels.a.b==dotted", &["e1"]),
            (r#"labels."a.b"==dotted"#, &["e1"]),
            (r#"labels.a."b"==dotted"#, &["e1"]),
            (r#"labels."牛"==moo"#, &["e1"]),
            (r#"labels."containerd.io/snapshot.ref""#, &["b2", "d1"]),
        ]);
    }

    /// The quoted label key case the containerd client sends for remote snapshotters.
    #[test]
    fn quoted_label_key_with_parent() {
        check(&[
            (
                r#"labels."containerd.io/snapshot.ref"==sha256:abc,parent==p"#,
                &["b2"],
            ),
            (
                r#"labels."containerd.io/snapshot.ref"==sha256:def,parent==p"#,
                &[],
            ),
            (
                r#"labels."containerd.io/snapshot.ref"~=^sha256:"#,
                &["b2", "d1"],
            ),
        ]);
    }

    /// `~=` searches unanchored unless the expression anchors itself.
    #[test]
    fn regexp_matches() {
        check(&[
            ("name~=^a", &["a1", "a2"]),
            ("name~=1$", &["a1", "b1", "c1", "d1", "e1"]),
            ("name~=a,parent==a1", &["a2"]),
            ("name~=|^[ab]2$|", &["a2", "b2"]),
            ("name~=\"^(a1|e1)$\"", &["a1", "e1"]),
            ("labels.foo~=r", &["a2", "b1", "d1"]),
        ]);
    }

    /// A bare field path tests presence only.
    #[test]
    fn presence() {
        check(&[
            ("labels.foo", &["a2", "b1", "d1"]),
            ("labels.bar", &["b2"]),
            ("labels.foo,labels.bar", &[]),
            ("labels.missing", &[]),
        ]);
    }

    /// containerd compares an absent field's empty value: `!=` and `~=` can select snapshots
    /// that lack the field, `==` cannot.
    #[test]
    fn absent_fields_compare_as_empty() {
        check(&[
            (
                "labels.foo!=true",
                &["a1", "b1", "b2", "c1", "c2", "d1", "e1"],
            ),
            ("labels.foo!=\"\"", &["a2", "b1", "d1"]),
            ("labels.foo==\"\"", &[]),
            ("labels.foo~=^$", &["a1", "b2", "c1", "c2", "e1"]),
            ("labels.missing~=/.*/", ALL),
        ]);
    }

    /// Several filter strings are alternatives; none at all, or an empty one, match everything.
    #[test]
    fn parse_all_is_an_or() {
        let either = Filter::parse_all(&["name==a1", "kind==view"]).unwrap();
        assert_eq!(either.alternatives.len(), 2);
        assert_eq!(matching(&either), ["a1", "b1", "e1"]);

        let owned = vec![String::from("labels.bar"), String::from("name~=^c")];
        assert_eq!(
            matching(&Filter::parse_all(&owned).unwrap()),
            ["b2", "c1", "c2"]
        );

        let none = Filter::parse_all::<&str>(&[]).unwrap();
        assert!(none.is_always());
        assert_eq!(matching(&none), ALL);

        let with_empty = Filter::parse_all(&["name==a1", ""]).unwrap();
        assert!(with_empty.is_always());
        assert_eq!(matching(&with_empty), ALL);

        let err = Filter::parse_all(&["name==a1", "name=="]).unwrap_err();
        assert_eq!(
            err.0,
            "filters: parse error: [name==]: expected value or quoted"
        );
    }

    /// Only the truly empty string is the match-everything filter.
    #[test]
    fn empty_filter() {
        let empty = Filter::parse("").unwrap();
        assert!(empty.is_always());
        assert!(empty.alternatives.is_empty());
        assert_eq!(matching(&empty), ALL);
        assert!(Filter::always().is_always());
        assert!(!parse_one("name").is_always());
        let unparsed = Filter {
            alternatives: vec![Conjunction {
                selectors: Vec::new(),
            }],
        };
        assert!(unparsed.is_always());
        assert_eq!(matching(&unparsed), ALL);
        assert!(Filter::parse(" ").is_err());
    }

    /// A label-index plan is offered exactly when every alternative pins a label value.
    #[test]
    fn required_label_equalities() {
        let pairs = |input: &[&str]| {
            Filter::parse_all(input)
                .unwrap()
                .required_label_equalities()
        };
        let owned = |v: &[(&str, &str)]| -> Option<Vec<(String, String)>> {
            Some(
                v.iter()
                    .map(|&(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            )
        };
        assert_eq!(pairs(&["labels.a==1"]), owned(&[("a", "1")]));
        assert_eq!(
            pairs(&["name==x,labels.a==1,labels.b==2"]),
            owned(&[("a", "1")])
        );
        assert_eq!(pairs(&["labels.x.y==v"]), owned(&[("x.y", "v")]));
        assert_eq!(
            pairs(&["labels.a==1", r#"kind==view,labels."b.c"==2"#]),
            owned(&[("a", "1"), ("b.c", "2")])
        );
        for none in [
            &["labels.a==1", "name==x"][..],
            &["labels.a"],
            &["labels.a!=1"],
            &["labels.a~=1"],
            &["name==labels"],
            &["labels.a==1", ""],
            &[""],
            &[],
        ] {
            assert_eq!(pairs(none), None, "{none:?}");
        }
        assert_eq!(Filter::always().required_label_equalities(), None);

        // Soundness: whatever matches carries one of the pinned labels.
        for input in [
            &[
                r#"labels."containerd.io/snapshot.ref"==sha256:abc"#,
                "labels.foo==true",
            ][..],
            &["labels.foo==present,name~=b"],
        ] {
            let filter = Filter::parse_all(input).unwrap();
            let pinned = filter.required_label_equalities().unwrap();
            for info in fixture().iter().filter(|i| filter.matches(i)) {
                assert!(
                    pinned.iter().any(|(k, v)| info.labels.get(k) == Some(v)),
                    "{input:?}"
                );
            }
        }
    }
}
