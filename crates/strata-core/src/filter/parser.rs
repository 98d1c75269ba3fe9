//! The grammar of a filter string, a recursive-descent parser over the [`Scanner`]'s tokens
//! that mirrors containerd's `filters/parser.go`, down to its error messages and positions.

use std::fmt;

use regex::RegexBuilder;

use super::quote::unquote;
use super::scanner::{Rune, Scanner, TokenKind};
use super::{Conjunction, FilterError, Operator, Selector};

/// Parses one filter string into its selectors.
pub(super) fn conjunction(input: &str) -> Result<Conjunction, FilterError> {
    // Only the truly empty string is "everything": containerd rejects one made of blanks.
    if input.is_empty() {
        return Ok(Conjunction {
            selectors: Vec::new(),
        });
    }
    let selectors = Parser::new(input).selectors()?;
    Ok(Conjunction { selectors })
}

/// The operators a selector can carry, before its value is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Equal,
    NotEqual,
    Matches,
}

/// A recursive-descent parser over [`Scanner`], mirroring containerd's `parser`.
struct Parser<'a> {
    input: &'a str,
    scanner: Scanner<'a>,
    /// The first problem with input that containerd would accept (a regexp `regex` rejects, an
    /// escape that is not UTF-8). It is reported only once the whole string has parsed, so
    /// that every string containerd rejects gets containerd's message.
    deferred: Option<FilterError>,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        Parser {
            input,
            scanner: Scanner::new(input),
            deferred: None,
        }
    }

    fn selectors(&mut self) -> Result<Vec<Selector>, FilterError> {
        let mut selectors = vec![self.selector()?];
        loop {
            match self.scanner.peek() {
                Rune::Char(',') => {
                    self.scanner.scan();
                    selectors.push(self.selector()?);
                }
                Rune::Eof => break,
                Rune::Char(c) => {
                    return Err(self.error(self.scanner.ppos, format!("unexpected input: {c}")));
                }
                Rune::Illegal => {
                    let msg = format!("unexpected input: {}", self.scanner.error_message());
                    return Err(self.error(self.scanner.ppos, msg));
                }
            }
        }
        match self.deferred.take() {
            Some(err) => Err(err),
            None => Ok(selectors),
        }
    }

    fn selector(&mut self) -> Result<Selector, FilterError> {
        let fieldpath = self.fieldpath()?;
        // Blanks are not skipped by this look-ahead, so `name ,x` is an error, as in containerd.
        if matches!(self.scanner.peek(), Rune::Char(',') | Rune::Eof) {
            return Ok(Selector {
                fieldpath,
                operator: Operator::Present,
            });
        }
        let op = self.operator()?;
        let (pos, value) = self.value(op == Op::Matches)?;
        let operator = match op {
            Op::Equal => Operator::Equal(value),
            Op::NotEqual => Operator::NotEqual(value),
            // Go's regexp syntax has octal escapes (`\012`), which `regex` only takes on request.
            Op::Matches => match RegexBuilder::new(&value).octal(true).build() {
                Ok(re) => Operator::Matches(re),
                Err(err) => {
                    let msg = format!("invalid regexp {value:?}: {}", regex_error_summary(&err));
                    self.defer(pos, msg);
                    // Never seen: the deferred error fails the parse.
                    Operator::Present
                }
            },
        };
        Ok(Selector {
            fieldpath,
            operator,
        })
    }

    fn defer(&mut self, pos: usize, msg: String) {
        if self.deferred.is_none() {
            self.deferred = Some(self.error(pos, msg));
        }
    }

    fn fieldpath(&mut self) -> Result<Vec<String>, FilterError> {
        let mut fields = vec![self.field()?];
        while self.scanner.peek() == Rune::Char('.') {
            self.scanner.scan();
            fields.push(self.field()?);
        }
        Ok(fields)
    }

    fn field(&mut self) -> Result<String, FilterError> {
        let token = self.scanner.scan();
        match token.kind {
            TokenKind::Field(text) => Ok(text.to_owned()),
            TokenKind::Quoted(text) => self.unquote(token.pos, text, false),
            TokenKind::Illegal => Err(self.scanner_error(token.pos)),
            _ => Err(self.error(token.pos, "expected field or quoted")),
        }
    }

    fn operator(&mut self) -> Result<Op, FilterError> {
        let token = self.scanner.scan();
        match token.kind {
            TokenKind::Operator("==") => Ok(Op::Equal),
            TokenKind::Operator("!=") => Ok(Op::NotEqual),
            TokenKind::Operator("~=") => Ok(Op::Matches),
            TokenKind::Operator(text) => {
                Err(self.error(token.pos, format!("unsupported operator {text:?}")))
            }
            TokenKind::Illegal => Err(self.scanner_error(token.pos)),
            _ => Err(self.error(token.pos, r#"expected an operator ("=="|"!="|"~=")"#)),
        }
    }

    /// The value and where it starts.
    fn value(&mut self, allow_alt_quotes: bool) -> Result<(usize, String), FilterError> {
        let token = self.scanner.scan();
        let value = match token.kind {
            TokenKind::Value(text) | TokenKind::Field(text) => text.to_owned(),
            TokenKind::Quoted(text) => self.unquote(token.pos, text, allow_alt_quotes)?,
            TokenKind::Illegal => return Err(self.scanner_error(token.pos)),
            _ => return Err(self.error(token.pos, "expected value or quoted")),
        };
        Ok((token.pos, value))
    }

    fn unquote(&mut self, pos: usize, text: &str, alt_quotes: bool) -> Result<String, FilterError> {
        if !alt_quotes && !text.starts_with('"') {
            return Err(self.error(pos, "invalid quote encountered"));
        }
        let bytes =
            unquote(text).map_err(|msg| self.error(pos, format!("unquoting failed: {msg}")))?;
        Ok(String::from_utf8(bytes).unwrap_or_else(|err| {
            self.defer(
                pos,
                "unquoting failed: escapes do not spell valid UTF-8".to_owned(),
            );
            String::from_utf8_lossy(err.as_bytes()).into_owned()
        }))
    }

    fn scanner_error(&self, pos: usize) -> FilterError {
        self.error(pos, self.scanner.error_message())
    }

    fn error(&self, pos: usize, msg: impl fmt::Display) -> FilterError {
        let input = self.input;
        let location = match input.get(pos..).and_then(|rest| rest.chars().next()) {
            Some(c) => {
                let after = &input[pos + c.len_utf8()..];
                format!("{} >|{c}|< {after}", &input[..pos])
            }
            None => input.to_owned(),
        };
        FilterError(format!("filters: parse error: [{location}]: {msg}"))
    }
}

/// The gist of a `regex` error (its last line); the full text spans several lines.
fn regex_error_summary(err: &regex::Error) -> String {
    let text = err.to_string();
    let last = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or_default();
    last.strip_prefix("error: ").unwrap_or(last).to_owned()
}

#[cfg(test)]
mod tests {
    use super::super::Filter;
    use super::super::testutil::*;
    use super::*;

    /// Malformed filters are errors, never silently "match all" or "match none".
    #[test]
    fn malformed_filters_are_rejected() {
        let cases = [
            "labels.|foo|==omg_asdf.asdf-qwer",
            r#"labels.?"more complex label with \\ and \"".post==present"#,
            "name==foo,",
            "labels.",
            "image~=,id?=?fbaq",
            "labels.ns/key==value",
            "labels.key==/value",
            "name==",
            "name~=",
            "name==/a/",
            "name!=|a|",
            "name=foo",
            "name===foo",
            "name!foo",
            "name~~foo",
            "==foo",
            ",name",
            "name,,kind",
            "name.==x",
            "name==foo bar",
            "name==foo ",
            "name ",
            "name ,kind",
            " ",
            "name==\"abc",
            "labels.\"a\nb\"==x",
            r#"labels."\g""#,
            r#"labels."\xaz""#,
            r#"name=="\""#,
            r#"name=="a\'b""#,
            r#"name~=/a\"b/"#,
            r#"name=="\777""#,
            r#"name=="\U00110000""#,
            r#"name=="\xff""#,
            r#"labels."a"b==x"#,
            "labels.foo-bar==x",
            "labels.牛==moo",
            "labels.foo:bar",
            "name==a\0",
            "na\0me",
            "name==\u{FFFD}",
            "name~=(",
            "name~=[a-",
            "name~=.*",
            "name~=,",
            "name~=/a{2,1}/",
            "name==a\u{200B}",
        ];
        for input in cases {
            let err = Filter::parse(input).expect_err(input);
            assert!(
                err.0.starts_with("filters: parse error: ["),
                "{input:?}: {err}"
            );
            let err = Filter::parse_all(&["name", input]).expect_err(input);
            assert!(
                err.0.starts_with("filters: parse error: ["),
                "{input:?}: {err}"
            );
        }
    }

    /// Error messages point where containerd's do (strings from its filter_test).
    #[test]
    fn error_messages_match_containerd() {
        let cases = [
            (
                "labels.|foo|==omg_asdf.asdf-qwer",
                "filters: parse error: [labels. >|||< foo|==omg_asdf.asdf-qwer]: \
                 invalid quote encountered",
            ),
            (
                r#"labels.?"more complex label with \\ and \"".post==present"#,
                r#"filters: parse error: [labels. >|?|< "more complex label with \\ and \"".post==present]: expected field or quoted"#,
            ),
            (
                "name==foo,",
                "filters: parse error: [name==foo,]: expected field or quoted",
            ),
            (
                "labels.",
                "filters: parse error: [labels.]: expected field or quoted",
            ),
            (
                "image~=,id?=?fbaq",
                "filters: parse error: [image~= >|,|< id?=?fbaq]: expected value or quoted",
            ),
            (
                "labels.ns/key==value",
                "filters: parse error: [labels.ns >|/|< key==value]: quoted literal not terminated",
            ),
            (
                "labels.key==/value",
                "filters: parse error: [labels.key== >|/|< value]: quoted literal not terminated",
            ),
            (
                "name=foo",
                "filters: parse error: [name >|=|< foo]: unsupported operator \"=\"",
            ),
            (
                "name==a b",
                "filters: parse error: [name==a >| |< b]: unexpected input:  ",
            ),
            (
                r#"labels."\g""#,
                r#"filters: parse error: [labels. >|"|< \g"]: illegal escape sequence"#,
            ),
            (
                r#"labels."\xaz""#,
                r#"filters: parse error: [labels. >|"|< \xaz"]: illegal numeric escape sequence"#,
            ),
            (
                "na\0me",
                "filters: parse error: [na >|\0|< me]: unexpected null",
            ),
            (
                "name==a\0",
                "filters: parse error: [name==a >|\0|< ]: unexpected input: unexpected null",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(Filter::parse(input).unwrap_err().0, want, "{input:?}");
        }
        // Our extra rejections wait for the grammar, so containerd's message wins.
        for (input, want) in [
            (
                r#"name~=(,kind=x"#,
                "[name~=(,kind >|=|< x]: unsupported operator \"=\"",
            ),
            (
                r#"name=="\xff",kind,"#,
                "[name==\"\\xff\",kind,]: expected field or quoted",
            ),
            (
                r#"name=="\xff",name~=("#,
                "[name== >|\"|< \\xff\",name~=(]: unquoting failed",
            ),
            (
                r#"name~=(,name~=)"#,
                "[name~= >|(|< ,name~=)]: invalid regexp \"(\"",
            ),
        ] {
            let err = Filter::parse(input).unwrap_err().0;
            assert!(
                err.starts_with(&format!("filters: parse error: {want}")),
                "{input:?}: {err}"
            );
        }
        let err = Filter::parse("name~=(").unwrap_err().0;
        assert!(err.starts_with("filters: parse error: [name~= >|(|< ]: invalid regexp \"(\": "));
        assert!(!err.contains('\n'), "{err:?}");
    }

    /// Unquoted values run to the next `,` or blank and take any printable character, so
    /// digests, paths and even operators need no quotes; `'` is not a quote.
    #[test]
    fn unquoted_value_characters() {
        let cases = [
            ("name==sha256:abc", "sha256:abc"),
            ("name==a/b", "a/b"),
            ("name==a.b-c_d", "a.b-c_d"),
            ("name==a==b", "a==b"),
            ("name==a\"b", "a\"b"),
            ("name==a|b~=!c", "a|b~=!c"),
            ("name=='a1'", "'a1'"),
            ("name==`x`", "`x`"),
            ("name==牛", "牛"),
            ("name==é\u{301}", "é\u{301}"),
            ("name~=[abc]\\+", "[abc]\\+"),
            ("name == a1", "a1"),
            ("name==\u{1}x", "\u{1}x"),
        ];
        for (input, want) in cases {
            assert_eq!(value_of(input), want, "{input:?}");
        }
        assert!(matching(&parse_one("name=='a1'")).is_empty());
    }

    /// Blanks may lead a filter and surround operators and follow commas, nothing else.
    #[test]
    fn blanks() {
        check(&[
            ("  name==a1", &["a1"]),
            ("name == a1", &["a1"]),
            ("name\t==\ta1", &["a1"]),
            ("name==a1, kind==committed", &["a1"]),
            ("name==a1,\u{3000}name", &["a1"]),
        ]);
        for input in ["name==a1 ", "name ,kind", "name==a1\n", "name==a1 ,kind"] {
            assert!(Filter::parse(input).is_err(), "{input:?}");
        }
    }

    /// Quoted strings decode Go escapes; `/…/` and `|…|` are for `~=` values only and escape
    /// their own quote.
    #[test]
    fn quoted_strings() {
        let cases = [
            (r#"name=="\x41\u00e9\101\t\\\"""#, "A\u{e9}A\t\\\""),
            (r#"name=="\a\b\f\n\r\v""#, "\u{7}\u{8}\u{c}\n\r\u{b}"),
            (r#"name=="\xc3\xa9""#, "é"),
            (r#"name=="\U0001F600""#, "😀"),
            (r#"name=="\ud800""#, "\u{FFFD}"),
            (r#"name=="\000""#, "\0"),
            (r#"name=="a,b c""#, "a,b c"),
            ("name==\"\"", ""),
            (r#"name~=/a\/b/"#, "a/b"),
            (r#"name~=/a"b/"#, "a\"b"),
            (r#"name~=|a/b,c|"#, "a/b,c"),
            (r#"name~=|a\|b|"#, "a|b"),
            (r#"name~="a|b""#, "a|b"),
        ];
        for (input, want) in cases {
            assert_eq!(value_of(input), want, "{input:?}");
        }
    }

    /// The parse tree: unquoted path parts, one selector per comma, one alternative per string.
    #[test]
    fn parse_tree() {
        let filter = parse_one(r#"labels."a.b".c==v, name,kind!=view,parent~=^x"#);
        let selectors = &filter.alternatives[0].selectors;
        let paths: Vec<_> = selectors.iter().map(|s| s.fieldpath.join("/")).collect();
        assert_eq!(paths, ["labels/a.b/c", "name", "kind", "parent"]);
        assert!(matches!(&selectors[0].operator, Operator::Equal(v) if v == "v"));
        assert!(matches!(selectors[1].operator, Operator::Present));
        assert!(matches!(&selectors[2].operator, Operator::NotEqual(v) if v == "view"));
        assert!(matches!(&selectors[3].operator, Operator::Matches(re) if re.as_str() == "^x"));
    }
}
