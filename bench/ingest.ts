/**
 * npm run bench:ingest — ingest throughput against a same-run baseline:
 *   (a) a bare fastify POST route with the same 2 KB body;
 *   (b) the real Stripe route: signature verification + durable group-committed insert + 2xx;
 *   (d) the minimal durable route the targets were set on (bench/minimal-durable-server.ts);
 * at 50 and 200 connections, rounds interleaved. Prints req/s, p50/p99 per run, the medians of the
 * per-round ratios b/a, d/a and b/d, and last a JSON line. Set BENCH_SECONDS (default 10) and BENCH_ROUNDS (default 3).
 */
import autocannon from 'autocannon';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { startDatabase } from '../core/db/embedded-postgres.js';
import { freePort } from '../core/net.js';
import { projectRoot } from '../core/project-root.js';
import { checkoutSession, signStripe, stripeEvent } from '../core/samples/stripe.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECRET = 'whsec_bench_0123456789abcdef';
const ROUTE = '/webhooks/stripe/growth/acme';

// A ~2 KB checkout.session.completed. Every request is a new purchase, as in real traffic: the event,
// session, PaymentIntent and customer ids are replaced per request, so each one records a money movement.
const template = JSON.stringify(
  stripeEvent(
    'checkout.session.completed',
    checkoutSession({
      id: 'cs_BENCHID',
      payment_intent: 'pi_BENCHID',
      customer: 'cus_BENCHID',
      metadata: { fbc: 'fb.1.1700000000.AbCdEfGh', fbp: 'fb.1.1700000000.1234567890', note: 'x'.repeat(900) },
    }),
    { id: 'evt_BENCHID' },
  ),
);

type Mode = 'a' | 'b' | 'd';

interface Run {
  mode: Mode;
  connections: number;
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
}

// Every mode gets the same generator work (a fresh id and signature per request), so the ratio compares servers.
async function load(url: string, connections: number, seconds: number): Promise<autocannon.Result> {
  let n = 0;
  const prefix = `${process.pid}${Date.now()}`;
  return autocannon({
    url: `${url}${ROUTE}`,
    connections,
    duration: seconds,
    method: 'POST',
    requests: [
      {
        setupRequest: (req) => {
          const body = template.replaceAll('BENCHID', `${prefix}_${n++}`);
          return {
            ...req,
            body,
            headers: {
              'content-type': 'application/json',
              'stripe-signature': signStripe(body, SECRET),
            },
          };
        },
      },
    ],
  });
}

function start(args: string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
  return spawn(process.execPath, args, { env, stdio: ['ignore', 'ignore', 'inherit'] });
}

async function waitForHttp(url: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (
      await fetch(url).then(
        (r) => r.status < 500,
        () => false,
      )
    )
      return;
    await sleep(100);
  }
  throw new Error(`${url} did not come up`);
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

