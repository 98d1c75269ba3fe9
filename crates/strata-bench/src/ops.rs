//! Driving a server: containerd-like keys and labels, connections ([`Conn`], strata-grpc's
//! typed client), a concurrent timed loop ([`drive`]) and the fixtures rows need
//! (populations, file trees, removal).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strata_core::Mount;
use strata_grpc::client::{self, Client};
use tokio::task::JoinSet;

use crate::Result;
use crate::probe::{self, SyscallCounts, Trace};
use crate::server::{Cpu, Kind, Server};

/// The label containerd's unpacker puts on every snapshot it prepares.
pub const GC_ROOT: &str = "containerd.io/gc.root";
/// The label the list rows filter on.
pub const GROUP_LABEL: &str = "bench.strata.io/group";

/// The key of active snapshot `id`, shaped like the keys containerd's metadata layer hands a
/// snapshotter during an unpack: `<namespace>/<bucket sequence>/extract-<n> sha256:<chain id>`.
pub fn active_key(id: u64) -> String {
    format!("default/{id}/extract-{id} sha256:{}", hex64(id))
}

/// The name of committed snapshot `id`: `<namespace>/<sequence>/sha256:<chain id>`.
pub fn committed_key(id: u64) -> String {
    format!("default/{id}/sha256:{}", hex64(id ^ 0x5eed))
}

/// 64 hex digits derived from `n` (a fake but well-spread digest).
fn hex64(n: u64) -> String {
    let mut x = n;
    let mut out = String::with_capacity(64);
    for _ in 0..4 {
        out.push_str(&format!("{:016x}", splitmix64(&mut x)));
    }
    out
}

/// One step of splitmix64: a small, deterministic, well-mixed sequence.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `containerd.io/gc.root` set to the start of the run (RFC 3339, UTC), as containerd sets it
/// to the time of the unpack, plus `extra`.
pub fn labels(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    static NOW: OnceLock<String> = OnceLock::new();
    let now = NOW.get_or_init(|| rfc3339(SystemTime::now()));
    let mut l = BTreeMap::new();
    l.insert(GC_ROOT.to_owned(), now.clone());
    for (k, v) in extra {
        l.insert((*k).to_owned(), (*v).to_owned());
    }
    l
}

/// `t` as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The first id [`Target::fresh_ids`] hands out; ids below are for populations.
pub const FIRST_FRESH_ID: u64 = 1_000_000_000;

/// One connection to a server: strata-grpc's typed client, sending the server's
/// `snapshotter` field and containerd's namespace header, as containerd's proxy plugin does.
pub type Conn = Client;

/// A call's outcome as one of the harness's results, its answer dropped.
pub trait Done {
    /// `Ok(())` if the call succeeded, its error otherwise.
    fn done(self) -> Result<()>;
}

impl<T> Done for client::Result<T> {
    fn done(self) -> Result<()> {
        self.map(drop).map_err(Into::into)
    }
}

/// A server and a pool of connections to it.
pub struct Target {
    /// The server.
    pub server: Server,
    conns: Vec<Conn>,
    ids: AtomicU64,
    /// While set, every timed loop ([`drive`]) runs under `strace -f -c`, summary to this
    /// file: a traced measurement, for the deterministic figures only.
    trace_to: std::sync::Mutex<Option<PathBuf>>,
}

impl Target {
    /// Connects `connections` times to `server`.
    pub async fn new(server: Server, connections: usize) -> Result<Target> {
        let mut conns = Vec::with_capacity(connections);
        for _ in 0..connections.max(1) {
            conns.push(server.connect().await?);
        }
        Ok(Target {
            server,
            conns,
            ids: AtomicU64::new(FIRST_FRESH_ID),
            trace_to: std::sync::Mutex::new(None),
        })
    }

    /// Reserves `n` consecutive fresh snapshot ids; returns the first. Both targets hand out
    /// the same sequence when driven identically, so both see the same keys.
    pub fn fresh_ids(&self, n: u64) -> u64 {
        self.ids.fetch_add(n, Ordering::Relaxed)
    }

    /// Which server.
    pub fn kind(&self) -> Kind {
        self.server.kind
    }

