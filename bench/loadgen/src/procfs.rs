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
