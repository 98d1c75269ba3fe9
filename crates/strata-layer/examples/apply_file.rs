//! Applies gzip layer blobs into a directory, in order, and prints how long each took — a
//! profiling aid for the applier (`perf record`, `strace -c`), outside any daemon:
//!
//! ```sh
//! cargo build --release --example apply_file -p strata-layer
//! target/release/examples/apply_file DEST BLOB...
//! ```

use std::time::Instant;

use strata_layer::{Compression, Whiteouts, apply};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dest = std::path::PathBuf::from(args.next().ok_or("usage: apply_file DEST BLOB...")?);
    std::fs::create_dir_all(&dest)?;
    for blob in args {
        let started = Instant::now();
        let file = std::fs::File::open(&blob).map_err(|e| format!("{blob}: {e}"))?;
        let applied = apply(
            Box::new(file),
            Compression::Gzip,
            &dest,
            &Whiteouts::Delete,
            None,
            &|| false,
        )?;
        println!(
            "{blob}: {} entries, {} bytes, {:?}",
            applied.entries,
            applied.size,
            started.elapsed()
        );
    }
    Ok(())
}
