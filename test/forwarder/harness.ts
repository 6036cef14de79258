import yaml from 'js-yaml';
import { mkdtemp, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import { StripeIntegrationConfig } from '../../core/config/tally-config.js';
import { migrate } from '../../core/db/migrations.js';
import { EventStore } from '../../core/store/event-store.js';
import { normaliseStripeEvent } from '../../ingest/adapters/stripe.js';
import { runForwarder, type ForwarderOptions, type RunningForwarder } from '../../forwarder/main.js';
import { createTestSchema } from '../env/context.js';
import { startFakeMeta, type FakeMeta } from '../fakes/meta/server.js';
import { startFakeStripe, type FakeStripe } from '../fakes/stripe-customers/server.js';

export const PIXEL = 'growth/website-pixel';
export const PIXEL_ID = '123456789012345';
export const TOKEN = 'EAAforwarderTESTtoken0001';
export const STRIPE_KEY = 'rk_test_forwarder_0123456789';
const STRIPE_INTEGRATION = StripeIntegrationConfig.parse({
  namespace: 'growth',
  name: 'acme',
  signingSecrets: ['whsec_test_forwarder'],
});

export function baseConfig(databaseUrl: string) {
  return {
    database: { url: databaseUrl },
    stripe: [{ namespace: 'growth', name: 'acme', signingSecrets: ['whsec_test_forwarder'] }],
    metaPixels: [
      { namespace: 'growth', name: 'website-pixel', pixelId: PIXEL_ID, accessToken: TOKEN } as Record<
        string,
        unknown
      >,
    ],
  };
}

/** Options that make a test forwarder quick: fast polls, short backoffs and leases, fakes as endpoints. */
export function testOptions(env: Env): Partial<ForwarderOptions> {
  return {
    host: '127.0.0.1',
    adminPort: 0,
    graphBaseUrl: env.meta.url,
    stripeApiBaseUrl: env.stripe.url,
    stripeApiKeys: { 'growth/acme': STRIPE_KEY },
    idlePollMs: 20,
    leaseSeconds: 5,
    requestTimeoutMs: 1_500,
    statsIntervalMs: 100,
    configPollMs: 100,
    backoff: { baseMs: 50, maxMs: 400, rateLimitBaseMs: 100 },
    customerCache: { maxInlineWaitMs: 2_000 },
  };
}

export interface Env {
  pool: pg.Pool;
  url: string;
  dir: string;
  configPath: string;
  meta: FakeMeta;
  stripe: FakeStripe;
  store: EventStore;
  writeConfig(config: unknown): Promise<void>;
  /** Stores Stripe events as ingest does (normalised, with outbox rows for the pixels given). */
  ingest(events: object[], destinations?: string[]): Promise<void>;
  start(overrides?: Partial<ForwarderOptions>): Promise<RunningForwarder>;
  close(): Promise<void>;
}

export async function createEnv(prefix = 'fwd'): Promise<Env> {
  const { pool, url } = await createTestSchema(prefix);
  await migrate(pool);
  const dir = await mkdtemp(path.join(tmpdir(), 'tally-forwarder-'));
  const configPath = path.join(dir, 'tally.yaml');
  const writeConfig = async (config: unknown) => {
    const tmp = `${configPath}.tmp`;
    await writeFile(tmp, yaml.dump(config));
    await rename(tmp, configPath);
  };
  await writeConfig(baseConfig(url));
  const meta = await startFakeMeta();
  meta.state.addPixel(PIXEL_ID, { tokens: [TOKEN] });
  const stripe = await startFakeStripe();
  stripe.state.addKey(STRIPE_KEY);
  const store = new EventStore(pool);
  const running: RunningForwarder[] = [];
  const env: Env = {
    pool,
    url,
    dir,
    configPath,
    meta,
    stripe,
    store,
    writeConfig,
    async ingest(events, destinations = [`meta:${PIXEL}`]) {
      await Promise.all(
        events.map((event) => {
          const raw = JSON.stringify(event);
          const normalised = normaliseStripeEvent(
            event as Parameters<typeof normaliseStripeEvent>[0],
            raw,
            STRIPE_INTEGRATION,
            () => destinations,
          );
          if ('kind' in normalised) throw new Error(`ingest ignored the event: ${normalised.reason}`);
          return store.save(normalised);
        }),
      );
    },
    async start(overrides = {}) {
      const f = await runForwarder({
        configPath,
        dataDir: path.join(dir, 'pg'),
        ...testOptions(env),
        ...overrides,
      });
      running.push(f);
      await waitFor(async () => (await fetch(`${f.adminUrl}/readyz`)).ok, 'forwarder ready');
      return f;
    },
    async close() {
      await Promise.all(running.map((f) => f.close().catch(() => {})));
      await meta.close();
      await stripe.close();
      await pool.end();
    },
  };
  return env;
}

/** Polls until `check` holds; fails with `what` after `timeoutMs`. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export async function outboxStatus(pool: pg.Pool): Promise<Record<string, number>> {
  const { rows } = await pool.query<{ status: number; n: number }>(
    'SELECT status, count(*)::bigint AS n FROM outbox GROUP BY status',
  );
  const names = ['pending', 'sent', 'dead', 'skipped'];
  return Object.fromEntries(rows.map((r) => [names[r.status]!, r.n]));
}

/**
 * Fills the outbox with `count` invoice.paid-like events for one destination in one statement, as a
 * backlog after an outage would look; far faster than storing them one by one.
 */
export async function bulkInsert(
  pool: pg.Pool,
  count: number,
  opts: { destination?: string; ageSeconds?: (i: number) => number; prefix?: string } = {},
): Promise<void> {
  const destination = opts.destination ?? `meta:${PIXEL}`;
  const prefix = opts.prefix ?? `b${Date.now()}`;
  const ages = Array.from({ length: count }, (_, i) => opts.ageSeconds?.(i) ?? 60);
  await pool.query(
    `WITH ev AS (
       INSERT INTO events (source, integration, idempotency_key, provider_event_id, provider_type, conversion_type,
                           occurred_at, amount_minor, currency, customer_id, customer_email, attribution, details,
                           payload)
       SELECT 'stripe', 'growth/acme', $1 || ':' || g, 'evt_' || $1 || '_' || g, 'invoice.paid', 'invoice_paid',
              now() - make_interval(secs => ($3::float8[])[g]), 1000 + g, 'EUR', 'cus_' || $1 || '_' || g,
              'buyer' || g || '@example.com',
              jsonb_build_object('fbc', 'fb.1.1700000000000.IwAR' || g, 'fbp', 'fb.1.1700000000000.' || g,
                                 'client_ip', '203.0.113.' || (g % 250), 'client_user_agent', 'Mozilla/5.0 (X11)'),
              jsonb_build_object('invoice', 'in_' || $1 || '_' || g, 'billingReason', 'subscription_cycle'), '{}'
         FROM generate_series(1, $2::int) AS g
       RETURNING id)
     INSERT INTO outbox (event_id, destination) SELECT id, $4 FROM ev ORDER BY id`,
    [prefix, count, ages, destination],
  );
}
