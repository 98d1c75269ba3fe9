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

use std::fmt;
use std::sync::LazyLock;

use regex::{Regex, RegexBuilder};

use crate::snapshot::Info;

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
        Ok(Filter::from_alternatives(vec![Conjunction::parse(s)?]))
    }

    /// Parses several filter strings into a filter matching what any of them matches; no
    /// strings at all match everything. The first malformed string is the error.
    pub fn parse_all<S: AsRef<str>>(filters: &[S]) -> Result<Filter, FilterError> {
        let alternatives = filters
            .iter()
            .map(|s| Conjunction::parse(s.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Filter::from_alternatives(alternatives))
    }

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

impl Conjunction {
    /// Whether `info` passes every selector.
    pub fn matches(&self, info: &Info) -> bool {
        self.selectors.iter().all(|s| s.matches(info))
    }

    fn is_always(&self) -> bool {
        self.selectors.is_empty()
    }

    fn parse(input: &str) -> Result<Conjunction, FilterError> {
        // Only the truly empty string is "everything": containerd rejects one made of blanks.
        if input.is_empty() {
            return Ok(Conjunction {
                selectors: Vec::new(),
            });
        }
        let selectors = Parser::new(input).selectors()?;
        Ok(Conjunction { selectors })
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

/// What the scanner reads next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rune {
    Char(char),
    Eof,
    /// A character the grammar never allows; the scanner has recorded why.
    Illegal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenKind<'a> {
    Eof,
    /// A quoted string, quotes and escapes included.
    Quoted(&'a str),
    /// A bare value after an operator.
    Value(&'a str),
    /// A bare field name.
    Field(&'a str),
    /// `,` or `.`.
    Separator,
    /// A run of `=`, `!` and `~`; only three of them are operators.
    Operator(&'a str),
    Illegal,
    /// Any other character, which no rule accepts.
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    /// Byte offset of the token's first character.
    pos: usize,
    kind: TokenKind<'a>,
}

/// containerd's filter tokenizer.
///
/// It is modal: after an operator, a bare word is a value and may hold almost any printable
/// character; everywhere else it is a field and may hold only `[A-Za-z0-9_]`.
struct Scanner<'a> {
    input: &'a str,
    /// Offset of the character `next` returned last.
    pos: usize,
    /// Offset just past it.
    ppos: usize,
    /// Whether a bare word is a value rather than a field.
    value: bool,
    /// The first problem met, which containerd reports for every later illegal token too.
    err: Option<&'static str>,
}

impl<'a> Scanner<'a> {
    fn new(input: &'a str) -> Self {
        Scanner {
            input,
            pos: 0,
            ppos: 0,
            value: false,
            err: None,
        }
    }

    fn error(&mut self, msg: &'static str) {
        self.err.get_or_insert(msg);
    }

    fn error_message(&self) -> &'static str {
        self.err.unwrap_or("illegal input")
    }

    fn next(&mut self) -> Rune {
        self.pos = self.ppos;
        let Some(c) = self.input[self.ppos..].chars().next() else {
            return Rune::Eof;
        };
        self.ppos += c.len_utf8();
        match c {
            // Go decodes a literal U+FFFD exactly like malformed UTF-8, and rejects both.
            char::REPLACEMENT_CHARACTER => {
                self.error("rune error");
                Rune::Illegal
            }
            '\0' => {
                self.error("unexpected null");
                Rune::Illegal
            }
            c => Rune::Char(c),
        }
    }

    fn peek(&mut self) -> Rune {
        let (pos, ppos) = (self.pos, self.ppos);
        let rune = self.next();
        (self.pos, self.ppos) = (pos, ppos);
        rune
    }

    fn skip_while(&mut self, accept: fn(char) -> bool) {
        while matches!(self.peek(), Rune::Char(c) if accept(c)) {
            self.next();
        }
    }

    fn scan(&mut self) -> Token<'a> {
        loop {
            let rune = self.next();
            let pos = self.pos;
            let kind = match rune {
                Rune::Eof => TokenKind::Eof,
                Rune::Illegal => TokenKind::Illegal,
                Rune::Char(c) if is_quote_char(c) => {
                    if self.scan_quoted(c) {
                        TokenKind::Quoted(&self.input[pos..self.ppos])
                    } else {
                        TokenKind::Illegal
                    }
                }
                Rune::Char(',' | '.') => {
                    self.value = false;
                    TokenKind::Separator
                }
                Rune::Char(c) if is_operator_char(c) => {
                    self.skip_while(is_operator_char);
                    self.value = true;
                    TokenKind::Operator(&self.input[pos..self.ppos])
                }
                Rune::Char(c) if c.is_whitespace() => continue,
                // The first character of a value is taken whatever it is; only the rest must
                // be printable.
                Rune::Char(_) if self.value => {
                    self.skip_while(is_value_char);
                    self.value = false;
                    TokenKind::Value(&self.input[pos..self.ppos])
                }
                Rune::Char(c) if is_field_char(c) => {
                    self.skip_while(is_field_char);
                    TokenKind::Field(&self.input[pos..self.ppos])
                }
                Rune::Char(_) => TokenKind::Other,
            };
            return Token { pos, kind };
        }
    }

    /// Consumes a quoted string up to its closing `quote`; false if it is unterminated or
    /// holds a malformed escape.
    fn scan_quoted(&mut self, quote: char) -> bool {
        let mut legal = true;
        let mut rune = self.next();
        while rune != Rune::Char(quote) {
            match rune {
                Rune::Char('\n') | Rune::Eof | Rune::Illegal => {
                    self.error("quoted literal not terminated");
                    return false;
                }
                Rune::Char('\\') => {
                    let (after, ok) = self.scan_escape(quote);
                    legal &= ok;
                    rune = after;
                }
                Rune::Char(_) => rune = self.next(),
            }
        }
        legal
    }

    /// Consumes the escape after a backslash and returns the character following it.
    fn scan_escape(&mut self, quote: char) -> (Rune, bool) {
        match self.next() {
            Rune::Char('a' | 'b' | 'f' | 'n' | 'r' | 't' | 'v' | '\\') => (self.next(), true),
            Rune::Char(c) if c == quote => (self.next(), true),
            first @ Rune::Char('0'..='7') => self.scan_digits(first, 8, 3),
            Rune::Char('x') => {
                let first = self.next();
                self.scan_digits(first, 16, 2)
            }
            Rune::Char('u') => {
                let first = self.next();
                self.scan_digits(first, 16, 4)
            }
            Rune::Char('U') => {
                let first = self.next();
                self.scan_digits(first, 16, 8)
            }
            other => {
                self.error("illegal escape sequence");
                (other, false)
            }
        }
    }

    fn scan_digits(&mut self, mut rune: Rune, base: u32, mut count: usize) -> (Rune, bool) {
        let digit = |r: Rune| match r {
            Rune::Char(c) => c.to_digit(16).unwrap_or(16),
            _ => 16,
        };
        while count > 0 && digit(rune) < base {
            rune = self.next();
            count -= 1;
        }
        if count > 0 {
            self.error("illegal numeric escape sequence");
            return (rune, false);
        }
        (rune, true)
    }
}

fn is_quote_char(c: char) -> bool {
    matches!(c, '"' | '/' | '|')
}

fn is_operator_char(c: char) -> bool {
    matches!(c, '=' | '!' | '~')
}

fn is_field_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Go's `isValueRune`: anything but `,` that is graphic (`unicode.IsGraphic`) and not a blank.
fn is_value_char(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_graphic() && c != ',';
    }
    // Graphic means "not in a C* category and not a line or paragraph separator"; the
    // separators are blanks, so the category test is all that is left. The standard library
    // has no category tables, but `regex` does.
    static NOT_GRAPHIC: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\p{C}").expect("\\p{C} is a valid pattern"));
    !c.is_whitespace() && !NOT_GRAPHIC.is_match(c.encode_utf8(&mut [0; 4]))
}

/// Decodes a quoted token (quotes included) into bytes the way containerd's modified
/// `strconv.Unquote` does; `/` and `|` quotes behave like `"`, each allowing only its own quote
/// to be escaped.
fn unquote(token: &str) -> Result<Vec<u8>, &'static str> {
    const SYNTAX: &str = "quote syntax error";
    let quote = token.chars().next().ok_or(SYNTAX)?;
    let body = token
        .strip_prefix(quote)
        .and_then(|t| t.strip_suffix(quote))
        .ok_or(SYNTAX)?;
    // Escapes produce bytes, not characters: `"\xc3\xa9"` is `é`, `"\xff"` is not text.
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        if c == quote || c == '\n' {
            return Err(SYNTAX);
        }
        if c != '\\' {
            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            continue;
        }
        let escape = rest.chars().next().ok_or(SYNTAX)?;
        rest = &rest[escape.len_utf8()..];
        match escape {
            'a' => out.push(0x07),
            'b' => out.push(0x08),
            'f' => out.push(0x0c),
            'n' => out.push(b'\n'),
            'r' => out.push(b'\r'),
            't' => out.push(b'\t'),
            'v' => out.push(0x0b),
            '\\' => out.push(b'\\'),
            'x' | 'u' | 'U' => {
                let len = match escape {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let digits = rest.as_bytes().get(..len).ok_or(SYNTAX)?;
                let value = digits.iter().try_fold(0u32, |acc, &d| {
                    char::from(d)
                        .to_digit(16)
                        .map(|d| acc << 4 | d)
                        .ok_or(SYNTAX)
                })?;
                // The digits were ASCII, so `len` is a character boundary.
                rest = &rest[len..];
                if escape == 'x' {
                    out.push(u8::try_from(value).map_err(|_| SYNTAX)?);
                } else if value > u32::from(char::MAX) {
                    return Err(SYNTAX);
                } else {
                    // Go encodes a surrogate code point as U+FFFD rather than rejecting it.
                    let c = char::from_u32(value).unwrap_or(char::REPLACEMENT_CHARACTER);
                    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                }
            }
            '0'..='7' => {
                let digits = rest.as_bytes().get(..2).ok_or(SYNTAX)?;
                let value =
                    digits
                        .iter()
                        .try_fold(u32::from(escape) - u32::from('0'), |acc, &d| {
                            char::from(d)
                                .to_digit(8)
                                .map(|d| acc << 3 | d)
                                .ok_or(SYNTAX)
                        })?;
                rest = &rest[2..];
                out.push(u8::try_from(value).map_err(|_| SYNTAX)?);
            }
            '"' | '/' | '|' if escape == quote => out.extend_from_slice(&[escape as u8]),
            _ => return Err(SYNTAX),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::snapshot::Kind;

    fn info(name: &str, kind: Kind, parent: &str, labels: &[(&str, &str)]) -> Info {
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
    fn fixture() -> Vec<Info> {
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

    const ALL: &[&str] = &["a1", "a2", "b1", "b2", "c1", "c2", "d1", "e1"];

    fn matching(filter: &Filter) -> Vec<String> {
        fixture()
            .into_iter()
            .filter(|i| filter.matches(i))
            .map(|i| i.name)
            .collect()
    }

    fn parse_one(input: &str) -> Filter {
        Filter::parse(input).unwrap_or_else(|e| panic!("{input:?} should parse: {e}"))
    }

    fn check(cases: &[(&str, &[&str])]) {
        for &(input, want) in cases {
            assert_eq!(matching(&parse_one(input)), want, "filter {input:?}");
        }
    }

    /// The only selector of a one-selector filter.
    fn only_selector(input: &str) -> Selector {
        let mut filter = parse_one(input);
        assert_eq!(filter.alternatives.len(), 1, "{input:?}");
        let mut conjunction = filter.alternatives.remove(0);
        assert_eq!(conjunction.selectors.len(), 1, "{input:?}");
        conjunction.selectors.remove(0)
    }

    /// The value of a one-selector `==` or `~=` filter.
    fn value_of(input: &str) -> String {
        match only_selector(input).operator {
            Operator::Equal(v) | Operator::NotEqual(v) => v,
            Operator::Matches(re) => re.as_str().to_owned(),
            Operator::Present => panic!("{input:?} has no value"),
        }
    }

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
