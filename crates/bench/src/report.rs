//! What one run measured and how it is printed: throughput, latency
//! percentiles, hookwarden's CPU and peak RSS, and the CPU the rest of the
//! machine used meanwhile, all read from /proc.

pub(crate) struct Figures {
    pub(crate) name: String,
    pub(crate) count: u64,
    pub(crate) seconds: f64,
    pub(crate) latencies_us: Vec<u64>,
    pub(crate) cpu_seconds: Option<f64>,
    /// Of `cpu_seconds`, what the embedded SQLite's threads used (the
    /// writer's and sqlx's connection threads): the database's own work, in
    /// hookwarden's process, told apart from the rest (HTTP, verification,
    /// the handler). `None` on PostgreSQL, whose CPU is in `others`.
    pub(crate) embedded_db_cpu: Option<f64>,
    pub(crate) peak_rss_mb: Option<f64>,
    /// Deliveries in each second of the run (empty where not counted), so a
    /// stall shows where an average would hide it.
    pub(crate) timeline: Vec<u64>,
    /// The slowest publish-to-delivery of each of those seconds
    /// (microseconds), so a tail can be placed in time.
    pub(crate) slowest_us: Vec<u64>,
    /// How long each accepted publish took to answer its producer
    /// (microseconds; empty where nothing was published through the API).
    pub(crate) answers_us: Vec<u64>,
    /// Publishes refused or failed (none, in a run that measured right).
    pub(crate) unanswered: u64,
    /// CPU seconds of everything else on the machine in the run: PostgreSQL's
    /// processes, and this program (load generator, receiver, baseline).
    pub(crate) others: OtherCpu,
}

/// Where the rest of the machine's CPU went during a run, so a figure can
/// be read against the two cores it shares.
#[derive(Clone, Copy, Default)]
pub(crate) struct OtherCpu {
    pub(crate) database: f64,
    pub(crate) bench: f64,
}

impl OtherCpu {
    pub(crate) fn now() -> Self {
        Self {
            database: postgres_cpu(),
            bench: proc_usage(std::process::id()).0,
        }
    }

    pub(crate) fn since(self, before: Self) -> Self {
        Self {
            database: self.database - before.database,
            bench: self.bench - before.bench,
        }
    }
}

/// CPU seconds used so far by every PostgreSQL process on the machine
/// (the bench's database is the only busy one while it runs), those that
/// ended included: a backend whose connection closed is counted in its
/// parent's children's time, where it would otherwise vanish from the sum.
fn postgres_cpu() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .map(|pid| proc_usage(pid).0 + children_cpu(pid))
        .sum()
}

/// CPU seconds of a process's children that ended and were waited for.
fn children_cpu(pid: u32) -> f64 {
    let fields = stat_fields(pid);
    // cutime, cstime: fields 16 and 17 of stat, in clock ticks (100 Hz).
    (tick(&fields, 13) + tick(&fields, 14)) / 100.0
}

/// The fields of `/proc/<pid>/stat` after the command's name (the third
/// field of the documentation is index 0 here).
fn stat_fields(pid: u32) -> Vec<String> {
    stat_fields_of(&format!("/proc/{pid}/stat"))
}

