//! Go string literals as containerd's filters read them (`filters/quote.go`).

/// Decodes a quoted token (quotes included) into bytes the way containerd's modified
/// `strconv.Unquote` does; `/` and `|` quotes behave like `"`, each allowing only its own quote
/// to be escaped.
pub(super) fn unquote(token: &str) -> Result<Vec<u8>, &'static str> {
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
