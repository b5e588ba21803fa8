//! `perf` on workerd's main thread: what V8's profiler cannot name, the
//! runtime's C++ (V8 itself, SQLite, KJ and Cap'n Proto, the allocator) and
//! the kernel, by symbol. Optional: used when `perf` is installed and
//! allowed to sample (Debian's linux-perf; software clock events, so it
//! works in VMs without hardware counters). workerd's binary keeps its
//! symbols; JIT code (JS and wasm) has none for perf and is counted as one.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Code {
    Jit,
    V8Builtins,
    V8Gc,
    V8Compiler,
    V8Runtime,
    Sqlite,
    Runtime,
    Allocator,
    Libc,
    Kernel,
    Other,
}

impl Code {
    pub fn label(self) -> &'static str {
        match self {
            Code::Jit => "JIT code: JS and wasm as compiled (V8's profile splits it)",
            Code::V8Builtins => "V8 builtins (Builtins_*: calls, promises, property access, JSON)",
            Code::V8Gc => "V8 garbage collection (scavenger, marking, sweeping, cppgc)",
            Code::V8Compiler => "V8 compilers (Turbofan, Liftoff, parsing)",
            Code::V8Runtime => "V8 runtime (handles, API calls, objects)",
            Code::Sqlite => "SQLite (D1's and the Durable Objects' storage)",
            Code::Runtime => "workerd's runtime (jsg bindings, KJ event loop, Cap'n Proto RPC, HTTP)",
            Code::Allocator => "tcmalloc (C++ allocation)",
            Code::Libc => "libc (memcpy, strlen, locks)",
            Code::Kernel => "kernel (syscalls, signals, scheduling)",
            Code::Other => "other",
        }
    }
}

/// What a sample's symbol is, from perf's dso and symbol columns.
pub fn classify(dso: &str, symbol: &str) -> Code {
    let s = symbol;
    if dso.starts_with("[kernel") || dso.starts_with("[k]") {
        return Code::Kernel;
    }
    if dso.starts_with("[JIT]") || dso.starts_with("perf-") || (dso.starts_with("[unknown]") && s.starts_with("0x")) {
        return Code::Jit;
    }
    if dso.starts_with("libc") || dso.starts_with("libm") || dso.starts_with("[vdso]") || dso.starts_with("ld-linux") {
        return Code::Libc;
    }
    const SQLITE: [&str; 12] =
        ["sqlite3", "wal", "pcache", "pager", "btree", "vdbe", "balance", "moveTo", "unix", "yy_", "robust", "sqlite"];
    if SQLITE.iter().any(|p| s.starts_with(p)) {
        return Code::Sqlite;
    }
    if s.contains("tcmalloc") || s.starts_with("TCMalloc") {
        return Code::Allocator;
    }
    if s.starts_with("Builtins_") {
        return Code::V8Builtins;
    }
    let v8 = s.contains("v8::") || s.starts_with("cppgc::") || s.contains("heap::base");
    if v8 {
        const GC: [&str; 10] = [
            "Scavenge",
            "MarkCompact",
            "Marking",
            "Sweeper",
            "cppgc::",
            "GCTracer",
            "::Heap::",
            "Evacuat",
            "Minor",
            "Mark",
        ];
        const COMPILER: [&str; 5] = ["compiler::", "wasm::Liftoff", "wasm::Compil", "Parser", "Scanner"];
        if COMPILER.iter().any(|p| s.contains(p)) {
            return Code::V8Compiler;
        }
        if GC.iter().any(|p| s.contains(p)) {
            return Code::V8Gc;
        }
        return Code::V8Runtime;
    }
    if s.contains("workerd::") || s.contains("kj::") || s.contains("capnp::") || s.contains("edgeworker") {
        return Code::Runtime;
    }
    Code::Other
}

/// Percent of samples per kind, and the symbols with the most, from the
/// text of `perf report --no-children -g none --sort dso,sym --stdio -t '|'`.
#[derive(Debug, Default)]
pub struct Report {
    pub by_code: BTreeMap<Code, f64>,
    pub top: Vec<(f64, Code, String)>,
}

pub fn parse_report(text: &str) -> Report {
    let mut r = Report::default();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let mut cols = line.splitn(3, '|');
        let (Some(pct), Some(dso), Some(sym)) = (cols.next(), cols.next(), cols.next()) else { continue };
        let Some(pct) = pct.trim().strip_suffix('%').and_then(|p| p.parse::<f64>().ok()) else { continue };
        let dso = dso.trim();
        let sym = sym.trim();
        let sym = sym.strip_prefix("[k] ").or_else(|| sym.strip_prefix("[.] ")).unwrap_or(sym).trim();
        let code = classify(dso, sym);
        *r.by_code.entry(code).or_insert(0.0) += pct;
        r.top.push((pct, code, if code == Code::Jit { "(JIT code)".into() } else { sym.to_string() }));
    }
    r.top.sort_by(|a, b| b.0.total_cmp(&a.0));
    r
}

