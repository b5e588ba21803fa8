// Serves a built Worker on the local workerd through Miniflare's programmatic
// API: the runtime `wrangler dev` uses, without wrangler's dev proxy in front.
// Used by the benchmark (bench/). Fresh, in-memory D1 and Durable Object
// state; migrations from migrations/ are applied, optional seed SQL after.
//
//   node bench/serve.mjs --script build/index.js --port 8800 \
//        [--migrations migrations] [--seed-sql file] [--var KEY=VALUE ...] \
//        [--inspector-port 9229]
// Prints one JSON line {"ready": url} when it answers, then serves until killed.
// With --inspector-port, workerd's V8 inspector listens there (127.0.0.1):
// GET /json lists one target per Worker script, each isolate (make profile).
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { Miniflare, convertV4MiniflareOptions } from "miniflare";

const args = process.argv.slice(2);
const opt = { vars: {} };
for (let i = 0; i < args.length; i += 2) {
  const [k, v] = [args[i], args[i + 1]];
  if (k === "--var") {
    const eq = v.indexOf("=");
    opt.vars[v.slice(0, eq)] = v.slice(eq + 1);
  } else opt[k.replace(/^--/, "")] = v;
}

const withStorage = !!opt.migrations;
// Miniflare 5 takes a new option format; the v4 one is converted.
const mf = new Miniflare(
  convertV4MiniflareOptions({
    host: "127.0.0.1",
    port: Number(opt.port),
    ...(opt["inspector-port"] && { inspectorPort: Number(opt["inspector-port"]) }),
    // worker-build's bundle: index.js imports ./index_bg.wasm beside it.
    modules: [
      { type: "ESModule", path: resolve(opt.script) },
      { type: "CompiledWasm", path: resolve(dirname(opt.script), "index_bg.wasm") },
    ],
    compatibilityDate: "2026-11-01",
    bindings: opt.vars,
    ...(withStorage && {
      d1Databases: { DB: "bench-db" },
      durableObjects: { RATE_LIMITER: { className: "RateLimiter", useSQLite: true } },
      // The delivery queue, as wrangler.toml declares it: login codes go
      // out through it, as in production.
      queueProducers: { DELIVERY_QUEUE: "otp-edge-delivery" },
      queueConsumers: {
        "otp-edge-delivery": { maxBatchSize: 10, maxBatchTimeout: 0, maxRetries: 5, deadLetterQueue: "otp-edge-delivery-dlq" },
        "otp-edge-delivery-dlq": { maxBatchSize: 10, maxBatchTimeout: 0, maxRetries: 5 },
      },
    }),
  }),
);
const url = await mf.ready;

if (withStorage) {
  const db = await mf.getD1Database("DB");
  const files = readdirSync(opt.migrations).filter((f) => f.endsWith(".sql")).sort();
  for (const f of files) await execAll(db, readFileSync(join(opt.migrations, f), "utf8"));
  if (opt["seed-sql"]) await execAll(db, readFileSync(opt["seed-sql"], "utf8"));
}
console.log(JSON.stringify({ ready: url.toString() }));

// Runs a SQL file statement by statement (our files have no ";" or "--"
// inside string literals, so stripping comments and splitting is exact),
// except that a trigger's body keeps its ";"s up to its END.
async function execAll(db, sql) {
  const parts = sql
    .split("\n")
    .map((l) => l.replace(/--.*$/, ""))
    .join("\n")
    .split(";")
    .map((s) => s.trim())
    .filter(Boolean);
  const statements = [];
  for (const part of parts) {
    const last = statements.length - 1;
    if (last >= 0 && /^CREATE\s+TRIGGER\b/i.test(statements[last]) && !/\bEND$/i.test(statements[last])) {
      statements[last] += ";\n" + part;
    } else statements.push(part);
  }
  for (const s of statements) await db.prepare(s).run();
}

for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, async () => {
    await mf.dispose();
    process.exit(0);
  });
}
