//! V8 CPU profiles, as the inspector's `Profiler.stop` returns them (the
//! `.cpuprofile` format that Chrome DevTools and speedscope open): parsing,
//! self time by category, the functions with the most self time, and one
//! merged profile of several isolates.
//!
//! A profile is a call tree (`nodes`, each with a `callFrame` and its
//! `children`) and a sample list (`samples`: the node on top of the stack at
//! each tick; `timeDeltas`: microseconds since the previous tick). workerd
//! runs every isolate on its one main thread, and a profiler only records
//! ticks while its isolate is in use there, so the samples of different
//! isolates are disjoint slices of that thread's time. Self time here is
//! samples times the sampling interval.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    pub function: String,
    pub url: String,
}

struct Node {
    id: u64,
    frame: Frame,
    raw_frame: Value,
    parent: Option<usize>,
    children: Vec<usize>,
}

pub struct Profile {
    /// The inspector target: workerd's name of the Worker script.
    pub isolate: String,
    nodes: Vec<Node>,
    /// Index into `nodes` of each sample, in time order.
    samples: Vec<usize>,
}

impl Profile {
    pub fn parse(isolate: &str, v: &Value) -> Result<Profile, String> {
        let raw = v["nodes"].as_array().ok_or("a profile has nodes")?;
        let mut nodes = Vec::with_capacity(raw.len());
        let mut index: HashMap<u64, usize> = HashMap::new();
        for n in raw {
            let id = n["id"].as_u64().ok_or("a node has an id")?;
            let cf = &n["callFrame"];
            index.insert(id, nodes.len());
            nodes.push(Node {
                id,
                frame: Frame {
                    function: cf["functionName"].as_str().unwrap_or_default().to_string(),
                    url: cf["url"].as_str().unwrap_or_default().to_string(),
                },
                raw_frame: cf.clone(),
                parent: None,
                children: Vec::new(),
            });
        }
        for n in raw {
            let parent = index[&n["id"].as_u64().unwrap()];
            for c in n["children"].as_array().into_iter().flatten() {
                let child = *c.as_u64().and_then(|c| index.get(&c)).ok_or("a child is a node")?;
                nodes[parent].children.push(child);
                nodes[child].parent = Some(parent);
            }
        }
        let samples = v["samples"]
            .as_array()
            .ok_or("a profile has samples")?
            .iter()
            .map(|s| s.as_u64().and_then(|s| index.get(&s).copied()).ok_or("a sample is a node"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Profile { isolate: isolate.to_string(), nodes, samples })
    }

    pub fn sample_count(&self) -> usize {
        self.samples.len()
    }

    /// The frames from `node` up to the root's child, innermost first.
    fn stack(&self, node: usize) -> Vec<&Frame> {
        let mut out = Vec::new();
        let mut at = Some(node);
        while let Some(i) = at {
            if self.nodes[i].parent.is_some() {
                out.push(&self.nodes[i].frame);
            }
            at = self.nodes[i].parent;
        }
        out
    }

    /// Samples per (category, function) of the top frame.
    fn tally(&self) -> HashMap<(Category, Frame), usize> {
        let mut per_node = vec![0usize; self.nodes.len()];
        for &s in &self.samples {
            per_node[s] += 1;
        }
        let mut out = HashMap::new();
        for (i, &n) in per_node.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let stack = self.stack(i);
            let category = categorize(&self.isolate, &stack);
            let frame = stack.first().map_or_else(|| self.nodes[i].frame.clone(), |f| (*f).clone());
            *out.entry((category, frame)).or_insert(0) += n;
        }
        out
    }
}

/// Where a sample's time goes. Rows of the table, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// Our Rust (otp_edge), and the standard library's code it runs
    /// (allocation, formatting, collections).
    WasmOwn,
    /// serde, serde_json and the JS value conversions.
    WasmSerde,
    /// Hashes, HMACs, signatures, the AEAD.
    WasmCrypto,
    /// workers-rs, wasm-bindgen, js-sys and web-sys inside the wasm.
    WasmBindings,
    /// The bundle's JS (build/index.js: the wasm-bindgen imports, exports
    /// and shims) and V8's JS-to-wasm and wasm-to-JS trampolines.
    Glue,
    /// Runtime APIs the Worker calls, by kind: natives and workerd's
    /// built-in JS (`cloudflare-internal:`, `node-internal:`).
    D1Client,
    DurableObjectStorage,
    Subrequests,
    Console,
    OtherRuntimeApi,
    /// V8's garbage collector, in the Worker's isolate.
    Gc,
    /// `(program)`: native code with the isolate in use but no JS frame.
    Program,
    /// Miniflare's D1 simulation (its `d1:` Worker scripts: JS over SQLite).
    D1Simulation,
    /// Miniflare's entry Worker, which every request passes through locally.
    MiniflareEntry,
    /// Miniflare's queue broker and its Worker scripts.
    QueueBroker,
    OtherIsolate,
    /// `(idle)` ticks: the isolate is entered but waiting; not CPU.
    Idle,
}