async function main() {
  const dir = await mkdtemp(path.join(tmpdir(), 'tally-bench-'));
  await chmod(dir, 0o755);
  const db = await startDatabase(dir);
  const children: ChildProcess[] = [];
  let admin: pg.Client | undefined;
  try {
    const [barePort, ingestPort, adminPort, minimalPort] = [
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
    ];
    const configPath = path.join(dir, 'tally.yaml');
    await writeFile(
      configPath,
      JSON.stringify({
        ingest: { host: '127.0.0.1', port: ingestPort, adminPort },
        database: { url: db.url },
        stripe: [{ namespace: 'growth', name: 'acme', signingSecrets: [SECRET] }],
      }),
    );
    const root = projectRoot();
    children.push(start([path.join(root, 'dist/bench/bare-server.js'), String(barePort)]));
    children.push(
      start([path.join(root, 'dist/bench/minimal-durable-server.js'), String(minimalPort), db.url, SECRET]),
    );
    children.push(
      start([path.join(root, 'dist/cli/tally.js'), 'ingest', '--config', configPath], {
        ...process.env,
        LOG_LEVEL: 'warn',
      }),
    );
    const bareUrl = `http://127.0.0.1:${barePort}`;
    const ingestUrl = `http://127.0.0.1:${ingestPort}`;
    const minimalUrl = `http://127.0.0.1:${minimalPort}`;
    await waitForHttp(`${bareUrl}/`);
    await waitForHttp(`${minimalUrl}/`);
    await waitForHttp(`http://127.0.0.1:${adminPort}/readyz`);
    admin = new pg.Client({ connectionString: db.url });
    await admin.connect();

    const runs: Run[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      for (const connections of [50, 200]) {
        // Rotate which mode goes first, so drift on a noisy machine does not favour one.
        const modes: Mode[] = ['a', 'b', 'd'];
        const order = [...modes.slice(round % 3), ...modes.slice(0, round % 3)];
        for (const mode of order) {
          if (mode === 'b') {
            // events first, the order ingest's batches lock them in: a batch still in flight from the
            // previous run then only delays the TRUNCATE instead of deadlocking with it.
            await admin.query('TRUNCATE events, outbox, money_movements');
            await admin.query('CHECKPOINT');
          }
          if (mode === 'd') {
            await admin.query('TRUNCATE bench_events');
            await admin.query('CHECKPOINT');
          }
          const url = mode === 'a' ? bareUrl : mode === 'b' ? ingestUrl : minimalUrl;
          await load(url, connections, 2); // warm-up
          // Statistics, as autovacuum keeps them on a running system: after TRUNCATE the planner would
          // choose indexes for the money-movement lookups without any.
          if (mode === 'b') await admin.query('ANALYZE events, money_movements, outbox');
          const r = await load(url, connections, SECONDS);
          const run = {
            mode,
            connections,
            rps: r.requests.average,
            p50: r.latency.p50,
            p99: r.latency.p99,
            non2xx: r.non2xx + r.errors + r.timeouts,
          };
          runs.push(run);
          console.log(
            `round ${round} (${mode}) ${connections} conns: ${run.rps.toFixed(0)} req/s, p50 ${run.p50} ms, p99 ${run.p99} ms, non-2xx/errors ${run.non2xx}`,
          );
        }
      }
    }
    const { rows } = await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM events');

    const summary: Record<string, unknown> = {
      seconds: SECONDS,
      rounds: ROUNDS,
      eventsInLastRun: rows[0]!.n,
    };
    for (const connections of [50, 200]) {
      const runsOf = (mode: Mode) => runs.filter((r) => r.mode === mode && r.connections === connections);
      // The median of per-round ratios: each compares two runs made minutes apart on the same machine.
      const ratio = (x: Mode, y: Mode) => {
        const rs = runsOf(x).map((r, i) => r.rps / runsOf(y)[i]!.rps);
        return {
          median: Number(median(rs).toFixed(3)),
          range: [Number(Math.min(...rs).toFixed(3)), Number(Math.max(...rs).toFixed(3))],
        };
      };
      const of = (mode: Mode, key: 'rps' | 'p50' | 'p99') => median(runsOf(mode).map((r) => r[key]));
      const ba = ratio('b', 'a');
      const line = {
        aRps: Math.round(of('a', 'rps')),
        bRps: Math.round(of('b', 'rps')),
        dRps: Math.round(of('d', 'rps')),
        ratioBA: ba.median,
        ratioRange: ba.range,
        ratioDA: ratio('d', 'a').median,
        ratioBD: ratio('b', 'd').median,
        aP50: of('a', 'p50'),
        aP99: of('a', 'p99'),
        bP50: of('b', 'p50'),
        bP99: of('b', 'p99'),
        dP99: of('d', 'p99'),
        non2xx: runs.filter((r) => r.connections === connections).reduce((s, r) => s + r.non2xx, 0),
      };
      summary[`c${connections}`] = line;
      console.log(
        `${connections} conns: b/a = ${line.ratioBA} (rounds ${line.ratioRange.join('–')}), d/a = ${line.ratioDA}, b/d = ${line.ratioBD}; a ${line.aRps}, b ${line.bRps}, d ${line.dRps} req/s; b p50 ${line.bP50} ms, b p99 ${line.bP99} ms, d p99 ${line.dP99} ms`,
      );
    }
    console.log(JSON.stringify(summary));
  } finally {
    // Before the server stops, or its shutdown would surface as this client's error instead of the real one.
    await admin?.end().catch(() => {});
    for (const c of children) c.kill('SIGTERM');
    await sleep(500);
    await db.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
