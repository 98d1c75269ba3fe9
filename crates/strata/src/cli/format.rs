//! Pure text formatting for the command line: sizes, timestamps, aligned tables, shell quoting.

/// A byte count for people: `0 B`, `512 B`, `4.0 KiB`, `1.5 GiB` (binary units, as `du -h`).
pub fn human_size(bytes: i64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let sign = if bytes < 0 { "-" } else { "" };
    let magnitude = bytes.unsigned_abs();
    if magnitude < 1024 {
        return format!("{sign}{magnitude} B");
    }
    let mut value = magnitude as f64 / 1024.0;
    let mut unit = 0;
    // Switch units before rounding would print "1024.0 KiB".
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{sign}{value:.1} {}", UNITS[unit])
}

/// A size as `--bytes` asks (the plain number) or for people.
pub fn size(bytes: i64, exact: bool) -> String {
    if exact {
        bytes.to_string()
    } else {
        human_size(bytes)
    }
}

pub use strata_core::time::rfc3339;

/// Rows under a header, each column padded to its widest cell plus two spaces (the last
/// column unpadded), like Go's tabwriter output of `ctr`.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `s` as one word for a POSIX shell: unchanged when it is made of harmless characters,
/// otherwise single-quoted.
pub fn shell_quote(s: &str) -> String {
    let harmless = |c: char| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c);
    if !s.is_empty() && s.chars().all(harmless) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    /// Units switch at 1024 and never print "1024.0".
    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024), "1.0 KiB");
        assert_eq!(human_size(4096), "4.0 KiB");
        assert_eq!(human_size(1536 * 1024), "1.5 MiB");
        assert_eq!(human_size(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(human_size(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(size(4096, true), "4096");
    }

    /// Columns line up; trailing spaces are trimmed.
    #[test]
    fn tables() {
        let rows = vec![
            vec!["base".to_string(), "".to_string(), "committed".to_string()],
            vec![
                "a-long-key".to_string(),
                "base".to_string(),
                "active".to_string(),
            ],
        ];
        assert_eq!(
            table(&["KEY", "PARENT", "KIND"], &rows),
            "KEY         PARENT  KIND\n\
             base                committed\n\
             a-long-key  base    active\n"
        );
    }

    /// Paths pass unquoted; spaces and quotes are quoted safely.
    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/var/lib/strata/1/fs"), "/var/lib/strata/1/fs");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
