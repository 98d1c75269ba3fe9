//! Pure text formatting for the command line: sizes, timestamps, aligned tables, shell quoting.

use std::time::{SystemTime, UNIX_EPOCH};

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

/// `t` in RFC 3339, UTC: `2024-05-01T12:00:00Z`, or with nanoseconds
/// (`2024-05-01T12:00:00.123456789Z`, as containerd prints them) when `nanos`.
pub fn rfc3339(t: SystemTime, nanos: bool) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    if nanos {
        format!(
            "{y:04}-{m:02}-{day:02}T{hh:02}:{mm:02}:{ss:02}.{:09}Z",
            d.subsec_nanos()
        )
    } else {
        format!("{y:04}-{m:02}-{day:02}T{hh:02}:{mm:02}:{ss:02}Z")
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's `civil_from_days`), so timestamps need no date crate.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

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
    use std::time::Duration;

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

    /// Known instants, leap days and nanoseconds.
    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(UNIX_EPOCH, false), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::new(951_782_400, 5); // 2000-02-29
        assert_eq!(rfc3339(t, false), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(t, true), "2000-02-29T00:00:00.000000005Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(rfc3339(t, false), "2023-11-14T22:13:20Z");
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
