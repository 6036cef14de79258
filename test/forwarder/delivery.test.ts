import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { redrive, type RunningForwarder } from '../../forwarder/main.js';
import { runCommand } from '../env/run.js';
import { sample } from '../ingest/harness.js';
import {
  baseConfig,
  bulkInsert,
  createEnv,
  outboxStatus,
  PIXEL,
  PIXEL_ID,
  TOKEN,
  waitFor,
  type Env,
} from './harness.js';

let env: Env;
beforeEach(async () => {
  env = await createEnv('fwddel');
});
afterEach(async () => {
  await env?.close();
});

const pixel = () => env.meta.state.pixel(PIXEL_ID);
const responses = (pixelId = PIXEL_ID) => env.meta.state.responses.filter((r) => r.pixelId === pixelId);
const allSent = async (n: number) =>
  waitFor(async () => (await outboxStatus(env.pool)).sent === n, `${n} rows sent`, 60_000);

async function pixelStatus(f: RunningForwarder, id = PIXEL) {
  const res = await fetch(`${f.adminUrl}/api/v1/pixels`);
  const body = (await res.json()) as { items: Record<string, unknown>[] };
  return body.items.find((p) => p.pixel === id)!;
}

describe('batching', () => {
  it('sends a backlog of 2,500 in requests of at most 1,000 events, each event once', async () => {
    await bulkInsert(env.pool, 2500);
    await env.start({ batchesInFlight: 3 });
    await allSent(2500);
    const ok = responses().filter((r) => r.outcome === 200);
    expect(ok.length).toBeGreaterThanOrEqual(3);
    expect(Math.max(...ok.map((r) => r.events))).toBeLessThanOrEqual(1000);
    expect(ok.reduce((n, r) => n + r.events, 0)).toBe(2500);
    expect(new Set(pixel().deliveredIds()).size).toBe(2500);
    expect(pixel().counters.duplicates).toBe(0);
  });
});

describe('a batch Meta rejects for some of its events', () => {
  it('bisects to the offending events, dead-letters them with Meta’s message and delivers the rest', async () => {
    // Meta's clock runs an hour ahead of ours: two events that are just under 7 days old here are too
    // old there. The local validator cannot see it; only Meta's answer can.
    env.meta.state.now = () => Date.now() + 3_600_000;
    const bad = new Set([77, 200]);
    await bulkInsert(env.pool, 300, { ageSeconds: (i) => (bad.has(i) ? 7 * 86400 - 300 : 60) });
    await env.start({ batchesInFlight: 1 });
    await waitFor(async () => {
      const s = await outboxStatus(env.pool);
      return s.sent === 298 && s.dead === 2;
    }, '298 sent and 2 dead-lettered');
    expect(new Set(pixel().deliveredIds()).size).toBe(298);
    const rejected = responses().filter((r) => r.outcome === 400);
    expect(rejected[0]).toMatchObject({ code: 100, subcode: 2804003, events: 300 });
    const { rows } = await env.pool.query<{ failure_reason: string; last_error: string }>(
      'SELECT failure_reason, last_error FROM outbox WHERE status = 2',
    );
    for (const r of rows) {
      expect(r.failure_reason).toBe('invalid_event');
      expect(r.last_error).toContain('Event Timestamp Too Old');
      expect(r.last_error).not.toContain(TOKEN);
    }
  });
});

describe('retries', () => {
  it('retries transient errors, rate limits and dropped connections with backoff, with the same event ids', async () => {
    pixel().failNext(2, 'transient').failNext(1, 'rate_limited', { code: 613 }).failNext(1, 'network');
    await bulkInsert(env.pool, 20);
    const f = await env.start({ batchesInFlight: 1 });
    await allSent(20);
    expect(responses().map((r) => r.outcome)).toEqual([500, 500, 400, 'network', 200]);
    expect(new Set(pixel().deliveredIds()).size).toBe(20);
    const { rows } = await env.pool.query<{ attempts: number; last_error: string }>(
      'SELECT DISTINCT attempts, last_error FROM outbox',
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]!.attempts).toBe(5);
    expect(rows[0]!.last_error).toMatch(/Meta could not be reached/);
    const metrics = await (await fetch(`${f.adminUrl}/metrics`)).text();
    expect(
      sample(metrics, 'tally_forwarder_events_failed_total', { pixel: PIXEL, reason: 'transient' }),
    ).toBe(60);
    expect(
      sample(metrics, 'tally_forwarder_events_failed_total', { pixel: PIXEL, reason: 'rate_limited' }),
    ).toBe(20);
    expect(sample(metrics, 'tally_forwarder_events_sent_total', { pixel: PIXEL })).toBe(20);
  });
});

describe('an access token Meta refuses', () => {
  it('pauses the pixel, keeps its events, reports it, and resumes when the configured token changes', async () => {
    env.meta.state.expireToken(TOKEN);
    await bulkInsert(env.pool, 5);
    const f = await env.start();
    await waitFor(async () => (await pixelStatus(f)).tokenInvalid === true, 'pixel paused');
    const status = await pixelStatus(f);
    expect(status).toMatchObject({ paused: true, tokenInvalid: true, sent: 0 });
    expect(String(status.lastError)).toMatch(/Session has expired/);
    const metrics = await (await fetch(`${f.adminUrl}/metrics`)).text();
    expect(sample(metrics, 'tally_forwarder_pixel_paused', { pixel: PIXEL })).toBe(1);
    expect(metrics).not.toContain(TOKEN);
    // Paused: no more requests, and the events wait without using up attempts.
    const requests = pixel().counters.requests;
    await new Promise((r) => setTimeout(r, 300));
    expect(pixel().counters.requests).toBe(requests);
    const { rows } = await env.pool.query<{ status: number; attempts: number }>(
      'SELECT DISTINCT status, attempts FROM outbox',
    );
    expect(rows).toEqual([{ status: 0, attempts: 0 }]);

    const fresh = 'EAAforwarderTESTtoken0002';
    pixel().tokens.add(fresh);
    const config = baseConfig(env.url);
    config.metaPixels[0]!.accessToken = fresh;
    await env.writeConfig(config);
    await allSent(5);
    expect(await pixelStatus(f)).toMatchObject({ paused: false, tokenInvalid: false, sent: 5 });
  });
});

