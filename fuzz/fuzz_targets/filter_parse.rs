//! Fuzzes containerd's filter grammar: `cargo +nightly fuzz run filter_parse`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_core::{Filter, Info, Kind};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else { return };
    if let Ok(filter) = Filter::parse(input) {
        let info = Info {
            name: "n".into(),
            parent: "p".into(),
            kind: Kind::Active,
            labels: [("k".to_string(), "v".to_string())].into(),
            created: std::time::UNIX_EPOCH,
            updated: std::time::UNIX_EPOCH,
        };
        let _ = filter.matches(&info);
        let _ = filter.required_label_equalities();
    }
});
