//! Figures and their rendering: the table printed and written to BENCHMARKS.md.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Endpoint {
    Noop,
    Floor,
    Health,
    Request,
    Verify,
    Refresh,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Noop => "GET / (no-op)",
            Endpoint::Floor => "GET /nope (404)",
            Endpoint::Health => "GET /healthz",
            Endpoint::Request => "POST otp/request",
            Endpoint::Verify => "POST otp/verify",
            Endpoint::Refresh => "POST token/refresh",
        }
    }
}

pub struct PhaseResult {
    pub phase: &'static str,
    pub concurrency: usize,
    /// Completed units: flows, verifies, refreshes or no-op requests.
    pub completed: usize,
    pub errors: usize,
    pub elapsed: Duration,
    pub cpu_ms: f64,
    pub latencies: BTreeMap<Endpoint, Vec<Duration>>,
}

impl PhaseResult {
    pub fn new(phase: &'static str, concurrency: usize) -> Self {
        PhaseResult {
            phase,
            concurrency,
            completed: 0,
            errors: 0,
            elapsed: Duration::ZERO,
            cpu_ms: 0.0,
            latencies: BTreeMap::new(),
        }
    }

    pub fn per_second(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Requests per unit: a flow is two requests.
    fn requests_per_unit(&self) -> f64 {
        if self.phase == "flow" || self.phase == "login" {
            2.0
        } else {
            1.0
        }
    }

    fn cpu_per_unit(&self) -> f64 {
        self.cpu_ms / self.completed.max(1) as f64
    }
}

fn percentile(samples: &[Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let rank = ((p / 100.0) * (ms.len() - 1) as f64).round() as usize;
    ms[rank]
}

pub struct BundleSize {
    pub raw: u64,
    pub gzip: u64,
}

impl BundleSize {
    pub fn of(path: &Path) -> BundleSize {
        let bytes = std::fs::read(path).unwrap_or_default();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&bytes).unwrap();
        BundleSize { raw: bytes.len() as u64, gzip: gz.finish().unwrap().len() as u64 }
    }
}

/// Native microbenchmarks (criterion's estimates), in microseconds.
pub struct Micro {
    pub entries: Vec<(String, f64)>,
}

impl Micro {
    pub fn read(criterion_dir: &Path) -> Micro {
        let mut entries = Vec::new();
        let Ok(groups) = std::fs::read_dir(criterion_dir) else { return Micro { entries } };
        for group in groups.flatten() {
            let file = group.path().join("new/estimates.json");
            let Ok(text) = std::fs::read_to_string(&file) else { continue };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
            if let Some(ns) = v["median"]["point_estimate"].as_f64() {
                entries.push((group.file_name().to_string_lossy().into_owned(), ns / 1000.0));
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Micro { entries }
    }
}

pub struct Report {
    pub phases: Vec<PhaseResult>,
    pub service_start: Duration,
    pub noop_start: Duration,
    pub wasm: BundleSize,
    pub noop_wasm: BundleSize,
    pub seconds: u64,
    pub service_peak_rss_kb: u64,
    pub noop_peak_rss_kb: u64,
    pub micro: Micro,
}

impl Report {
    fn noop(&self, c: usize) -> Option<&PhaseResult> {
        self.phases.iter().find(|p| p.phase == "noop" && p.concurrency == c)
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "Throughput, latency and CPU per phase ({} s per level). Ratios are to the no-op Worker at the same concurrency, measured in this run.", self.seconds);
        let _ = writeln!(s);
        let _ = writeln!(s, "| phase | conc. | done/s | vs no-op req/s per req | errors | endpoint | p50 ms | p95 ms | p99 ms | p50 vs no-op | CPU ms/unit | CPU vs no-op per req |");
        let _ = writeln!(s, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        for p in &self.phases {
            let base = self.noop(p.concurrency);
            let base_p50 = base.and_then(|b| b.latencies.get(&Endpoint::Noop)).map(|l| percentile(l, 50.0));
            let rate_ratio = base.map(|b| p.per_second() * p.requests_per_unit() / b.per_second());
            let cpu_ratio = base.map(|b| p.cpu_per_unit() / (b.cpu_per_unit() * p.requests_per_unit()));
            for (i, (endpoint, lat)) in p.latencies.iter().enumerate() {
                let p50 = percentile(lat, 50.0);
                let first = i == 0;
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {} | {} | {} |",
                    if first { p.phase } else { "" },
                    if first { p.concurrency.to_string() } else { String::new() },
                    if first { format!("{:.0}", p.per_second()) } else { String::new() },
                    if first { rate_ratio.map_or("-".into(), |r| format!("{:.2}", r)) } else { String::new() },
                    if first { p.errors.to_string() } else { String::new() },
                    endpoint.name(),
                    p50,
                    percentile(lat, 95.0),
                    percentile(lat, 99.0),
                    base_p50.map_or("-".into(), |b| format!("{:.1}x", p50 / b)),
                    if first { format!("{:.2}", p.cpu_per_unit()) } else { String::new() },
                    if first { cpu_ratio.map_or("-".into(), |r| format!("{:.1}x", r)) } else { String::new() },
                );
            }
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "\"vs no-op req/s per req\": (units/s x requests per unit) / no-op requests/s; a flow or a login is 2 requests."
        );
        let _ = writeln!(
            s,
            "\"CPU vs no-op per req\": workerd CPU per unit / (no-op CPU per request x requests per unit)."
        );
        let _ = writeln!(s);
        let _ = writeln!(s, "| | service | no-op | ratio |");
        let _ = writeln!(s, "| --- | --- | --- | --- |");
        let _ = writeln!(
            s,
            "| release wasm, raw | {} KB | {} KB | {:.1}x |",
            self.wasm.raw / 1000,
            self.noop_wasm.raw / 1000,
            self.wasm.raw as f64 / self.noop_wasm.raw.max(1) as f64
        );
        let _ = writeln!(
            s,
            "| release wasm, gzip -9 | {} KB | {} KB | {:.1}x |",
            self.wasm.gzip / 1000,
            self.noop_wasm.gzip / 1000,
            self.wasm.gzip as f64 / self.noop_wasm.gzip.max(1) as f64
        );
        let _ = writeln!(
            s,
            "| start-up to first answer | {} ms | {} ms | {:.2}x |",
            self.service_start.as_millis(),
            self.noop_start.as_millis(),
            self.service_start.as_secs_f64() / self.noop_start.as_secs_f64()
        );
        let _ = writeln!(
            s,
            "| workerd peak RSS | {} MB | {} MB | {:.2}x |",
            self.service_peak_rss_kb / 1024,
            self.noop_peak_rss_kb / 1024,
            self.service_peak_rss_kb as f64 / self.noop_peak_rss_kb.max(1) as f64
        );
        let _ = writeln!(s);

        let _ = writeln!(s, "Budgets:");
        let gzip_ok = self.wasm.gzip <= 400_000;
        let _ = writeln!(
            s,
            "- release wasm <= 400 KB gzipped: {} KB, {}",
            self.wasm.gzip / 1000,
            if gzip_ok { "met" } else { "MISSED" }
        );
        if let (Some(flow), Some(base)) =
            (self.phases.iter().find(|p| p.phase == "flow" && p.concurrency == 32), self.noop(32))
        {
            let target = 0.4 * base.per_second() / 2.0;
            let _ = writeln!(
                s,
                "- flows/s at concurrency 32 >= 40% of half the no-op req/s: {:.0} vs {:.0} needed ({:.0}% of half), {}",
                flow.per_second(),
                target,
                100.0 * flow.per_second() / (base.per_second() / 2.0),
                if flow.per_second() >= target { "met" } else { "MISSED" }
            );
        }
        let errors: usize = self.phases.iter().map(|p| p.errors).sum();
        let _ =
            writeln!(s, "- no errors at any level: {} errors, {}", errors, if errors == 0 { "met" } else { "MISSED" });
        if let Some(per_flow) = self.micro.entries.iter().find(|(n, _)| n == "login_flow_pure_work").map(|(_, us)| *us)
        {
            let _ = writeln!(
                s,
                "- pure hot-path CPU per full flow < 200 us natively: {per_flow:.1} us, {}",
                if per_flow < 200.0 { "met" } else { "MISSED" }
            );
        }
        if !self.micro.entries.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(s, "Native microbenchmarks (criterion median, `cargo bench --bench hot_path`):");
            let _ = writeln!(s);
            let _ = writeln!(s, "| operation | us |");
            let _ = writeln!(s, "| --- | --- |");
            for (name, us) in &self.micro.entries {
                let _ = writeln!(s, "| {name} | {us:.2} |");
            }
        }
        s
    }

    pub fn markdown(&self, table: &str) -> String {
        let machine = machine_description();
        let analysis = std::fs::read_to_string("bench/ANALYSIS.md").unwrap_or_default();
        format!(
            "# Benchmarks\n\nWritten by `make bench` (bench/loadgen) on {date}. Re-run it to refresh this file.\n\n\
             Machine: {machine}\n\nCommand: `make bench` (BENCH_SECONDS={secs}); the load generator, the two \
             workerd processes and Node share the machine's cores, so absolute figures are low and noisy; the \
             ratios to the no-op Worker, measured in the same run, are the figures to compare.\n\n{table}\n{analysis}",
            date = now_utc(),
            secs = self.seconds,
        )
    }
}

fn machine_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<u64>().ok()))
        .unwrap_or(0);
    format!("{cores} cores ({cpu}), {} GiB RAM, Linux", mem_kb / 1024 / 1024)
}

pub fn now_utc() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
