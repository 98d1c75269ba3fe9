//! containerd's filter tokenizer (`filters/scanner.go`): quoted strings, operators, field
//! names and values, with Go's rules for escapes and for which characters a value may hold.

use std::sync::LazyLock;

use regex::Regex;

/// What the scanner reads next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rune {
    Char(char),
    Eof,
    /// A character the grammar never allows; the scanner has recorded why.
    Illegal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TokenKind<'a> {
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
pub(super) struct Token<'a> {
    /// Byte offset of the token's first character.
    pub(super) pos: usize,
    pub(super) kind: TokenKind<'a>,
}

/// containerd's filter tokenizer.
///
/// It is modal: after an operator, a bare word is a value and may hold almost any printable
/// character; everywhere else it is a field and may hold only `[A-Za-z0-9_]`.
pub(super) struct Scanner<'a> {
    input: &'a str,
    /// Offset of the character `next` returned last.
    pos: usize,
    /// Offset just past it.
    pub(super) ppos: usize,
    /// Whether a bare word is a value rather than a field.
    value: bool,
    /// The first problem met, which containerd reports for every later illegal token too.
    err: Option<&'static str>,
}

impl<'a> Scanner<'a> {
    pub(super) fn new(input: &'a str) -> Self {
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

    pub(super) fn error_message(&self) -> &'static str {
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

    pub(super) fn peek(&mut self) -> Rune {
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

    pub(super) fn scan(&mut self) -> Token<'a> {
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
