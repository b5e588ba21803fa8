//! `make profile`: where a login flow's CPU goes, measured.
//!
//! The release bundle runs on the local workerd (serve.mjs, as the benchmark
//! starts it) with its V8 inspector open and the fake mail API. After a
//! warm-up and an unprofiled baseline of the same load, V8's sampling
//! profiler runs in each isolate a login touches (the Worker, whose
//! isolate also runs its Durable Object class; Miniflare's entry Worker;
//! its D1 simulation; its queue broker) while returning users log in
//! (login.rs). workerd's CPU per thread comes from /proc over the same
//! window, so the table also shows what V8's samples cannot see: the
//! runtime's C++ outside any profiled isolate, V8's background threads,
//! and the profiler's own cost.
//!
//! It writes bench/profile-<label>.cpuprofile (all isolates merged, for
//! speedscope or Chrome DevTools) and the run's part of the BENCHMARKS.md
//! section "Where a flow's CPU goes". Knobs (environment): PROFILE_LABEL
//! (default `latest`), PROFILE_SECONDS (8), PROFILE_CONCURRENCY (16),
//! PROFILE_INTERVAL_US (500).

use std::fmt::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cpuprofile::{self, Breakdown, Category, Profile};
use crate::{cdp, fake_mail, login, perf, procfs, sections, server};

pub const HEADING: &str = "## Where a flow's CPU goes";
const USERS: usize = 20_000;

struct Settings {
    label: String,
    seconds: u64,
    concurrency: usize,
    interval_us: u64,
}

impl Settings {
    fn from_env() -> Settings {
        let get = |name: &str, default: u64| -> u64 {
            std::env::var(name).ok().map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name}={v}: a number")))
        };
        let label = std::env::var("PROFILE_LABEL").unwrap_or_else(|_| "latest".into());
        assert!(
            !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "PROFILE_LABEL={label}: letters, digits, - and _ only (it names a file)"
        );
        Settings {
            label,
            seconds: get("PROFILE_SECONDS", 8).max(1),
            concurrency: get("PROFILE_CONCURRENCY", 16).max(1) as usize,
            interval_us: get("PROFILE_INTERVAL_US", 500).clamp(50, 10_000),
        }
    }
}

/// The isolates a login touches; the others (Miniflare's cache, outbound,
/// email and dev-control Workers) stay unprofiled, each profiler costing a
/// sampling thread.
fn wanted(isolate: &str) -> bool {
    ["core:user:", "core:entry", "d1:", "queues:"].iter().any(|p| isolate.starts_with(p))
}

/// workerd's CPU by thread kind, over a window.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Threads {
    /// The main thread, user and system time.
    pub main_ms: f64,
    /// Of which system (kernel) time.
    pub main_system_ms: f64,
    pub v8_background_ms: f64,
    pub profiler_ms: f64,
    pub other_ms: f64,
}

impl Threads {
    fn total(&self) -> f64 {
        self.main_ms + self.v8_background_ms + self.profiler_ms + self.other_ms
    }

    /// From two readings of `procfs::thread_cpu_ms` of process `pid`.
    pub fn between(pid: u32, before: &[procfs::ThreadCpu], after: &[procfs::ThreadCpu]) -> Threads {
        let mut t = Threads::default();
        for a in after {
            let b = before.iter().find(|b| b.tid == a.tid);
            let system = (a.system_ms - b.map_or(0.0, |b| b.system_ms)).max(0.0);
            let used = (a.user_ms - b.map_or(0.0, |b| b.user_ms)).max(0.0) + system;
            let name = &a.name;
            if a.tid == pid {
                t.main_ms += used;
                t.main_system_ms += system;
            } else if name.starts_with("v8:ProfEvnt") {
                t.profiler_ms += used;
            } else if name.starts_with("V8 ") {
                t.v8_background_ms += used;
            } else {
                t.other_ms += used;
            }
        }
        t
    }
}