impl Category {
    pub const ALL: [Category; 17] = [
        Category::WasmOwn,
        Category::WasmSerde,
        Category::WasmCrypto,
        Category::WasmBindings,
        Category::Glue,
        Category::D1Client,
        Category::DurableObjectStorage,
        Category::Subrequests,
        Category::Console,
        Category::OtherRuntimeApi,
        Category::Gc,
        Category::Program,
        Category::D1Simulation,
        Category::MiniflareEntry,
        Category::QueueBroker,
        Category::OtherIsolate,
        Category::Idle,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Category::WasmOwn => "Worker wasm: the service's own Rust (otp_edge, std)",
            Category::WasmSerde => "Worker wasm: serde, serde_json, JS value conversions",
            Category::WasmCrypto => "Worker wasm: crypto (SHA-2, HMAC, Ed25519, ChaCha20-Poly1305)",
            Category::WasmBindings => "Worker wasm: workers-rs and wasm-bindgen bindings",
            Category::Glue => "Worker JS glue (build/index.js, JS<->wasm trampolines)",
            Category::D1Client => "Worker runtime API: D1 client (prepare, bind, batch)",
            Category::DurableObjectStorage => "Worker runtime API: Durable Object storage (SQL, alarms)",
            Category::Subrequests => "Worker runtime API: fetch, Durable Object stubs, queue send",
            Category::Console => "Worker runtime API: console (the JSON log lines)",
            Category::OtherRuntimeApi => "Worker runtime API: other (Request, Response, Headers, crypto, timers)",
            Category::Gc => "Worker isolate: garbage collector",
            Category::Program => "Worker isolate: (program), native code outside JS",
            Category::D1Simulation => "Miniflare's D1 simulation (d1:* isolates, SQLite)",
            Category::MiniflareEntry => "Miniflare's entry Worker (core:entry, local only)",
            Category::QueueBroker => "Miniflare's queue broker (queues:* isolates)",
            Category::OtherIsolate => "other Miniflare isolates",
            Category::Idle => "(idle) ticks, not CPU",
        }
    }

    /// The Worker's own code: what would run on Cloudflare as ours.
    pub fn is_worker_code(self) -> bool {
        matches!(
            self,
            Category::WasmOwn | Category::WasmSerde | Category::WasmCrypto | Category::WasmBindings | Category::Glue
        )
    }
}

/// The isolate of Miniflare's user Worker (ours: the script has no name).
pub fn is_worker_isolate(isolate: &str) -> bool {
    isolate.starts_with("core:user:")
}

/// The category of a sample whose stack is `stack`, innermost frame first.
pub fn categorize(isolate: &str, stack: &[&Frame]) -> Category {
    if !is_worker_isolate(isolate) {
        if let Some(top) = stack.first() {
            if top.function == "(idle)" && top.url.is_empty() {
                return Category::Idle;
            }
        }
        return match isolate.split(':').next().unwrap_or_default() {
            "d1" => Category::D1Simulation,
            "core" if isolate.starts_with("core:entry") => Category::MiniflareEntry,
            "queues" => Category::QueueBroker,
            _ => Category::OtherIsolate,
        };
    }
    let Some(top) = stack.first() else { return Category::Program };
    if top.url.is_empty() {
        match top.function.as_str() {
            "(idle)" => return Category::Idle,
            "(program)" | "(root)" => return Category::Program,
            "(garbage collector)" => return Category::Gc,
            _ => {}
        }
    }
    if top.url.starts_with("wasm://") {
        return wasm_category(&top.function);
    }
    if is_trampoline(&top.function) || is_bundle(&top.url) {
        return Category::Glue;
    }
    // A runtime API: named by the bundle's import that called it (the
    // nearest frame of build/index.js), else by its own name.
    let caller = stack.iter().find(|f| is_bundle(&f.url)).map(|f| f.function.as_str());
    runtime_kind(caller.and_then(import_name).unwrap_or(&top.function), &top.url)
}