/// The same of any `stat` file (a process's or one of its threads').
fn stat_fields_of(path: &str) -> Vec<String> {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    stat.rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn tick(fields: &[String], i: usize) -> f64 {
    fields
        .get(i)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
}

impl Figures {
    pub(crate) fn rate(&self) -> f64 {
        self.count as f64 / self.seconds
    }

    pub(crate) fn pct(&self, p: f64) -> f64 {
        percentile_ms(&self.latencies_us, p)
    }

    pub(crate) fn print(&self, baseline: Option<&Figures>) {
        let ratio = baseline
            .map(|b| format!("{:.0} % of baseline", 100.0 * self.rate() / b.rate()))
            .unwrap_or_default();
        let cpu = self
            .cpu_seconds
            .map(|c| format!("{:.3} CPU s/1k", 1000.0 * c / self.count.max(1) as f64))
            .unwrap_or_else(|| "-".into());
        let cpu = match (self.cpu_seconds, self.embedded_db_cpu) {
            (Some(all), Some(db)) if db > 0.0 => format!(
                "{cpu} (embedded SQLite's threads {:.3}, the rest {:.3})",
                1000.0 * db / self.count.max(1) as f64,
                1000.0 * (all - db) / self.count.max(1) as f64
            ),
            _ => cpu,
        };
        let rss = self
            .peak_rss_mb
            .map(|r| format!("{r:.0} MB peak RSS"))
            .unwrap_or_else(|| "-".into());
        // A PostgreSQL process that ended during the run took its CPU time
        // with it (the backlog's prefill connection): then nothing is shown.
        let per_1k = |c: f64| {
            if c >= 0.0 {
                format!("{:.2}", 1000.0 * c / self.count.max(1) as f64)
            } else {
                "-".into()
            }
        };
        let others = format!(
            "(per 1k also: PostgreSQL {}, bench {} CPU s)",
            per_1k(self.others.database),
            per_1k(self.others.bench)
        );
        println!(
            "{:<34} {:>9.0}/s  p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  {cpu}  {rss}  {ratio} {others}",
            self.name,
            self.rate(),
            self.pct(0.50),
            self.pct(0.90),
            self.pct(0.99),
            self.pct(1.0)
        );
        if !self.answers_us.is_empty() || self.unanswered > 0 {
            let a = |p| percentile_ms(&self.answers_us, p);
            println!(
                "  publish answered (the producer's wait, apart from delivery): p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms; refused or failed: {}",
                a(0.50),
                a(0.90),
                a(0.99),
                a(1.0),
                self.unanswered
            );
        }
        if !self.timeline.is_empty() {
            let per_second: Vec<String> = self.timeline.iter().map(u64::to_string).collect();
            println!(
                "  delivered per second (slowest whole second {}): {}",
                // The last second is cut short by the end of the run.
                self.timeline[..self.timeline.len() - 1]
                    .iter()
                    .min()
                    .unwrap_or(&0),
                per_second.join(" ")
            );
            let slowest: Vec<String> = self
                .slowest_us
                .iter()
                .map(|us| format!("{}", us / 1000))
                .collect();
            println!(
                "  slowest delivery in each second, ms: {}",
                slowest.join(" ")
            );
        }
    }
}

/// The `p` quantile of `us` (microseconds) in milliseconds; 0 when empty.
fn percentile_ms(us: &[u64], p: f64) -> f64 {
    if us.is_empty() {
        return 0.0;
    }
    let mut v = us.to_vec();
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i] as f64 / 1000.0
}

/// Names (as `/proc` keeps them, cut to 15 bytes) of the threads that run
/// the embedded SQLite: the store's writer and sqlx's connection workers.
const SQLITE_THREADS: [&str; 2] = ["sqlite-writer", "sqlx-sqlite-wor"];

/// CPU seconds used so far by a process's embedded SQLite threads (all of
/// them are long-lived, so none takes its time with it mid-run).
pub(crate) fn embedded_db_cpu(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|tid| {
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                .is_ok_and(|name| SQLITE_THREADS.iter().any(|t| name.starts_with(t)))
        })
        .map(|tid| {
            let fields = stat_fields_of(&format!("/proc/{pid}/task/{tid}/stat"));
            (tick(&fields, 11) + tick(&fields, 12)) / 100.0
        })
        .sum()
}

/// CPU seconds (user + system) and peak RSS in MB of a process.
pub(crate) fn proc_usage(pid: u32) -> (f64, f64) {
    let fields = stat_fields(pid);
    let cpu = (tick(&fields, 11) + tick(&fields, 12)) / 100.0; // utime, stime in clock ticks (100 Hz)
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu, hwm_kb / 1024.0)
}
