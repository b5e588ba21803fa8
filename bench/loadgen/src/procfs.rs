//! CPU time and peak memory of processes, from /proc.

use std::fs;

/// Clock ticks per second for /proc/<pid>/stat (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// User plus system CPU milliseconds used so far by `pids`.
pub fn cpu_ms(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|pid| fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .map(|stat| {
            // Fields after the parenthesised command name; utime and stime are 14 and 15.
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
                + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            ticks * 1000.0 / TICKS_PER_SECOND
        })
        .sum()
}

/// Peak resident memory (VmHWM) summed over `pids`, in KiB.
pub fn peak_rss_kb(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}

/// `root` and all its descendants whose command name is `name`.
pub fn descendants_named(root: u32, name: &str) -> Vec<u32> {
    let mut all = vec![root];
    let mut i = 0;
    while i < all.len() {
        let parent = all[i];
        if let Ok(entries) = fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
                let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
                let ppid = stat
                    .rsplit_once(')')
                    .and_then(|(_, r)| r.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<u32>().ok());
                if ppid == Some(parent) && !all.contains(&pid) {
                    all.push(pid);
                }
            }
        }
        i += 1;
    }
    all.into_iter()
        .filter(|pid| fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name))
        .collect()
}

/// One thread's CPU so far.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadCpu {
    pub tid: u32,
    pub name: String,
    pub user_ms: f64,
    pub system_ms: f64,
}

/// The CPU so far of each thread of `pid`.
pub fn thread_cpu_ms(pid: u32) -> Vec<ThreadCpu> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        let Ok(tid) = task.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = fs::read_to_string(task.path().join("stat")) else { continue };
        if let Some((name, user_ms, system_ms)) = parse_stat(&stat) {
            out.push(ThreadCpu { tid, name, user_ms, system_ms });
        }
    }
    out
}

/// The command name, user and system CPU milliseconds of a /proc/<pid>/stat
/// (or task stat) line.
fn parse_stat(stat: &str) -> Option<(String, f64, f64)> {
    let open = stat.find('(')?;
    let (name, rest) = stat[open + 1..].rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).map(|t| t * 1000.0 / TICKS_PER_SECOND);
    Some((name.to_string(), ticks(11)?, ticks(12)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_name_and_cpu() {
        // utime 250 and stime 30 ticks (fields 14 and 15); a name with spaces and ")".
        let line = "4242 (V8 DefaultWorke) S 1 2 3 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 9 0 123 0 0";
        assert_eq!(parse_stat(line), Some(("V8 DefaultWorke".to_string(), 2500.0, 300.0)));
        let odd = "7 (a) b) R 1 2 3 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 1 0 0";
        assert_eq!(parse_stat(odd), Some(("a) b".to_string(), 10.0, 20.0)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_has_threads() {
        let threads = thread_cpu_ms(std::process::id());
        assert!(threads.iter().any(|t| t.tid == std::process::id()));
    }
}