describe('pixels are independent', () => {
  it('a pixel whose Meta endpoint hangs does not hold up another', async () => {
    const slowId = '323456789012345';
    const slow = env.meta.state.addPixel(slowId, { tokens: [TOKEN] });
    slow.hang = true;
    const config = baseConfig(env.url);
    config.metaPixels.push({ namespace: 'growth', name: 'slow-pixel', pixelId: slowId, accessToken: TOKEN });
    await env.writeConfig(config);
    await bulkInsert(env.pool, 50, { destination: 'meta:growth/slow-pixel', prefix: 'slow' });
    await env.start({ requestTimeoutMs: 5_000, batchesInFlight: 1 });
    await waitFor(() => slow.counters.requests > 0, 'a request to the hanging pixel');
    await bulkInsert(env.pool, 50, { prefix: 'fast' });
    await waitFor(() => pixel().delivered.length === 50, 'the healthy pixel delivered');
    expect(slow.counters.requests).toBe(1);
    expect(slow.delivered).toHaveLength(0);
    const { rows } = await env.pool.query<{ n: number }>(
      `SELECT count(*)::bigint AS n FROM outbox WHERE destination = 'meta:growth/slow-pixel' AND status = 0`,
    );
    expect(rows[0]!.n).toBe(50);
    slow.hang = false;
  });
});

describe('dead letters', () => {
  it('are listed by pixel and reason, and re-driven by the API or the redrive command', async () => {
    env.meta.state.now = () => Date.now() + 3_600_000;
    await bulkInsert(env.pool, 4, { ageSeconds: () => 7 * 86400 - 300 });
    const f = await env.start({ batchesInFlight: 1 });
    await waitFor(async () => (await outboxStatus(env.pool)).dead === 4, 'four dead letters');

    const list = (await (
      await fetch(`${f.adminUrl}/api/v1/dead-letters?pixel=${encodeURIComponent(PIXEL)}&limit=3`)
    ).json()) as {
      items: { outboxId: number; eventId: number; reason: string; error: string }[];
      nextCursor: string;
    };
    expect(list.items).toHaveLength(3);
    expect(list.items[0]).toMatchObject({ reason: 'invalid_event' });
    expect(list.items[0]!.error).toContain('Event Timestamp Too Old');
    const rest = (await (
      await fetch(
        `${f.adminUrl}/api/v1/dead-letters?pixel=${encodeURIComponent(PIXEL)}&cursor=${list.nextCursor}`,
      )
    ).json()) as { items: { outboxId: number; eventId: number }[]; nextCursor: string | null };
    expect(rest.items).toHaveLength(1);
    expect(rest.nextCursor).toBeNull();

    const bad = await fetch(`${f.adminUrl}/api/v1/dead-letters/redrive`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({}),
    });
    expect(bad.status).toBe(400);

    // Meta's clock is right again: re-driven events go through.
    env.meta.state.now = () => Date.now();
    const res = await fetch(`${f.adminUrl}/api/v1/dead-letters/redrive`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ pixel: PIXEL, outboxIds: [list.items[0]!.outboxId] }),
    });
    expect(await res.json()).toMatchObject({ redriven: 1, outboxIds: [list.items[0]!.outboxId] });
    await waitFor(async () => (await outboxStatus(env.pool)).sent === 1, 're-driven row sent');

    const ids = await redrive({
      configPath: env.configPath,
      dataDir: path.join(env.dir, 'pg'),
      eventIds: [list.items[1]!.eventId, list.items[2]!.eventId, rest.items[0]!.eventId],
    });
    expect(ids).toHaveLength(3);
    await allSent(4);
    expect(new Set(pixel().deliveredIds()).size).toBe(4);
  });
});

describe('metrics', () => {
  it('are per pixel and pass promtool', async () => {
    await bulkInsert(env.pool, 10);
    await bulkInsert(env.pool, 1, { ageSeconds: () => 8 * 86400, prefix: 'old' });
    const f = await env.start();
    await allSent(10);
    await waitFor(async () => {
      const m = await (await fetch(`${f.adminUrl}/metrics`)).text();
      return sample(m, 'tally_forwarder_outbox_dead_lettered_events', { pixel: PIXEL }) === 1;
    }, 'the depth gauges');
    const metrics = await (await fetch(`${f.adminUrl}/metrics`)).text();
    expect(sample(metrics, 'tally_forwarder_events_sent_total', { pixel: PIXEL })).toBe(10);
    expect(
      sample(metrics, 'tally_forwarder_events_dead_lettered_total', { pixel: PIXEL, reason: 'too_old' }),
    ).toBe(1);
    expect(sample(metrics, 'tally_forwarder_outbox_pending_events', { pixel: PIXEL })).toBe(0);
    expect(sample(metrics, 'tally_forwarder_pixel_paused', { pixel: PIXEL })).toBe(0);
    expect(sample(metrics, 'tally_forwarder_batch_events_count', { pixel: PIXEL })).toBeGreaterThan(0);
    expect(metrics).toContain('tally_forwarder_request_duration_seconds_bucket');
    const result = await runCommand('promtool', ['check', 'metrics'], metrics);
    expect(result.stdout + result.stderr).toBe('');
    expect(result.code).toBe(0);
  });
});