fn is_bundle(url: &str) -> bool {
    url == "index.js" || url.ends_with("/index.js")
}

fn is_trampoline(function: &str) -> bool {
    function.starts_with("js-to-wasm") || function.starts_with("wasm-to-js")
}

/// The JS name of a wasm-bindgen import (`__wbg_prepare_3f2a9c...` is
/// `prepare`), if `function` is one.
pub fn import_name(function: &str) -> Option<&str> {
    let rest = function.strip_prefix("__wbg_")?;
    let (name, hash) = rest.rsplit_once('_')?;
    (hash.len() >= 8 && hash.bytes().all(|b| b.is_ascii_hexdigit())).then_some(name)
}

fn runtime_kind(name: &str, url: &str) -> Category {
    if url.contains("d1-api") || url.contains(":d1") {
        return Category::D1Client;
    }
    if url.contains("internal_inspect") || url.contains("console") {
        return Category::Console;
    }
    match name {
        "prepare" | "bind" | "batch" | "first" | "all" | "run" | "raw" | "results" | "meta" => Category::D1Client,
        "exec" | "sql" | "storage" | "setAlarm" | "getAlarm" | "deleteAlarm" | "toArray" | "one" | "rowsRead"
        | "rowsWritten" | "raw_exec" | "databaseSize" => Category::DurableObjectStorage,
        "fetch" | "idFromName" | "get" | "getByName" | "send" | "sendBatch" => Category::Subrequests,
        "log" | "error" | "warn" | "info" | "debug" => Category::Console,
        _ => Category::OtherRuntimeApi,
    }
}

fn wasm_category(function: &str) -> Category {
    let f = function;
    const SERDE: [&str; 3] = ["serde", "JsValue as wasm_bindgen::convert", "from_serde"];
    const CRYPTO: [&str; 13] = [
        "sha2::",
        "hmac::",
        "digest::",
        "ed25519",
        "curve25519",
        "chacha20",
        "poly1305",
        "sha1::",
        "subtle::",
        "block_buffer",
        "crypto_common",
        "jwt_compact",
        "otp_edge::domain::crypto",
    ];
    const BINDINGS: [&str; 8] =
        ["worker::", "wasm_bindgen", "js_sys::", "web_sys::", "worker_sys", "externref", "shim", "__wbindgen"];
    if SERDE.iter().any(|p| f.contains(p)) {
        Category::WasmSerde
    } else if CRYPTO.iter().any(|p| f.contains(p)) {
        Category::WasmCrypto
    } else if f.starts_with("otp_edge::") || f.starts_with("<otp_edge::") {
        Category::WasmOwn
    } else if BINDINGS.iter().any(|p| f.contains(p)) || f.starts_with("js-to-wasm") {
        Category::WasmBindings
    } else {
        Category::WasmOwn
    }
}

/// A function's name for the table: Rust names without their hash, natives
/// as "(native)" with the import that called them when known.
pub fn display_name(frame: &Frame) -> String {
    let f = &frame.function;
    let f = match f.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => head.to_string(),
        _ => f.to_string(),
    };
    let f = if f.is_empty() { "(anonymous)".to_string() } else { f };
    let place = if frame.url.is_empty() {
        "native"
    } else if frame.url.starts_with("wasm://") {
        "wasm"
    } else if is_bundle(&frame.url) {
        "index.js"
    } else {
        frame.url.as_str()
    };
    let mut name = format!("{f} [{place}]");
    if name.chars().count() > 90 {
        name = name.chars().take(87).collect::<String>() + "...";
    }
    name.replace('|', "\\|")
}

/// Self time of every isolate's profile, by category and by function.
pub struct Breakdown {
    pub interval_us: f64,
    pub by_category: BTreeMap<Category, usize>,
    /// (category, isolate, frame) -> samples, sorted by samples, descending.
    pub functions: Vec<(Category, String, Frame, usize)>,
}

