'use strict';
// Renders the Markdown report of tests/bench/phonebook.sh from its JSON-lines results.
// Run with: node tests/bench/report.js results.jsonl   (each line: {"label", "server", "run"})
const fs = require('fs');

const lines = fs.readFileSync(process.argv[2], 'utf8').split('\n').filter((l) => l.trim());
const recs = lines.map((l) => JSON.parse(l));
const SERVERS = ['reference', 'pi-server'];

// The last (accepted) run of each label and server.
function get(label, server) {
  let r = null;
  for (const x of recs) if (x.label === label && x.server === server) r = x;
  return r;
}

const fmt = (v, d = 0) => (v === undefined || v === null || Number.isNaN(v) ? 'n/a' : Number(v).toFixed(d));
const k = (v) => (v === undefined || v === null ? 'n/a' : v >= 1000 ? (v / 1000).toFixed(1) + 'k' : v.toFixed(0));
const ms = (us) => (us === undefined ? 'n/a' : (us / 1000).toFixed(2) + ' ms');
const ratio = (a, b) => (a === undefined || b === undefined || a === null || b === null || !b ? 'n/a' : (a / b).toFixed(2));

const out = [];
const p = (s = '') => out.push(s);

const meta = recs.find((x) => x.label === 'meta');
p(`# Phone book benchmark: reference (Node) vs pi-server`);
p();
if (meta) {
  p(`${meta.date}, ${meta.host}; commit ${meta.commit}; ${meta.cpu}.`);
  p(`Server on core ${meta.server_core}, pb-load on core ${meta.load_core}; ${meta.entries} entries; ` +
    `timed phase ${meta.duration} s after ${meta.warmup} s warm-up; node ${meta.node}.`);
  p(`Command: \`${meta.command}\``);
  p();
}
p('pb-load is a closed loop (one request in flight per keep-alive connection, like wrk), except the ' +
  '"open loop" run (requests due at a fixed rate, latency from the due time, like wrk2). ' +
  'In a closed loop, latency = connections / throughput on average (Little\'s law): at 512 connections it ' +
  'is set by how fast the one-core generator sends, not only by the server. ' +
  'CPU per request = server utime+stime over the timed phase (from /proc) / answers in it. ' +
  '"others CPU" = CPU used by every other process during the timed phase (sum over /proc/*/stat; a quiet run is near 0), ' +
  'with the largest users; "machine busy - server - load" also catches processes that began and ended within the run, plus interrupts.');
p();

const rows = [];
function row(name, label, f, d, ratioName) {
  const a = get(label, 'reference');
  const b = get(label, 'pi-server');
  const va = a ? f(a.run) : undefined;
  const vb = b ? f(b.run) : undefined;
  rows.push([name, typeof va === 'string' ? va : fmt(va, d), typeof vb === 'string' ? vb : fmt(vb, d),
    ratioName === false ? '' : ratio(vb, va)]);
}
const lat = (r) => `${ms(r.latency.p50_us)} / ${ms(r.latency.p99_us)}`;
for (const c of [64, 512]) {
  const L = `lookup-${c}`;
  row(`lookups/s, ${c} connections`, L, (r) => r.requests_per_s, 0);
  row(`lookup p50 / p99, ${c} conn.`, L, lat, 0, false);
  row(`server CPU us per lookup, ${c} conn.`, L, (r) => r.server_cpu_us_per_req, 2);
  row(`server core busy, ${c} conn.`, L, (r) => `${fmt(100 * r.server_util)} %`, 0, false);
}
const OL = 'lookup-512-open';
row(`open loop, 512 conn.: lookups/s achieved`, OL, (r) => `${fmt(r.requests_per_s)} of ${fmt(r.rate_target)}`, 0, false);
row(`  p50 / p99 from due time (no coordinated omission)`, OL, lat, 0, false);
row(`  server CPU us per lookup`, OL, (r) => r.server_cpu_us_per_req, 2);
row('batch lookups (POST /api/lookup, 32 names): names/s', 'lookup-batch', (r) => r.requests_per_s * r.batch, 0, false);
row('  server CPU us per name in a batch', 'lookup-batch', (r) => r.server_cpu_us_per_req / r.batch, 2, false);
row('  p50 / p99 per batch request', 'lookup-batch', lat, 0, false);
row('registrations/s (pi-server: signed)', 'register', (r) => r.requests_per_s, 0);
row('registration p50 / p99', 'register', lat, 0, false);
row('server CPU us per registration', 'register', (r) => r.server_cpu_us_per_req, 2);
row('90/10 mix requests/s, 64 conn.', 'mix', (r) => r.requests_per_s, 0);
row('mix p50 / p99', 'mix', lat, 0, false);
row('server CPU us per mix request', 'mix', (r) => r.server_cpu_us_per_req, 2);
row(`lookups/s, 64 conn. + idle conn. held`, 'idle', (r) => r.requests_per_s, 0);
row('  p50 / p99 with the idle connections', 'idle', lat, 0, false);
row('  server CPU us per lookup', 'idle', (r) => r.server_cpu_us_per_req, 2);
row('  idle connections still answering at the end', 'idle',
  (r) => (r.idle ? `${r.idle.answered} of ${r.idle.held}` : 'n/a'), 0, false);
