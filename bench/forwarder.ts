/**
 * npm run bench:forwarder — how fast the forwarder drains a backlog to a local Conversions API (the fake
 * Meta server of test/fakes/meta, validating every event as Meta does, in a process of its own).
 *
 *   (base) the raw drain loop of performance.md §3: BEGIN; SELECT … LIMIT 1000 FOR UPDATE SKIP LOCKED;
 *          POST pre-built events (no mapping, no hashing, no validation); UPDATE status = 1; COMMIT;
 *   (f1)   the forwarder's pixel worker (lease claim, mapping, hashing, local validation, POST, record)
 *          with one batch in flight;
 *   (fN)   the same with BENCH_IN_FLIGHT (default 3) batches in flight;
 * then the drain time of a BENCH_BACKLOG (default 100,000) backlog with fN.
 *
 * Rounds are interleaved with a rotating order; TRUNCATE + CHECKPOINT before each run. Prints events/s and
 * CPU time per event (forwarder, fake Meta, PostgreSQL) per run, the medians and ratios (per-round ratios'
 * median), and last a JSON line. BENCH_EVENTS (default 20,000) events per throughput run, BENCH_ROUNDS
 * (default 3); BENCH_MODES (e.g. fN) runs a subset, for profiling.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { startDatabase } from '../core/db/embedded-postgres.js';
import { migrate } from '../core/db/migrations.js';
import { createPool } from '../core/db/pool.js';
import { createLogger } from '../core/logging.js';
import { GRAPH_API_VERSION } from '../forwarder/graph-client.js';
import { createForwarderMetrics } from '../forwarder/metrics.js';
import { PixelWorker, type WorkerSettings } from '../forwarder/pixel-worker.js';
import { StripeCustomers } from '../forwarder/stripe-customers.js';
import type { ServerEvent } from '../forwarder/meta/event.js';

const EVENTS = Number(process.env.BENCH_EVENTS ?? 20_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const IN_FLIGHT = Number(process.env.BENCH_IN_FLIGHT ?? 3);
const BACKLOG = Number(process.env.BENCH_BACKLOG ?? 100_000);
/** Comma-separated subset of base,f1,fN to run (for profiling); all by default. */
const ONLY = process.env.BENCH_MODES?.split(',');
const TOKEN = 'EAAbenchTOKEN0123456789';
const PIXEL_ID = '123456789012345';
const DESTINATION = 'meta:bench/pixel';

type Mode = 'base' | 'f1' | 'fN';
/** argv[2] of this script when it runs as the fake Meta's process. */
const FAKE_META_ARG = 'fake-meta';

/**
 * The fake Meta server in a process of its own (this script, started with FAKE_META_ARG), as Meta is:
 * it shares the two cores but neither the forwarder's event loop nor its garbage collector threads, so
 * each side's CPU time is its own.
 */
async function startMeta(): Promise<{
  url: string;
  pid: number;
  counters: () => Promise<{ delivered: number; duplicates: number }>;
  close: () => Promise<void>;
}> {
  const child = fork(fileURLToPath(import.meta.url), [FAKE_META_ARG], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const next = () =>
    new Promise<unknown>((resolve, reject) => {
      child.once('message', resolve);
      child.once('exit', (code) => reject(new Error(`fake Meta exited with ${code}`)));
    });
  const { url } = (await next()) as { url: string };
  return {
    url,
    pid: child.pid!,
    counters: async () => {
      child.send('counters');
      return (await next()) as { delivered: number; duplicates: number };
    },
    close: async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.send('close');
      await exited;
    },
  };
}

async function serveFakeMeta(): Promise<void> {
  const { startFakeMeta } = await import('../test/fakes/meta/server.js');
  const meta = await startFakeMeta();
  const pixel = meta.state.addPixel(PIXEL_ID, { tokens: [TOKEN] });
  process.on('message', (m) => {
    if (m === 'counters') {
      process.send!({ delivered: pixel.delivered.length, duplicates: pixel.counters.duplicates });
    } else if (m === 'close') {
      void meta.close().then(() => process.exit(0));
    }
  });
  process.send!({ url: meta.url });
}