impl Breakdown {
    pub fn of(profiles: &[Profile], interval_us: f64) -> Breakdown {
        let mut by_category = BTreeMap::new();
        let mut functions = Vec::new();
        for p in profiles {
            for ((category, frame), n) in p.tally() {
                *by_category.entry(category).or_insert(0) += n;
                functions.push((category, p.isolate.clone(), frame, n));
            }
        }
        functions.sort_by(|a, b| b.3.cmp(&a.3).then_with(|| a.2.function.cmp(&b.2.function)));
        Breakdown { interval_us, by_category, functions }
    }

    pub fn ms(&self, samples: usize) -> f64 {
        samples as f64 * self.interval_us / 1000.0
    }

    pub fn category_ms(&self, c: Category) -> f64 {
        self.ms(self.by_category.get(&c).copied().unwrap_or(0))
    }

    /// Sampled CPU: every tick but the idle ones.
    pub fn busy_ms(&self) -> f64 {
        self.by_category.iter().filter(|(c, _)| **c != Category::Idle).map(|(_, n)| self.ms(*n)).sum()
    }
}

/// One profile of several isolates: a root whose children are the isolates
/// (`[isolate] name`), each with its own call tree, and their non-idle
/// samples one after another at the sampling interval, so that flame graphs
/// show each isolate's share of the sampled CPU (a timeline view shows busy
/// time only, in order per isolate).
pub fn merge(profiles: &[Profile], interval_us: f64) -> Value {
    let mut nodes = vec![json!({
        "id": 1,
        "callFrame": {"functionName": "(root)", "scriptId": "0", "url": "", "lineNumber": -1, "columnNumber": -1},
        "hitCount": 0,
        "children": [],
    })];
    let mut root_children = Vec::new();
    let mut samples = Vec::new();
    let mut next_id = 2u64;
    for p in profiles {
        let busy: Vec<usize> = p.samples.iter().copied().filter(|&s| p.nodes[s].frame.function != "(idle)").collect();
        if busy.is_empty() {
            continue;
        }
        let isolate_id = next_id;
        next_id += 1;
        root_children.push(isolate_id);
        // New ids: the isolate's node, then its nodes but the root, in order.
        let mut ids = vec![0u64; p.nodes.len()];
        for (i, n) in p.nodes.iter().enumerate() {
            if n.parent.is_none() {
                ids[i] = isolate_id;
            } else {
                ids[i] = next_id;
                next_id += 1;
            }
        }
        let mut hits = vec![0u64; p.nodes.len()];
        for &s in &busy {
            hits[s] += 1;
            samples.push(ids[s]);
        }
        for (i, n) in p.nodes.iter().enumerate() {
            let children: Vec<u64> = n.children.iter().map(|&c| ids[c]).collect();
            let call_frame = if n.parent.is_none() {
                json!({"functionName": format!("[isolate] {}", p.isolate), "scriptId": "0", "url": "", "lineNumber": -1, "columnNumber": -1})
            } else {
                n.raw_frame.clone()
            };
            debug_assert!(n.id > 0);
            nodes.push(json!({"id": ids[i], "callFrame": call_frame, "hitCount": hits[i], "children": children}));
        }
    }
    nodes[0]["children"] = json!(root_children);
    let step = interval_us.round() as u64;
    let deltas: Vec<u64> = samples.iter().map(|_| step).collect();
    json!({
        "nodes": nodes,
        "startTime": 0,
        "endTime": step * samples.len() as u64,
        "samples": samples,
        "timeDeltas": deltas,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, url: &str) -> Frame {
        Frame { function: function.into(), url: url.into() }
    }

    const WASM: &str = "wasm://wasm/otp_edge.wasm-003c45c2";

    #[test]
    fn wasm_frames_by_crate() {
        let user = "core:user:";
        let cat = |name: &str| categorize(user, &[&frame(name, WASM)]);
        assert_eq!(cat("otp_edge::flows::otp_verify::complete::{{closure}}::h1234567890abcdef"), Category::WasmOwn);
        assert_eq!(cat("dlmalloc::dlmalloc::Dlmalloc<A>::malloc::h1234567890abcdef"), Category::WasmOwn);
        assert_eq!(cat("serde_json::de::from_str::h1234567890abcdef"), Category::WasmSerde);
        assert_eq!(cat("core::ptr::drop_in_place<serde_json::value::Value>::h1234567890abcdef"), Category::WasmSerde);
        assert_eq!(cat("sha2::sha256::compress256::h1234567890abcdef"), Category::WasmCrypto);
        assert_eq!(cat("ed25519_compact::edwards25519::ge_scalarmult_base::h1234567890abcdef"), Category::WasmCrypto);
        assert_eq!(cat("<worker::request::Request as core::convert::From<..>>::from::h12"), Category::WasmBindings);
        assert_eq!(cat("js_sys::futures::queue::Queue::new::{{closure}}::h1"), Category::WasmBindings);
        assert_eq!(cat("fetch externref shim"), Category::WasmBindings);
        assert_eq!(cat("js-to-wasm::"), Category::WasmBindings);
    }

    #[test]
    fn glue_trampolines_and_vm_states() {
        let user = "core:user:";
        assert_eq!(categorize(user, &[&frame("__wbg_cf_e4bf1d08e9961dec", "build/index.js")]), Category::Glue);
        assert_eq!(categorize(user, &[&frame("I", "/work/x/build/index.js")]), Category::Glue);
        assert_eq!(categorize(user, &[&frame("wasm-to-js", "")]), Category::Glue);
        assert_eq!(categorize(user, &[&frame("(garbage collector)", "")]), Category::Gc);
        assert_eq!(categorize(user, &[&frame("(program)", "")]), Category::Program);
        assert_eq!(categorize(user, &[&frame("(idle)", "")]), Category::Idle);
        assert_eq!(categorize(user, &[]), Category::Program);
    }

    #[test]
    fn runtime_apis_by_the_import_that_called_them() {
        let user = "core:user:";
        let native = |name: &str, import: &str| {
            let (n, i, w) = (frame(name, ""), frame(import, "build/index.js"), frame("wasm-to-js", ""));
            categorize(user, &[&n, &i, &w])
        };
        assert_eq!(native("exec", "__wbg_exec_0a1b2c3d4e5f6a7b"), Category::DurableObjectStorage);
        assert_eq!(native("setAlarm", "__wbg_setAlarm_0a1b2c3d4e5f6a7b"), Category::DurableObjectStorage);
        assert_eq!(native("", "__wbg_log_ff86bbb34c295e21"), Category::Console);
        assert_eq!(native("fetch", "__wbg_fetch_0a1b2c3d4e5f6a7b"), Category::Subrequests);
        assert_eq!(native("", "__wbg_batch_0a1b2c3d4e5f6a7b"), Category::D1Client);
        assert_eq!(
            native("Response", "__wbg_new_with_opt_buffer_source_and_init_efb63b64b37a12c7"),
            Category::OtherRuntimeApi
        );
        // Built-in JS of the runtime, and natives with no import above them.
        assert_eq!(categorize(user, &[&frame("_sendOrThrow", "cloudflare-internal:d1-api")]), Category::D1Client);
        assert_eq!(categorize(user, &[&frame("formatLog", "node-internal:internal_inspect")]), Category::Console);
        assert_eq!(categorize(user, &[&frame("queueMicrotask", "")]), Category::OtherRuntimeApi);
    }

    #[test]
    fn other_isolates_are_miniflares() {
        let f = frame("#query", "database.worker.js");
        assert_eq!(categorize("d1:db", &[&f]), Category::D1Simulation);
        assert_eq!(categorize("d1:db:entry", &[&f]), Category::D1Simulation);
        assert_eq!(categorize("core:entry", &[&f]), Category::MiniflareEntry);
        assert_eq!(categorize("queues:queue:otp-edge-delivery", &[&f]), Category::QueueBroker);
        assert_eq!(categorize("cache:0", &[&f]), Category::OtherIsolate);
        assert_eq!(categorize("d1:db", &[&frame("(idle)", "")]), Category::Idle);
    }

    #[test]
    fn import_names() {
        assert_eq!(import_name("__wbg_prepare_3f2a9c0d11223344"), Some("prepare"));
        assert_eq!(import_name("__wbg_new_with_length_01b143a7e5dd5a3e"), Some("new_with_length"));
        assert_eq!(import_name("__wbg_ptr"), None);
        assert_eq!(import_name("I"), None);
    }

    #[test]
    fn display_names() {
        assert_eq!(display_name(&frame("otp_edge::log::emit::h5b2e790ae0fade14", WASM)), "otp_edge::log::emit [wasm]");
        assert_eq!(display_name(&frame("", "")), "(anonymous) [native]");
        assert_eq!(display_name(&frame("I", "build/index.js")), "I [index.js]");
        assert_eq!(display_name(&frame("a|b", "x.js")), "a\\|b [x.js]");
        assert!(display_name(&frame(&"x".repeat(200), WASM)).ends_with("..."));
    }

    /// root -> fetch (glue) -> wasm handler -> { sha256, exec (native) }, plus idle and GC.
    fn worker_profile() -> Value {
        let cf = |name: &str, url: &str| json!({"functionName": name, "url": url, "scriptId": "1", "lineNumber": 0, "columnNumber": 0});
        json!({
            "nodes": [
                {"id": 1, "callFrame": cf("(root)", ""), "children": [2, 6, 7]},
                {"id": 2, "callFrame": cf("fetch", "build/index.js"), "children": [3]},
                {"id": 3, "callFrame": cf("otp_edge::handle::h0123456789abcdef", WASM), "children": [4, 5]},
                {"id": 4, "callFrame": cf("sha2::sha256::compress256::h0123456789abcdef", WASM)},
                {"id": 5, "callFrame": cf("exec", ""), "children": []},
                {"id": 6, "callFrame": cf("(idle)", "")},
                {"id": 7, "callFrame": cf("(garbage collector)", "")}
            ],
            "startTime": 100, "endTime": 2100,
            "samples": [3, 4, 4, 5, 6, 6, 6, 7, 2, 4],
            "timeDeltas": [200, 200, 200, 200, 200, 200, 200, 200, 200, 200]
        })
    }

    #[test]
    fn self_time_by_category_and_function() {
        let worker = Profile::parse("core:user:", &worker_profile()).unwrap();
        let d1 = Profile::parse(
            "d1:db",
            &json!({"nodes": [{"id": 1, "callFrame": {"functionName": "(root)", "url": ""}, "children": [2]},
                              {"id": 2, "callFrame": {"functionName": "#query", "url": "database.worker.js"}}],
                    "samples": [2, 2, 1], "timeDeltas": [1, 1, 1]}),
        )
        .unwrap();
        assert_eq!(worker.sample_count(), 10);
        let b = Breakdown::of(&[worker, d1], 200.0);
        assert_eq!(b.by_category[&Category::WasmCrypto], 3);
        assert_eq!(b.by_category[&Category::WasmOwn], 1);
        // exec has no import above it here: named by itself.
        assert_eq!(b.by_category[&Category::DurableObjectStorage], 1);
        assert_eq!(b.by_category[&Category::Idle], 3);
        assert_eq!(b.by_category[&Category::Gc], 1);
        assert_eq!(b.by_category[&Category::Glue], 1);
        // The d1 isolate's root tick counts as its own: it is busy there.
        assert_eq!(b.by_category[&Category::D1Simulation], 3);
        assert!((b.category_ms(Category::WasmCrypto) - 0.6).abs() < 1e-9);
        assert!((b.busy_ms() - 10.0 * 0.2).abs() < 1e-9);
        let top = b.functions.iter().find(|f| f.0 != Category::Idle).unwrap();
        assert_eq!((top.2.function.as_str(), top.3), ("sha2::sha256::compress256::h0123456789abcdef", 3));
    }

    #[test]
    fn merged_profile_keeps_every_busy_sample_under_its_isolate() {
        let worker = Profile::parse("core:user:", &worker_profile()).unwrap();
        let again = Profile::parse("d1:db", &worker_profile()).unwrap();
        let merged = merge(&[worker, again], 200.0);
        // Re-read as a profile: 7 busy samples each (3 idle dropped).
        let m = Profile::parse("merged", &merged).unwrap();
        assert_eq!(m.sample_count(), 14);
        let nodes = merged["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 1 + 2 * 7);
        let ids: std::collections::HashSet<u64> = nodes.iter().map(|n| n["id"].as_u64().unwrap()).collect();
        assert_eq!(ids.len(), nodes.len(), "ids are unique");
        let isolates: Vec<&str> = merged["nodes"][0]["children"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let n = nodes.iter().find(|n| n["id"] == *c).unwrap();
                n["callFrame"]["functionName"].as_str().unwrap()
            })
            .collect();
        assert_eq!(isolates, ["[isolate] core:user:", "[isolate] d1:db"]);
        // Each sample's stack reaches its isolate's node.
        let top = m.stack(m.samples[0]);
        assert_eq!(top.last().unwrap().function, "[isolate] core:user:");
        assert_eq!(merged["timeDeltas"].as_array().unwrap().len(), 14);
        assert_eq!(merged["endTime"], 14 * 200);
    }
}