pub struct Run {
    settings: Settings,
    date: String,
    commit: String,
    flows: usize,
    errors: usize,
    elapsed: Duration,
    baseline_flows_per_s: f64,
    threads: Threads,
    breakdown: Breakdown,
    file: String,
    file_bytes: usize,
    /// perf on the main thread during the unprofiled baseline, and that
    /// thread's CPU then; or why there is none.
    perf: Result<(perf::Report, f64), String>,
    baseline_flows: usize,
}

pub async fn run(root: &Path) -> Run {
    let settings = Settings::from_env();
    let mail = fake_mail::FakeMail::start().await;
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let seed = server::write_seed(root, &[login::returning_users_sql(USERS, now_ms)]);
    let inspector = server::free_port();
    let service = server::Server::start_with(
        root,
        "build/index.js",
        Some(&seed),
        &crate::service_vars(&mail.url()),
        Some(inspector),
    )
    .await;
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
    let users = Arc::new(login::Users::new(USERS));
    let c = settings.concurrency;
    let secs = settings.seconds as f64;

    eprintln!("profile: warm-up, then {secs} s unprofiled and {secs} s profiled at concurrency {c}");
    let load = |d: Duration| drive(&client, &service.url, &mail, &users, c, d);
    load(Duration::from_secs(2)).await;
    // The baseline, unprofiled by V8: perf samples the main thread then, if it can.
    let pid = *service.workerd_pids().first().expect("workerd runs");
    let data = root.join("target/profile-perf.data");
    let recording = perf::check().and_then(|()| perf::record(pid, settings.seconds, &data).map_err(|e| e.to_string()));
    let main_before = procfs::thread_cpu_ms(pid);
    let (baseline, _, baseline_elapsed) = load(Duration::from_secs(settings.seconds)).await;
    let main_after = procfs::thread_cpu_ms(pid);
    let baseline_flows_per_s = baseline as f64 / baseline_elapsed.as_secs_f64();
    let baseline_main_ms = Threads::between(pid, &main_before, &main_after).main_ms;
    let perf = recording.and_then(|mut child| {
        child.wait().map_err(|e| e.to_string())?;
        perf::report(&data).map(|r| (r, baseline_main_ms))
    });
    match &perf {
        Ok(_) => eprintln!("profile: perf sampled the main thread during the baseline"),
        Err(e) => eprintln!("profile: no perf figures: {e}"),
    }

    let list: Value = client
        .get(format!("http://127.0.0.1:{inspector}/json"))
        .send()
        .await
        .expect("the inspector's target list")
        .json()
        .await
        .expect("the inspector's target list is JSON");
    let targets: Vec<cdp::Target> = cdp::parse_targets(&list).into_iter().filter(|t| wanted(&t.id)).collect();
    assert!(targets.iter().any(|t| cpuprofile::is_worker_isolate(&t.id)), "no Worker isolate among {list}");
    let profilers: Vec<Profiler> = targets.iter().map(|t| Profiler::start(t, settings.interval_us)).collect();

    let before = procfs::thread_cpu_ms(pid);
    let (flows, errors, elapsed) = load(Duration::from_secs(settings.seconds)).await;
    let after = procfs::thread_cpu_ms(pid);
    let threads = Threads::between(pid, &before, &after);

    let profiles: Vec<Profile> = profilers
        .into_iter()
        .map(|p| {
            let (isolate, raw) = p.stop();
            let profile = Profile::parse(&isolate, &raw).unwrap_or_else(|e| panic!("the profile of {isolate}: {e}"));
            eprintln!("profile: {isolate}: {} samples", profile.sample_count());
            profile
        })
        .collect();
    service.stop();

    let interval = settings.interval_us as f64;
    let breakdown = Breakdown::of(&profiles, interval);
    let merged = cpuprofile::merge(&profiles, interval).to_string();
    let file = format!("bench/profile-{}.cpuprofile", settings.label);
    std::fs::write(root.join(&file), &merged).unwrap_or_else(|e| panic!("write {file}: {e}"));
    eprintln!("profile: {flows} flows, {errors} errors; wrote {file} ({} KB)", merged.len() / 1000);
    Run {
        settings,
        date: crate::report::now_utc(),
        commit: git_commit(root),
        flows,
        errors,
        elapsed,
        baseline_flows_per_s,
        threads,
        breakdown,
        file,
        file_bytes: merged.len(),
        perf,
        baseline_flows: baseline,
    }
}