/** A backlog of `n` invoice.paid events with customer data and click ids, written set-based. */
async function fill(pool: pg.Pool, n: number): Promise<void> {
  await pool.query('TRUNCATE outbox, events CASCADE');
  await pool.query('CHECKPOINT');
  for (let start = 1; start <= n; start += 50_000) {
    const end = Math.min(n, start + 49_999);
    await pool.query(
      `WITH ev AS (
         INSERT INTO events (source, integration, idempotency_key, provider_event_id, provider_type, conversion_type,
                             occurred_at, amount_minor, currency, customer_id, customer_email, attribution, details,
                             payload)
         SELECT 'stripe', 'bench/acme', 'self:evt_' || g, 'evt_' || g, 'invoice.paid', 'invoice_paid',
                now() - interval '1 minute', 1000 + g, 'EUR', 'cus_' || g, 'Buyer' || g || '@Example.com',
                jsonb_build_object('fbc', 'fb.1.1700000000000.IwAR' || g, 'fbp', 'fb.1.1700000000000.' || g,
                                   'client_ip', '203.0.113.' || (g % 250), 'client_user_agent', 'Mozilla/5.0 (X11)'),
                jsonb_build_object(
                  'invoice', 'in_' || g, 'billingReason', 'subscription_cycle',
                  -- 500 first names, 2,000 last names, 1,000 cities: customers share names and places.
                  'customerName', 'First' || (g % 500) || ' Last' || (g % 2000),
                  'customerPhone', '+1 415 555 ' || lpad((g % 10000)::text, 4, '0'),
                  'customerAddress', jsonb_build_object(
                    'city', 'City ' || (g % 1000), 'state', (ARRAY['CA', 'NY', 'TX', 'WA', 'IL'])[g % 5 + 1],
                    'postal_code', lpad((10000 + g % 1000)::text, 5, '0'), 'country', 'US')),
                jsonb_build_object('id', 'evt_' || g, 'object', 'event', 'type', 'invoice.paid', 'pad', repeat('x', 900))
           FROM generate_series($1::int, $2::int) AS g
         RETURNING id)
       INSERT INTO outbox (event_id, destination) SELECT id, $3 FROM ev ORDER BY id`,
      [start, end, DESTINATION],
    );
  }
  await pool.query('ANALYZE outbox');
  await pool.query('ANALYZE events');
}

async function pending(pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(
    'SELECT count(*)::bigint AS n FROM outbox WHERE status = 0',
  );
  return rows[0]!.n;
}

