import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ForwarderOptions } from '../../forwarder/main.js';
import { projectRoot } from '../../core/project-root.js';
import {
  bulkInsert,
  createEnv,
  outboxStatus,
  PIXEL,
  PIXEL_ID,
  testOptions,
  waitFor,
  type Env,
} from './harness.js';

let env: Env;
const children: ChildProcess[] = [];
beforeEach(async () => {
  env = await createEnv('fwdrep');
});
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
  await env?.close();
});

const pixel = () => env.meta.state.pixel(PIXEL_ID);

describe('several forwarder replicas on one outbox', () => {
  it('share the work and never send an event twice', async () => {
    pixel().latencyMs = 20;
    await bulkInsert(env.pool, 3000);
    const options = { batchSize: 100, batchesInFlight: 2 };
    const [a, b] = await Promise.all([env.start(options), env.start(options)]);
    await waitFor(async () => (await outboxStatus(env.pool)).sent === 3000, 'all sent', 60_000);
    expect(new Set(pixel().deliveredIds()).size).toBe(3000);
    expect(pixel().counters.duplicates).toBe(0);
    const status = async (f: { adminUrl: string }) => {
      const body = (await (await fetch(`${f.adminUrl}/api/v1/pixels`)).json()) as {
        items: { pixel: string; sent: number; sentTotal: number }[];
      };
      return body.items.find((p) => p.pixel === PIXEL)!;
    };
    const [sa, sb] = await Promise.all([status(a), status(b)]);
    expect(sa.sent + sb.sent).toBe(3000);
    expect(Math.min(sa.sent, sb.sent)).toBeGreaterThan(0);
    // What the MetaPixel's status shows: the same shared total on every replica, and after a restart.
    expect([sa.sentTotal, sb.sentTotal]).toEqual([3000, 3000]);
    await a.close();
    const c = await env.start(options);
    expect(await status(c)).toMatchObject({ sent: 0, sentTotal: 3000 });
  });
});

describe('leases', () => {
  it('are renewed while a slow batch is bisected, so another replica never takes it meanwhile', async () => {
    // Sixteen-odd sequential requests of 400 ms each while bisecting, with a 1 s lease: without renewal
    // the second replica would claim the batch half-way and send it again.
    pixel().latencyMs = 400;
    env.meta.state.now = () => Date.now() + 3_600_000;
    const bad = new Set([77, 200]);
    await bulkInsert(env.pool, 300, { ageSeconds: (i) => (bad.has(i) ? 7 * 86400 - 300 : 60) });
    const options = { leaseSeconds: 1, batchesInFlight: 1 };
    await env.start(options);
    await waitFor(() => pixel().counters.requests > 0, 'the first request');
    await env.start(options);
    await waitFor(
      async () => {
        const s = await outboxStatus(env.pool);
        return s.sent === 298 && s.dead === 2;
      },
      '298 sent and 2 dead-lettered',
      60_000,
    );
    expect(pixel().counters.duplicates).toBe(0);
    expect(new Set(pixel().deliveredIds()).size).toBe(298);
  });
});

/** The built forwarder in a child process, as `tally forwarder` runs it. */
function startChild(options: ForwarderOptions): Promise<{ child: ChildProcess; adminUrl: string }> {
  const main = path.join(projectRoot(), 'dist/forwarder/main.js');
  if (!existsSync(main)) throw new Error(`${main} is missing: run npm run build first`);
  const script = `
    const { runForwarder } = await import(process.env.TALLY_FORWARDER_MAIN);
    const f = await runForwarder(JSON.parse(process.env.TALLY_FORWARDER_OPTIONS));
    console.log(JSON.stringify({ adminUrl: f.adminUrl }));`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    env: {
      ...process.env,
      TALLY_FORWARDER_MAIN: pathToFileURL(main).href,
      TALLY_FORWARDER_OPTIONS: JSON.stringify(options),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    let buffer = '';
    child.stdout.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      const line = buffer.split('\n').find((l) => l.startsWith('{"adminUrl"'));
      if (line) resolve({ child, adminUrl: (JSON.parse(line) as { adminUrl: string }).adminUrl });
    });
    child.on('exit', (code) => reject(new Error(`forwarder child exited with ${code}`)));
  });
}

describe('kill -9 in the middle of a batch', () => {
  it('loses nothing: after a restart every event is delivered, re-sent only from the batches in flight', async () => {
    const total = 4000;
    const batchSize = 250;
    const inFlight = 2;
    pixel().latencyMs = 150;
    await bulkInsert(env.pool, total);
    const options = {
      ...testOptions(env),
      configPath: env.configPath,
      dataDir: path.join(env.dir, 'pg'),
      batchSize,
      batchesInFlight: inFlight,
      leaseSeconds: 2,
      requestTimeoutMs: 600,
    } as ForwarderOptions;

    const first = await startChild(options);
    await waitFor(() => pixel().delivered.length >= 1000, 'a quarter delivered');
    first.child.kill('SIGKILL');
    await new Promise((resolve) => first.child.once('exit', resolve));
    // Requests the dead process had sent still reach Meta: let them land, then see what the outbox says.
    await new Promise((r) => setTimeout(r, 500));
    const deliveredBefore = new Set(pixel().deliveredIds());
    const { rows } = await env.pool.query<{ invoice: string }>(
      `SELECT e.details->>'invoice' AS invoice FROM outbox o JOIN events e ON e.id = o.event_id WHERE o.status = 1`,
    );
    const recordedBefore = new Set(rows.map((r) => r.invoice));
    const inFlightAtKill = [...deliveredBefore].filter((id) => !recordedBefore.has(id!));
    expect(inFlightAtKill.length).toBeLessThanOrEqual(batchSize * inFlight);

    await startChild(options);
    await waitFor(
      async () => (await outboxStatus(env.pool)).sent === total,
      'all sent after restart',
      60_000,
    );

    expect(new Set(pixel().deliveredIds()).size).toBe(total);
    const duplicates = pixel().duplicates;
    // Only what was in flight at the kill is sent again, with the same event_id and event_time.
    expect(duplicates.length).toBe(inFlightAtKill.length);
    expect(new Set(duplicates.map((d) => d.eventId))).toEqual(new Set(inFlightAtKill));
    const firstTimes = new Map(pixel().delivered.map((d) => [d.eventId, d.eventTime]));
    for (const d of duplicates) expect(d.eventTime).toBe(firstTimes.get(d.eventId));
  });
});