/// `c` clients logging returning users in for `d`: flows, errors, elapsed.
async fn drive(
    client: &reqwest::Client,
    base: &str,
    mail: &fake_mail::FakeMail,
    users: &Arc<login::Users>,
    c: usize,
    d: Duration,
) -> (usize, usize, Duration) {
    let start = Instant::now();
    let deadline = start + d;
    let tasks: Vec<_> = (0..c)
        .map(|k| {
            let (client, base, mail, users) = (client.clone(), base.to_string(), mail.clone(), users.clone());
            tokio::spawn(async move {
                let ip = login::client_ip(k);
                let (mut ok, mut failed) = (0, 0);
                while Instant::now() < deadline {
                    let samples = login::login(&client, &base, &mail, users.take(), &ip).await;
                    if samples.iter().all(|s| s.2) {
                        ok += 1;
                    } else {
                        failed += 1;
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let (mut ok, mut failed) = (0, 0);
    for t in tasks {
        let (o, f) = t.await.expect("client task");
        ok += o;
        failed += f;
    }
    (ok, failed, start.elapsed())
}

/// One isolate's profiler, driven from a thread of its own.
struct Profiler {
    isolate: String,
    stop: std::sync::mpsc::Sender<()>,
    done: std::thread::JoinHandle<Value>,
}

impl Profiler {
    /// Returns once the profiler runs.
    fn start(target: &cdp::Target, interval_us: u64) -> Profiler {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (started, running) = std::sync::mpsc::channel::<()>();
        let (url, isolate) = (target.websocket_url.clone(), target.id.clone());
        let name = isolate.clone();
        let done = std::thread::spawn(move || {
            let fail = |e: String| -> ! { panic!("profiler of {name}: {e}") };
            let mut s = cdp::Session::connect(&url).unwrap_or_else(|e| fail(e));
            s.call("Profiler.enable", json!({})).unwrap_or_else(|e| fail(e));
            s.call("Profiler.setSamplingInterval", json!({"interval": interval_us})).unwrap_or_else(|e| fail(e));
            s.call("Profiler.start", json!({})).unwrap_or_else(|e| fail(e));
            let _ = started.send(());
            let _ = stopped.recv();
            let result = s.call("Profiler.stop", json!({})).unwrap_or_else(|e| fail(e));
            let _ = s.call("Profiler.disable", json!({}));
            result["profile"].clone()
        });
        running.recv().unwrap_or_else(|_| panic!("the profiler of {} did not start", target.id));
        Profiler { isolate, stop, done }
    }

    fn stop(self) -> (String, Value) {
        let _ = self.stop.send(());
        let profile = self.done.join().unwrap_or_else(|_| panic!("the profiler of {} failed", self.isolate));
        (self.isolate, profile)
    }
}

fn git_commit(root: &Path) -> String {
    let out = std::process::Command::new("git").current_dir(root).args(["rev-parse", "--short", "HEAD"]).output();
    let commit = out.ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    let dirty = std::process::Command::new("git")
        .current_dir(root)
        .args(["status", "--porcelain", "--untracked-files=no", "--", "src", "Cargo.toml", "migrations"])
        .output()
        .is_ok_and(|o| !o.stdout.is_empty());
    if dirty {
        format!("{commit} with uncommitted changes to src/")
    } else {
        commit
    }
}

impl Run {
    fn subheading(&self) -> String {
        format!("### Run: {}", self.settings.label)
    }

    /// The rows: (label, ms), in order, then the total.
    fn rows(&self) -> Vec<(String, f64)> {
        let b = &self.breakdown;
        let mut rows: Vec<(String, f64)> = Category::ALL
            .iter()
            .filter(|c| **c != Category::Idle)
            .map(|c| (c.label().to_string(), b.category_ms(*c)))
            .collect();
        let user = self.threads.main_ms - self.threads.main_system_ms;
        rows.push((
            "workerd main thread, user time outside the isolates' ticks: the runtime's C++ (HTTP, RPC between \
             isolates, the event loop), unprofiled isolates"
                .into(),
            (user - b.busy_ms()).max(0.0),
        ));
        rows.push(("workerd main thread, kernel time (syscalls, signals)".into(), self.threads.main_system_ms));
        rows.push(("V8 background threads (concurrent GC, compilation)".into(), self.threads.v8_background_ms));
        rows.push(("other workerd threads".into(), self.threads.other_ms));
        rows.push(("the profilers' own threads (the cost of measuring)".into(), self.threads.profiler_ms));
        rows
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let s = &self.settings;
        let per_s = self.flows as f64 / self.elapsed.as_secs_f64();
        let total = self.threads.total();
        let per_flow = |ms: f64| ms / self.flows.max(1) as f64;
        let _ = writeln!(out, "{}\n", self.subheading());
        let _ = writeln!(
            out,
            "`make profile` (PROFILE_LABEL={}) on {}, commit {}. Load: {} logins of returning users in {:.1} s at \
             concurrency {} ({per_s:.0}/s; {:.0}/s in the {} s just before, unprofiled, so profiling slowed the \
             load by {:.0} %), {} errors. V8 sampled every {} us. workerd used {total:.0} ms of CPU in that \
             window, {:.2} ms per login (request and verify); the main thread, where every isolate runs, {:.0} ms.\n",
            s.label,
            self.date,
            self.commit,
            self.flows,
            self.elapsed.as_secs_f64(),
            s.concurrency,
            self.baseline_flows_per_s,
            s.seconds,
            (1.0 - per_s / self.baseline_flows_per_s.max(1e-9)) * 100.0,
            self.errors,
            s.interval_us,
            per_flow(total),
            self.threads.main_ms,
        );
        let _ = writeln!(out, "| where the CPU goes | ms | ms per login | % of workerd CPU |");
        let _ = writeln!(out, "| --- | --- | --- | --- |");
        for (label, ms) in self.rows() {
            let _ =
                writeln!(out, "| {label} | {ms:.0} | {:.3} | {:.1} % |", per_flow(ms), 100.0 * ms / total.max(1e-9));
        }
        let own: f64 =
            Category::ALL.iter().filter(|c| c.is_worker_code()).map(|c| self.breakdown.category_ms(*c)).sum();
        let _ = writeln!(out, "| **total** | **{total:.0}** | **{:.3}** | 100 % |", per_flow(total));
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "The Worker's own code (its wasm and the JS glue, the first five rows) is {own:.0} ms, {:.3} ms per \
             login, {:.1} % of workerd's CPU. V8's ticks while an isolate sat `(idle)`, not counted above: {:.0} ms.\n",
            per_flow(own),
            100.0 * own / total.max(1e-9),
            self.breakdown.category_ms(Category::Idle),
        );
        let busy = self.breakdown.busy_ms();
        let _ = writeln!(out, "The functions with the most self time, of {busy:.0} ms sampled in the isolates:\n");
        let _ = writeln!(out, "| # | function | isolate | category | self ms | % of sampled |");
        let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- |");
        let top = self.breakdown.functions.iter().filter(|f| f.0 != Category::Idle).take(15);
        for (i, (category, isolate, frame, n)) in top.enumerate() {
            let ms = self.breakdown.ms(*n);
            let _ = writeln!(
                out,
                "| {} | `{}` | {isolate} | {} | {ms:.0} | {:.1} % |",
                i + 1,
                cpuprofile::display_name(frame),
                short_category(*category),
                100.0 * ms / busy.max(1e-9)
            );
        }
        let _ = writeln!(out);
        self.perf_markdown(&mut out);
        let _ = writeln!(
            out,
            "Flame graph: `{}` ({} KB; every profiled isolate under a root frame `[isolate] name`, idle ticks \
             left out). Open it in speedscope (drop the file on the page; \"Left Heavy\" sums each call path) or \
             in Chrome DevTools (Performance panel, \"Load profile\").",
            self.file,
            self.file_bytes / 1000
        );
        out
    }

    fn perf_markdown(&self, out: &mut String) {
        let (report, main_ms) = match &self.perf {
            Ok(p) => p,
            Err(e) => {
                let _ = writeln!(out, "No perf figures for the main thread: {e}.\n");
                return;
            }
        };
        let per_flow = |pct: f64| pct / 100.0 * main_ms / self.baseline_flows.max(1) as f64;
        let _ = writeln!(
            out,
            "What the main thread runs, by code, from `perf record -e cpu-clock -F 999` on it during the unprofiled \
             baseline ({} logins, {main_ms:.0} ms of main-thread CPU; symbols of workerd's binary, classified by \
             name in `bench/loadgen/src/perf.rs`; no V8 profiler running then):\n",
            self.baseline_flows
        );
        let _ = writeln!(out, "| code | % of main-thread samples | ms per login |");
        let _ = writeln!(out, "| --- | --- | --- |");
        for (code, pct) in &report.by_code {
            let _ = writeln!(out, "| {} | {pct:.1} % | {:.3} |", code.label(), per_flow(*pct));
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "Its symbols with the most samples:\n");
        let _ = writeln!(out, "| symbol | kind | % |");
        let _ = writeln!(out, "| --- | --- | --- |");
        for (pct, code, sym) in report.top.iter().take(10) {
            let sym =
                if sym.chars().count() > 100 { sym.chars().take(97).collect::<String>() + "..." } else { sym.clone() };
            let _ = writeln!(out, "| `{}` | {:?} | {pct:.1} % |", sym.replace('|', "\\|"), code);
        }
        let _ = writeln!(out);
    }

    /// The table as printed.
    pub fn print(&self) -> String {
        self.markdown()
    }
}

fn short_category(c: Category) -> &'static str {
    match c {
        Category::WasmOwn => "wasm: own",
        Category::WasmSerde => "wasm: serde",
        Category::WasmCrypto => "wasm: crypto",
        Category::WasmBindings => "wasm: bindings",
        Category::Glue => "JS glue",
        Category::D1Client => "runtime: D1 client",
        Category::DurableObjectStorage => "runtime: DO storage",
        Category::Subrequests => "runtime: fetch, DO stubs",
        Category::Console => "runtime: console",
        Category::OtherRuntimeApi => "runtime: other",
        Category::Gc => "GC",
        Category::Program => "(program)",
        Category::D1Simulation => "D1 simulation",
        Category::MiniflareEntry => "Miniflare entry",
        Category::QueueBroker => "queue broker",
        Category::OtherIsolate => "other isolate",
        Category::Idle => "idle",
    }
}

/// The section's text before its runs.
fn intro() -> String {
    format!(
        "{HEADING}\n\n\
         Measured by `make profile` (`scripts/profile.sh`, `bench/loadgen/src/profile.rs`): returning users log \
         in (request a code, read it from the fake mail API, verify it with their app's install id; \
         `bench/loadgen/src/login.rs`) against the release bundle on the local workerd, while V8's sampling \
         profiler runs, through workerd's inspector, in each isolate a login touches. workerd runs one isolate \
         per Worker script: ours (`core:user:`) also runs our Durable Object class, `RateLimiter`, so the rate \
         limiter's wasm is in the Worker's rows. Miniflare's D1 simulation, its entry Worker and its queue broker \
         are Worker scripts of their own, each in its own isolate; all of them run on workerd's one main thread. \
         The categories come from each sample's top frame (`bench/loadgen/src/cpuprofile.rs`, unit-tested): wasm \
         frames by crate (names from the wasm's name section), the bundle's JS (`build/index.js`), and a runtime \
         API by the bundle's import that called it. V8 sees JS and wasm, and a native that JS called (a D1 call, a \
         storage `exec`, `console.log`) as that call; what runs outside any isolate, workerd's C++ (HTTP, the RPC \
         between isolates, the event loop) and the kernel, it cannot see: that is the main thread's CPU from /proc \
         less the isolates' ticks. Self time is ticks times the interval, so the sampled rows are estimates; the \
         thread rows are measured. Profiling costs CPU (the row of its own threads) and slows the load a little.\n\n\
         Locally, D1 and the queue are Miniflare's simulations in the same process; in production they run \
         elsewhere and are not the Worker's CPU. Run it again with `PROFILE_LABEL=after make profile` to add a \
         run beside the others.\n"
    )
}

/// `text` (BENCHMARKS.md) with this run's part of the section replaced or added.
pub fn splice(text: &str, run: &Run) -> String {
    let section = match sections::get(text, HEADING) {
        Some(old) => old.to_string(),
        None => intro(),
    };
    let section = sections::splice(&section, &run.subheading(), &run.markdown(), &[]);
    sections::splice(text, HEADING, &section, &[crate::timing::HEADING, "## Analysis"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_are_told_apart_by_name() {
        let cpu =
            |tid, name: &str, user_ms, system_ms| procfs::ThreadCpu { tid, name: name.into(), user_ms, system_ms };
        let before = vec![cpu(10, "workerd", 90.0, 10.0), cpu(11, "V8 DefaultWorke", 5.0, 0.0)];
        let after = vec![
            cpu(10, "workerd", 300.0, 50.0),
            cpu(11, "V8 DefaultWorke", 25.0, 0.0),
            cpu(12, "v8:ProfEvntProc", 30.0, 10.0),
            cpu(13, ":13", 3.0, 0.0),
        ];
        let t = Threads::between(10, &before, &after);
        let want =
            Threads { main_ms: 250.0, main_system_ms: 40.0, v8_background_ms: 20.0, profiler_ms: 40.0, other_ms: 3.0 };
        assert_eq!(t, want);
        assert_eq!(t.total(), 313.0);
    }

    #[test]
    fn only_the_isolates_a_login_touches() {
        for yes in
            ["core:user:", "core:entry", "d1:db", "d1:db:entry", "queues:queue", "queues:queue:otp-edge-delivery"]
        {
            assert!(wanted(yes), "{yes}");
        }
        for no in ["outbound:0", "cache:0", "cache:cache", "MINIFLARE_DEV_CONTROL", "email:store"] {
            assert!(!wanted(no), "{no}");
        }
    }

    #[test]
    fn the_intro_is_kept_and_runs_sit_side_by_side() {
        let text = format!("# Benchmarks\n\ntable\n\n{}\n\nx\n\n## Analysis\n\ny\n", crate::timing::HEADING);
        let with_intro = sections::splice(&text, HEADING, &intro(), &[crate::timing::HEADING]);
        let a = sections::splice(
            sections::get(&with_intro, HEADING).unwrap(),
            "### Run: before",
            "### Run: before\n\n1\n",
            &[],
        );
        let text = sections::splice(&with_intro, HEADING, &a, &[]);
        let b =
            sections::splice(sections::get(&text, HEADING).unwrap(), "### Run: after", "### Run: after\n\n2\n", &[]);
        let text = sections::splice(&text, HEADING, &b, &[]);
        let section = sections::get(&text, HEADING).unwrap();
        assert!(section.starts_with(&intro()));
        assert!(section.contains("### Run: before\n\n1\n\n### Run: after\n\n2\n"));
        assert!(text.find(HEADING).unwrap() < text.find(crate::timing::HEADING).unwrap());
        assert!(text.ends_with("## Analysis\n\ny\n"));
    }
}