row('  server RSS with them', 'idle', (r) => `${fmt(r.server_rss_kib / 1024, 1)} MiB`, 0, false);
for (const x of recs.filter((x) => x.label && x.label.startsWith('rss-') && x.server === 'pi-server')) {
  const n = x.run.entries;
  const L = x.label;
  row(`RSS with ${n} entries`, L, (r) => `${fmt(r.server_rss_filled_kib / 1024, 1)} MiB`, 0, false);
  row(`  bytes per entry, (RSS(N) - RSS(empty)) / N`, L,
    (r) => ((r.server_rss_filled_kib - r.server_rss_start_kib) * 1024) / n, 0);
  row(`  RSS(empty) with capacity for N`, L, (r) => `${fmt(r.server_rss_start_kib / 1024, 1)} MiB`, 0, false);
}

p('## Side by side');
p();
p('| measurement | reference | pi-server | pi-server / reference |');
p('|---|---:|---:|---:|');
for (const r of rows) p(`| ${r.join(' | ')} |`);
p();

// Cost of signatures, shown separately.
const vb = recs.find((x) => x.label === 'verify-bench');
const reg = get('register', 'pi-server');
const lkRef = get('lookup-64', 'reference');
const lk64 = get('lookup-64', 'pi-server');
const lk512 = get('lookup-512', 'pi-server');
p('## Cost of signatures (pi-server)');
p();
if (vb) {
  p(`| measurement | value |`);
  p(`|---|---:|`);
  p(`| bare Ed25519 verify loop on the server core (PublicKey::verify) | ${fmt(vb.run.verifies_per_s)} /s = ${fmt(vb.run.us_per_verify, 2)} us |`);
  if (reg) {
    p(`| signed registrations/s | ${fmt(reg.run.requests_per_s)} (server core ${fmt(100 * reg.run.server_util)} % busy) |`);
    p(`| registration CPU per request | ${fmt(reg.run.server_cpu_us_per_req, 2)} us |`);
    p(`| registrations at the server's full core vs bare verify loop | ${fmt((100 * 1e6) / reg.run.server_cpu_us_per_req / vb.run.verifies_per_s)} % (target >= 80 %) |`);
    p(`| registrations/s measured vs bare verify loop | ${fmt((100 * reg.run.requests_per_s) / vb.run.verifies_per_s)} % |`);
    p(`| registration CPU beyond the verify (parse, table, token, HTTP) | ${fmt(reg.run.server_cpu_us_per_req - vb.run.us_per_verify, 2)} us |`);
  }
  if (lk64) p(`| authenticated lookup CPU (token check, no signature) | ${fmt(lk64.run.server_cpu_us_per_req, 2)} us, i.e. ${fmt(lk64.run.server_cpu_us_per_req / vb.run.us_per_verify, 2)} verifies |`);
  p();
}