/** The §3 loop: a transaction held across the POST, no mapping. */
async function baseline(pool: pg.Pool, metaUrl: string, n: number): Promise<number> {
  const start = process.hrtime.bigint();
  const client = await pool.connect();
  const now = Math.floor(Date.now() / 1000);
  try {
    for (;;) {
      await client.query('BEGIN');
      const { rows } = await client.query<{ id: number }>(
        'SELECT id FROM outbox WHERE status = 0 ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED',
      );
      if (rows.length === 0) {
        await client.query('COMMIT');
        break;
      }
      const data: ServerEvent[] = rows.map((r) => ({
        event_name: 'Purchase',
        event_time: now,
        event_id: `base_${r.id}`,
        action_source: 'system_generated',
        user_data: { external_id: [String(r.id)] },
        custom_data: { value: 10, currency: 'EUR' },
      }));
      const res = await fetch(`${metaUrl}/${GRAPH_API_VERSION}/${PIXEL_ID}/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ data, access_token: TOKEN }),
      });
      if (res.status !== 200) throw new Error(`baseline POST failed: ${res.status} ${await res.text()}`);
      await res.text();
      await client.query('UPDATE outbox SET status = 1 WHERE id = ANY($1::bigint[])', [
        rows.map((r) => r.id),
      ]);
      await client.query('COMMIT');
    }
  } finally {
    client.release();
  }
  return seconds(start, n);
}

async function forwarder(pool: pg.Pool, metaUrl: string, n: number, inFlight: number): Promise<number> {
  const log = createLogger('bench', 'warn');
  const settings: WorkerSettings = {
    graphBaseUrl: metaUrl,
    graphVersion: GRAPH_API_VERSION,
    batchSize: 1000,
    concurrency: inFlight,
    leaseSeconds: 60,
    requestTimeoutMs: 30_000,
    idlePollMs: 5,
    backoff: { baseMs: 100, maxMs: 1000, rateLimitBaseMs: 100 },
    maxCustomerDeferrals: 3,
    partnerAgent: 'tally-bench',
  };
  const worker = new PixelWorker(
    { id: 'bench/pixel', pixelId: PIXEL_ID, accessToken: TOKEN, testEventCode: undefined, names: undefined },
    {
      pool,
      worker: settings,
      metrics: createForwarderMetrics(),
      log,
      customers: new StripeCustomers({ baseUrl: 'http://127.0.0.1:9', keyFor: () => undefined }),
    },
  );
  const start = process.hrtime.bigint();
  worker.start();
  // The worker's own counters say when it is done: polling the table would load the database it measures.
  const done = () => {
    const s = worker.status();
    return s.sent + s.skipped + s.deadLettered >= n;
  };
  while (!done()) await sleep(2);
  const took = seconds(start, n);
  await worker.stop();
  if ((await pending(pool)) !== 0) throw new Error('rows left pending');
  return took;
}

function seconds(start: bigint, n: number): number {
  const s = Number(process.hrtime.bigint() - start) / 1e9;
  return n / s;
}

/** Event-loop utilisation of the forwarder's thread in the last run: near 1 means it is CPU-bound. */
let busy = 0;

/**
 * CPU time (µs) per delivered event in a run, from the kernel's per-thread and per-process counters
 * (Linux /proc; 10 ms ticks, so runs of thousands of events are needed): the forwarder's main thread,
 * the forwarder's process as a whole (main thread, mapping threads, libuv and GC helpers), the fake
 * Meta's process and PostgreSQL (postmaster and its children).
 */
interface CpuPerEvent {
  main: number;
  forwarder: number;
  meta: number;
  postgres: number;
  /** Share of all CPUs busy during the run (anything on the machine, not only this bench). */
  machineBusy: number;
}
let cpu: CpuPerEvent = { main: NaN, forwarder: NaN, meta: NaN, postgres: NaN, machineBusy: NaN };

const TICK_US = 10_000; // USER_HZ is 100 on Linux
/** utime + stime of a /proc …/stat file, in µs; NaN where it cannot be read. */
function statCpu(file: string): number {
  try {
    const s = readFileSync(file, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * TICK_US;
  } catch {
    return NaN;
  }
}
/** The embedded PostgreSQL's postmaster pid (first line of postmaster.pid), when this bench started it. */
function postmasterPid(dataDir: string): string | undefined {
  try {
    return readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0];
  } catch {
    return undefined;
  }
}
/** CPU of the postmaster and its children (backends, checkpointer, WAL writer, autovacuum); exited backends are missed. */
function postgresCpu(postmaster: string | undefined): number {
  if (!postmaster) return NaN;
  let total = statCpu(`/proc/${postmaster}/stat`);
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (s.slice(s.lastIndexOf(')') + 2).split(' ')[1] === postmaster) total += statCpu(`/proc/${pid}/stat`);
    } catch {
      // exited meanwhile
    }
  }
  return total;
}
/** All CPUs' busy and total time (µs) from /proc/stat, to show how much of the machine a run left idle. */
function machineCpu(): { busy: number; total: number } {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
    const total = f.reduce((a, b) => a + b, 0) * TICK_US;
    return { busy: total - (f[3]! + f[4]!) * TICK_US, total };
  } catch {
    return { busy: NaN, total: NaN };
  }
}
function cpuNow(metaPid: number, postmaster: string | undefined) {
  const p = process.cpuUsage();
  return {
    machine: machineCpu(),
    process: p.user + p.system,
    main: statCpu(`/proc/self/task/${process.pid}/stat`),
    meta: statCpu(`/proc/${metaPid}/stat`),
    postgres: postgresCpu(postmaster),
  };
}
function cpuPerEvent(a: ReturnType<typeof cpuNow>, b: ReturnType<typeof cpuNow>, n: number): CpuPerEvent {
  return {
    main: (b.main - a.main) / n,
    forwarder: (b.process - a.process) / n,
    meta: (b.meta - a.meta) / n,
    postgres: (b.postgres - a.postgres) / n,
    machineBusy: (b.machine.busy - a.machine.busy) / (b.machine.total - a.machine.total),
  };
}
const formatCpu = (c: CpuPerEvent) =>
  `CPU µs/event: forwarder ${c.forwarder.toFixed(1)} (main thread ${c.main.toFixed(1)}), ` +
  `fake Meta ${c.meta.toFixed(1)}, PostgreSQL ${c.postgres.toFixed(1)}; machine busy ${Math.round(c.machineBusy * 100)} %`;
let postmaster: string | undefined;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const roundCpu = (c: CpuPerEvent): CpuPerEvent => ({
  main: Number(c.main.toFixed(1)),
  forwarder: Number(c.forwarder.toFixed(1)),
  meta: Number(c.meta.toFixed(1)),
  postgres: Number(c.postgres.toFixed(1)),
  machineBusy: Number(c.machineBusy.toFixed(2)),
});
/** Per-column medians over the runs of one mode. */
const medianCpu = (cs: CpuPerEvent[]): CpuPerEvent =>
  roundCpu({
    main: median(cs.map((c) => c.main)),
    forwarder: median(cs.map((c) => c.forwarder)),
    meta: median(cs.map((c) => c.meta)),
    postgres: median(cs.map((c) => c.postgres)),
    machineBusy: median(cs.map((c) => c.machineBusy)),
  });

async function run(pool: pg.Pool, mode: Mode, n: number): Promise<number> {
  await fill(pool, n);
  const meta = await startMeta();
  try {
    const elu = performance.eventLoopUtilization();
    const before = cpuNow(meta.pid, postmaster);
    const rate =
      mode === 'base'
        ? await baseline(pool, meta.url, n)
        : await forwarder(pool, meta.url, n, mode === 'f1' ? 1 : IN_FLIGHT);
    busy = performance.eventLoopUtilization(elu).utilization;
    cpu = cpuPerEvent(before, cpuNow(meta.pid, postmaster), n);
    const c = await meta.counters();
    if (c.delivered !== n || c.duplicates !== 0) {
      throw new Error(
        `${mode}: Meta got ${c.delivered} events and ${c.duplicates} duplicates, expected ${n} and 0`,
      );
    }
    const { rows } = await pool.query<{ n: number }>(
      'SELECT count(*)::bigint AS n FROM outbox WHERE status = 1',
    );
    if (rows[0]!.n !== n) throw new Error(`${mode}: ${rows[0]!.n} rows marked sent, expected ${n}`);
    return rate;
  } finally {
    await meta.close();
  }
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'tally-bench-forwarder-'));
  // PostgreSQL runs as the `postgres` user when the bench runs as root: it must be able to enter the folder.
  await chmod(dir, 0o755);
  const db = await startDatabase(dir);
  postmaster = db.source === 'DATABASE_URL' ? undefined : postmasterPid(db.source);
  const log = createLogger('bench', 'warn');
  const pool = createPool(db.url, log, { max: 8, statementTimeoutMillis: 120_000 });
  try {
    await migrate(pool);
    console.log(
      `forwarder benchmark: ${EVENTS} events per run, ${ROUNDS} rounds, ${IN_FLIGHT} batches in flight for fN, ` +
        `backlog ${BACKLOG}; PostgreSQL from ${db.source}`,
    );
    const modes: Mode[] = ['base', 'f1', 'fN'];
    const results: Record<Mode, number[]> = { base: [], f1: [], fN: [] };
    const cpus: Record<Mode, CpuPerEvent[]> = { base: [], f1: [], fN: [] };
    const ratios = { f1_base: [] as number[], fN_base: [] as number[], fN_f1: [] as number[] };
    for (let round = 0; round < ROUNDS; round++) {
      const order = modes.map((_, i) => modes[(i + round) % modes.length]!);
      const got: Partial<Record<Mode, number>> = {};
      for (const mode of order) {
        if (ONLY && !ONLY.includes(mode)) {
          got[mode] = NaN;
          continue;
        }
        got[mode] = await run(pool, mode, EVENTS);
        results[mode].push(got[mode]);
        cpus[mode].push(cpu);
        console.log(
          `round ${round + 1} ${mode.padEnd(4)} ${Math.round(got[mode]).toString().padStart(7)} events/s` +
            `  (forwarder thread busy ${Math.round(busy * 100)} %; ${formatCpu(cpu)})`,
        );
      }
      ratios.f1_base.push(got.f1! / got.base!);
      ratios.fN_base.push(got.fN! / got.base!);
      ratios.fN_f1.push(got.fN! / got.f1!);
    }

    await fill(pool, BACKLOG);
    const meta = await startMeta();
    const drainCpu = cpuNow(meta.pid, postmaster);
    const drainStart = process.hrtime.bigint();
    await forwarder(pool, meta.url, BACKLOG, IN_FLIGHT);
    const drainSeconds = Number(process.hrtime.bigint() - drainStart) / 1e9;
    const backlogCpu = cpuPerEvent(drainCpu, cpuNow(meta.pid, postmaster), BACKLOG);
    const c = await meta.counters();
    await meta.close();
    if (c.delivered !== BACKLOG || c.duplicates !== 0) {
      throw new Error(`backlog: Meta got ${c.delivered} events and ${c.duplicates} duplicates`);
    }

    const summary = {
      events: EVENTS,
      rounds: ROUNDS,
      inFlight: IN_FLIGHT,
      medianEventsPerSecond: {
        baseline: Math.round(median(results.base)),
        forwarderOneInFlight: Math.round(median(results.f1)),
        forwarderSeveralInFlight: Math.round(median(results.fN)),
      },
      ratios: {
        forwarderOneInFlightVsBaseline: Number(median(ratios.f1_base).toFixed(2)),
        forwarderSeveralInFlightVsBaseline: Number(median(ratios.fN_base).toFixed(2)),
        severalVsOneInFlight: Number(median(ratios.fN_f1).toFixed(2)),
      },
      medianCpuMicrosPerEvent: Object.fromEntries(
        (['base', 'f1', 'fN'] as const).map((m) => [m, medianCpu(cpus[m])]),
      ),
      backlog: {
        events: BACKLOG,
        drainSeconds: Number(drainSeconds.toFixed(2)),
        eventsPerSecond: Math.round(BACKLOG / drainSeconds),
        cpuMicrosPerEvent: roundCpu(backlogCpu),
      },
      duplicates: 0,
    };
    console.log(
      `medians: baseline ${summary.medianEventsPerSecond.baseline}/s, forwarder 1 in flight ` +
        `${summary.medianEventsPerSecond.forwarderOneInFlight}/s (${summary.ratios.forwarderOneInFlightVsBaseline}× baseline), ` +
        `${IN_FLIGHT} in flight ${summary.medianEventsPerSecond.forwarderSeveralInFlight}/s ` +
        `(${summary.ratios.forwarderSeveralInFlightVsBaseline}× baseline, ${summary.ratios.severalVsOneInFlight}× one in flight)`,
    );
    for (const m of ['base', 'f1', 'fN'] as const) {
      if (cpus[m].length > 0) console.log(`median ${m.padEnd(4)} ${formatCpu(medianCpu(cpus[m]))}`);
    }
    console.log(
      `backlog of ${BACKLOG}: drained in ${summary.backlog.drainSeconds} s (${summary.backlog.eventsPerSecond}/s; ` +
        `${formatCpu(backlogCpu)})`,
    );
    console.log(JSON.stringify(summary));
  } finally {
    await pool.end();
    await db.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === FAKE_META_ARG) await serveFakeMeta();
else await main();