    /// Connection `i` (modulo the pool).
    pub fn conn(&self, i: usize) -> Conn {
        self.conns[i % self.conns.len()].clone()
    }

    /// Traces the timed loops that follow (summaries to `out`), or stops tracing (`None`).
    pub fn set_trace(&self, out: Option<PathBuf>) {
        *self.trace_to.lock().expect("trace lock") = out;
    }

    /// Bytes the server has caused to be written to storage so far.
    pub fn write_bytes(&self) -> u64 {
        probe::write_bytes(self.server.pid)
    }

    /// Server CPU time so far.
    pub fn cpu(&self) -> Cpu {
        self.server.stats().cpu
    }

    /// Flushes the server's filesystem (`syncfs`), so that a measurement does not pay for
    /// the previous one's dirty data.
    pub fn sync(&self) -> Result<()> {
        syncfs(self.server.disk_root())
    }
}

/// How many times to run an operation.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// At most this many operations.
    pub max_ops: usize,
    /// With a budget: at least this many, even past it.
    pub min_ops: usize,
    /// Stop claiming new operations after this long (once `min_ops` are claimed).
    pub budget: Option<Duration>,
}

impl Plan {
    /// Exactly `n` operations.
    pub fn exactly(n: usize) -> Plan {
        Plan {
            max_ops: n,
            min_ops: n,
            budget: None,
        }
    }

    /// Up to `max` operations or `budget`, whichever comes first, but at least `min`.
    pub fn budget(max: usize, min: usize, budget: Duration) -> Plan {
        Plan {
            max_ops: max,
            min_ops: min.min(max),
            budget: Some(budget),
        }
    }
}

/// The latencies of one measurement.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// Each operation's latency, as the client saw it.
    pub samples: Vec<Duration>,
    /// Wall-clock time of the measurement (first operation started to last one finished).
    pub wall: Duration,
    /// Server CPU time spent during the measurement.
    pub cpu: Cpu,
    /// Bytes the server caused to be written to storage during the measurement.
    pub write_bytes: u64,
    /// System calls made during the measurement, if it was traced (then its latencies and
    /// CPU time are not the server's normal ones).
    pub trace: Option<SyscallCounts>,
}

impl Measured {
    /// Adds another measurement of the same row.
    pub fn merge(&mut self, other: Measured) {
        self.samples.extend(other.samples);
        self.wall += other.wall;
        self.cpu += other.cpu;
        self.write_bytes += other.write_bytes;
        self.trace = match (self.trace.take(), other.trace) {
            (Some(mut a), Some(b)) => {
                a.total += b.total;
                a.flushes += b.flushes;
                for (name, n) in b.by_name {
                    match a.by_name.iter_mut().find(|(k, _)| *k == name) {
                        Some(e) => e.1 += n,
                        None => a.by_name.push((name, n)),
                    }
                }
                Some(a)
            }
            (a, b) => a.or(b),
        };
    }

    /// One sample measured by hand (`wall` grows by its latency).
    pub fn push(&mut self, latency: Duration, cpu: Cpu) {
        self.samples.push(latency);
        self.wall += latency;
        self.cpu += cpu;
    }
}

/// Runs `op(conn, i)` for `i` = 0, 1, … as `plan` says, from `clients` concurrent clients,
/// each on its own connection and claiming the next `i` when its previous operation ends:
/// a timed loop, traced if the target says so ([`Target::set_trace`]).
pub async fn drive<F, Fut>(target: &Target, clients: usize, plan: Plan, op: F) -> Result<Measured>
where
    F: Fn(Conn, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let out = target.trace_to.lock().expect("trace lock").clone();
    let trace = match out {
        Some(out) => Some(Trace::attach(target.server.pid, &out)?),
        None => None,
    };
    let mut m = drive_untraced(target, clients, plan, op).await?;
    if let Some(trace) = trace {
        m.trace = Some(trace.finish()?);
    }
    Ok(m)
}