// Targets of issue 2.
p('## Targets (issue 2)');
p();
p('| target | measured | met |');
p('|---|---:|:-:|');
const yes = (c) => (c === undefined ? '?' : c ? 'yes' : 'no');
if (lk64 && lkRef) {
  const r = lk64.run.server_cpu_us_per_req / lkRef.run.server_cpu_us_per_req;
  p(`| authenticated lookup CPU <= 40 % of the reference's unauthenticated lookup (64 conn.) | ${fmt(100 * r)} % | ${yes(r <= 0.4)} |`);
}
const lkRef512 = get('lookup-512', 'reference');
if (lk512 && lkRef512) {
  const r = lk512.run.server_cpu_us_per_req / lkRef512.run.server_cpu_us_per_req;
  p(`| same at 512 conn. | ${fmt(100 * r)} % | ${yes(r <= 0.4)} |`);
}
if (lk512) p(`| lookup p99 <= 3 ms at 512 conn., closed loop (as fast as pb-load sends: ${k(lk512.run.requests_per_s)}/s) | ${ms(lk512.run.latency.p99_us)} | ${yes(lk512.run.latency.p99_us <= 3000)} |`);
const ol = get(OL, 'pi-server');
if (ol) p(`| lookup p99 <= 3 ms at 512 conn., open loop at ${k(ol.run.rate_target)}/s | ${ms(ol.run.latency.p99_us)} | ${yes(ol.run.latency.p99_us <= 3000 && ol.run.requests_per_s >= 0.98 * ol.run.rate_target)} |`);
if (reg && vb) {
  const r = (1e6 / reg.run.server_cpu_us_per_req) / vb.run.verifies_per_s;
  p(`| registrations >= 80 % of a bare verify loop (per core-second) | ${fmt(100 * r)} % | ${yes(r >= 0.8)} |`);
}
const big = recs.filter((x) => x.label && x.label.startsWith('rss-') && x.server === 'pi-server')
  .sort((a, b) => b.run.entries - a.run.entries)[0];
if (big) {
  const b = ((big.run.server_rss_filled_kib - big.run.server_rss_start_kib) * 1024) / big.run.entries;
  const tot = (big.run.server_rss_filled_kib * 1024) / big.run.entries;
  p(`| <= 200 bytes RSS per entry at ${big.run.entries} entries | ${fmt(b)} B (whole RSS / N: ${fmt(tot)} B) | ${yes(b <= 200)} |`);
}
const idle = get('idle', 'pi-server');
if (idle && idle.run.idle) {
  const i = idle.run.idle;
  p(`| ${i.held} idle keep-alive connections held while 64 others are served | ${i.answered} of ${i.held} answered at the end; ${k(idle.run.requests_per_s)} lookups/s meanwhile | ${yes(i.answered === i.held && idle.run.ok > 0)} |`);
}
p();

// Every run, with the disturbance figures.
p('## Every run');
p();
p('| run | server | scenario | conn. | req/s | p50 | p99 | p99.9 | server core | us/req | load core | others CPU s | machine busy - server - load, s | statuses | errors |');
p('|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|');
for (const x of recs) {
  const r = x.run;
  if (!r || r.requests === undefined) continue;
  const st = Object.entries(r.status).map(([s, n]) => `${s}: ${n}`).join(', ');
  const er = Object.entries(r.errors).map(([s, n]) => `${s}: ${n}`).join(', ') || '-';
  const top = (r.others_top || []).slice(0, 2).map((t) => `${t.comm} ${t.cpu_s}`).join(', ');
  p(`| ${x.label}${x.attempt > 1 ? ` (try ${x.attempt})` : ''} | ${x.server} | ${r.scenario}${r.loop === 'open' ? ` @${k(r.rate_target)}/s` : ''} | ${r.connections}${r.idle_connections ? ` + ${r.idle_connections} idle` : ''} | ${fmt(r.requests_per_s)} | ` +
    `${ms(r.latency.p50_us)} | ${ms(r.latency.p99_us)} | ${ms(r.latency.p999_us)} | ${fmt(100 * r.server_util)} % | ${fmt(r.server_cpu_us_per_req, 2)} | ` +
    `${fmt(100 * r.loadgen_util)} % | ${fmt(r.others_cpu_s, 2)}${top ? ` (${top})` : ''} | ${fmt(r.others_machine_s, 2)} | ${st} | ${er} |`);
}
p();
const wrk = recs.filter((x) => x.label && x.label.startsWith('wrk-'));
if (wrk.length) {
  p('## Cross-check with wrk (1 thread, Lua picks random names)');
  p();
  p('| run | server | req/s | p50 | p99 | server CPU us/req |');
  p('|---|---|---:|---:|---:|---:|');
  for (const x of wrk) {
    p(`| ${x.label} | ${x.server} | ${fmt(x.run.requests_per_s)} | ${x.run.p50} | ${x.run.p99} | ${fmt(x.run.server_cpu_us_per_req, 2)} |`);
  }
  p();
}
const notes = recs.filter((x) => x.label === 'note');
if (notes.length) {
  p('## Notes');
  p();
  for (const n of notes) p(`- ${n.text}`);
  p();
}
process.stdout.write(out.join('\n'));