/// perf, if it is installed and may sample here, else why not.
pub fn check() -> Result<(), String> {
    let out = Command::new("perf")
        .args(["record", "-q", "-e", "cpu-clock", "-o", "/dev/null", "--", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("perf is not installed ({e}); Debian's linux-perf has it"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("perf record fails here: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Samples thread `tid` at 999 Hz for `seconds` into `data`; ends by itself.
pub fn record(tid: u32, seconds: u64, data: &Path) -> std::io::Result<Child> {
    Command::new("perf")
        .args(["record", "-q", "-e", "cpu-clock", "-F", "999", "-t", &tid.to_string(), "-o"])
        .arg(data)
        .args(["--", "sleep", &seconds.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

pub fn report(data: &Path) -> Result<Report, String> {
    let out = Command::new("perf")
        .args(["report", "--no-children", "-g", "none", "--sort", "dso,sym", "--stdio", "-t", "|", "-i"])
        .arg(data)
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("perf report: {e}"))?;
    let r = parse_report(&String::from_utf8_lossy(&out.stdout));
    if r.by_code.is_empty() {
        return Err("perf report found no samples".into());
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_by_kind() {
        assert_eq!(classify("[kernel.kallsyms]", "irqentry_exit_to_user_mode"), Code::Kernel);
        assert_eq!(classify("[JIT] tid 3383", "0x00007f2a1c0042ab"), Code::Jit);
        assert_eq!(classify("libc.so.6", "__memmove_avx512_unaligned_erms"), Code::Libc);
        assert_eq!(classify("workerd", "sqlite3VdbeExec"), Code::Sqlite);
        assert_eq!(classify("workerd", "walChecksumBytes"), Code::Sqlite);
        assert_eq!(
            classify("workerd", "tcmalloc::tcmalloc_internal::alloc_small_sampled_hooks_or_perthread<x>"),
            Code::Allocator
        );
        assert_eq!(classify("workerd", "TCMallocInternalDeleteArrayNothrow"), Code::Allocator);
        assert_eq!(classify("workerd", "Builtins_WasmLiftoffFrameSetup"), Code::V8Builtins);
        assert_eq!(
            classify("workerd", "v8::internal::Scavenger::ScavengeObject<v8::internal::FullHeapObjectSlot>"),
            Code::V8Gc
        );
        assert_eq!(classify("workerd", "cppgc::internal::MakeGarbageCollectedTraitInternal::Allocate"), Code::V8Gc);
        assert_eq!(
            classify("workerd", "v8::internal::compiler::LinearScanAllocator::ForwardStateTo"),
            Code::V8Compiler
        );
        assert_eq!(classify("workerd", "v8::internal::GlobalHandles::Create"), Code::V8Runtime);
        assert_eq!(
            classify("workerd", "std::__1::__tree<std::__1::__value_type<unsigned long, v8::internal::X>>"),
            Code::V8Runtime
        );
        assert_eq!(
            classify("workerd", "kj::_::HeapDisposer<workerd::api::Headers::Header>::disposeImpl"),
            Code::Runtime
        );
        assert_eq!(classify("workerd", "workerd::jsg::HeapTracer::ResetRoot"), Code::Runtime);
        assert_eq!(classify("workerd", "absl::lts_20260817::Mutex::lock"), Code::Other);
    }

    #[test]
    fn report_lines_are_parsed() {
        let text = "# Samples: 2K of event 'cpu-clock'\n#\n\
                    \x2012.70% |[kernel.kallsyms]|[k] irqentry_exit_to_user_mode\n\
                    \x20 6.61% |[JIT] tid 3383   |[.] 0x00007f2a1c0042ab\n\
                    \x20 4.33%  |workerd          |[.] tcmalloc::alloc<a|b>\n\
                    \x20 0.52%  |workerd          |[.] sqlite3VdbeExec\n\
                    \x20 0.48%  |workerd          |[.] sqlite3BtreeNext\n\
                    \n";
        let r = parse_report(text);
        assert_eq!(r.by_code[&Code::Kernel], 12.70);
        assert_eq!(r.by_code[&Code::Jit], 6.61);
        assert_eq!(r.by_code[&Code::Allocator], 4.33);
        assert!((r.by_code[&Code::Sqlite] - 1.0).abs() < 1e-9);
        assert_eq!(r.top[0], (12.70, Code::Kernel, "irqentry_exit_to_user_mode".to_string()));
        assert_eq!(r.top[2].2, "tcmalloc::alloc<a|b>", "a | inside a symbol stays");
        assert!(parse_report("").by_code.is_empty());
    }
}