async fn drive_untraced<F, Fut>(
    target: &Target,
    clients: usize,
    plan: Plan,
    op: F,
) -> Result<Measured>
where
    F: Fn(Conn, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let bytes0 = target.write_bytes();
    let next = Arc::new(AtomicUsize::new(0));
    let cpu0 = target.cpu();
    let start = Instant::now();
    let deadline = plan.budget.map(|b| start + b);
    let mut set = JoinSet::new();
    for c in 0..clients.max(1) {
        let conn = target.conn(c);
        let op = Arc::clone(&op);
        let next = Arc::clone(&next);
        set.spawn(async move {
            let mut samples = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= plan.max_ops
                    || (i >= plan.min_ops && deadline.is_some_and(|d| Instant::now() >= d))
                {
                    break;
                }
                let t = Instant::now();
                op(conn.clone(), i).await?;
                samples.push(t.elapsed());
            }
            Ok::<_, crate::Error>(samples)
        });
    }
    let mut samples = Vec::new();
    while let Some(joined) = set.join_next().await {
        samples.extend(joined.map_err(|e| format!("client task failed: {e}"))??);
    }
    let wall = start.elapsed();
    Ok(Measured {
        samples,
        wall,
        cpu: target.cpu() - cpu0,
        write_bytes: target.write_bytes().saturating_sub(bytes0),
        trace: None,
    })
}

/// Runs `op(conn, i)` for every `i` in `0..n` from `clients` concurrent clients, untimed,
/// adding 1 to `progress` per operation done.
pub async fn run_all<F, Fut>(
    target: &Target,
    clients: usize,
    n: usize,
    progress: Option<Arc<AtomicUsize>>,
    op: F,
) -> Result<()>
where
    F: Fn(Conn, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let op = Arc::new(move |conn: Conn, i: usize| {
        let fut = op(conn, i);
        let progress = progress.clone();
        async move {
            fut.await?;
            if let Some(p) = progress {
                p.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }
    });
    drive_untraced(target, clients, Plan::exactly(n), move |c, i| op(c, i)).await?;
    Ok(())
}

/// Removes `keys` (children before parents is the caller's business: these are removed
/// concurrently) with up to 8 clients, then runs Cleanup once.
pub async fn remove_all(target: &Target, keys: Vec<String>) -> Result<()> {
    let keys = Arc::new(keys);
    let n = keys.len();
    run_all(target, 8, n, None, move |c, i| {
        let key = keys[i].clone();
        async move { c.remove(&key).await.done() }
    })
    .await?;
    target.conn(0).cleanup().await.done()
}

/// The directory a snapshot's mounts write into: the bind source or the overlay upperdir.
pub fn writable_dir(mounts: &[Mount]) -> Result<PathBuf> {
    let m = mounts.first().ok_or("no mounts")?;
    if m.kind == "bind" || m.kind == "rbind" {
        return Ok(PathBuf::from(&m.source));
    }
    m.options
        .iter()
        .find_map(|o| o.strip_prefix("upperdir="))
        .map(PathBuf::from)
        .ok_or_else(|| format!("mount {m:?} has neither a bind source nor an upperdir").into())
}

/// Writes `files` small files (0–3.5 KiB, in directories of 100) under `dir`, as an image
/// layer would hold, on a blocking thread.
pub async fn write_tree(dir: PathBuf, files: usize) -> Result<()> {
    tokio::task::spawn_blocking(move || -> Result<()> {
        let chunk = vec![b'x'; 4096];
        for i in 0..files {
            let sub = dir.join(format!("d{:03}", i / 100));
            if i % 100 == 0 {
                std::fs::create_dir_all(&sub)?;
            }
            std::fs::write(sub.join(format!("f{i:05}")), &chunk[..(i % 8) * 512])?;
        }
        Ok(())
    })
    .await
    .map_err(|e| format!("writing a file tree: {e}"))?
}

/// `syncfs` on the filesystem holding `path`.
pub fn syncfs(path: &Path) -> Result<()> {
    let f = std::fs::File::open(path)?;
    rustix::fs::syncfs(&f)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_look_like_containerd() {
        let k = active_key(7);
        assert!(k.starts_with("default/7/extract-7 sha256:"));
        assert_eq!(k.rsplit(':').next().unwrap().len(), 64);
        assert_ne!(committed_key(7), committed_key(8));
    }

    #[test]
    fn rfc3339_dates() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}
