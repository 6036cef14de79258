import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import yaml from 'js-yaml';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { checkoutSession, signStripe, stripeEvent } from '../../core/samples/stripe.js';
import { createTestSchema } from '../env/context.js';
import { freePort } from '../env/processes.js';
import { runCommand } from '../env/run.js';
import { startFakeMeta, type FakeMeta } from '../fakes/meta/server.js';
import {
  assertBuilt,
  condition,
  eventually,
  operatorNamespaces,
  resources,
  startOperator,
  type TestOperator,
} from '../operator/support.js';
import {
  alertRules,
  checkExpression,
  dashboard,
  dashboardPanels,
  parseLabelValues,
  selectors,
  substitute,
  TEST_INTERVALS,
  variableQuery,
  type ExportedMetric,
} from '../prometheus/promql.js';
import { byLabel, startPrometheus, type RunningPrometheus } from '../prometheus/server.js';
import { runTally, type Running } from './tally-cli.js';

const STRIPE_SECRET = 'whsec_prometheus_e2e_0123456789abcdef';
const GOOD_PIXEL_ID = '111111111111111';
const GOOD_TOKEN = 'EAAprometheusE2EgoodToken0001';
const BAD_PIXEL_ID = '222222222222222';
const BAD_TOKEN = 'EAAprometheusE2ErevokedToken02';

interface PixelStatus {
  pixel: string;
  sent: number;
  deadLettered: number;
  skipped: number;
  paused: boolean;
}

/**
 * The local stack as `tally dev` runs it (the operator with ingest as its child process, on the test
 * control plane and PostgreSQL), a forwarder pointed at the local Conversions API, and a real Prometheus
 * scraping all three. Triggered events must show up in PromQL exactly, the alert rules must evaluate
 * against the real series, and every dashboard query must return data.
 */
describe('Prometheus scraping ingest, the forwarder and the operator', () => {
  let ns: string;
  let op: TestOperator;
  let meta: FakeMeta;
  let forwarder: Running | undefined;
  let forwarderURL: string;
  let prometheus: RunningPrometheus | undefined;
  let dir: string;
  let targets: Record<string, string>;
  let r: ReturnType<typeof resources>;
  const good = () => `${ns}/website`;
  const bad = () => `${ns}/revoked`;
  const kubeconfig = inject('kubeconfigPath');

  beforeAll(async () => {
    assertBuilt();
    dir = await mkdtemp(path.join(tmpdir(), 'tally-prometheus-e2e-'));
    meta = await startFakeMeta();
    meta.state.addPixel(GOOD_PIXEL_ID, { tokens: [GOOD_TOKEN] });
    meta.state.addPixel(BAD_PIXEL_ID, { tokens: [] });
    const database = await createTestSchema('prom');
    await database.pool.end();
    const namespaces = await operatorNamespaces('prom');
    ns = namespaces.ns;
    r = resources(ns);
    forwarderURL = `http://127.0.0.1:${await freePort()}`;
    // Nothing listens there: a Managed StripeIntegration fails to register, so reconcile errors are real.
    const stripeNowhere = `http://127.0.0.1:${await freePort()}`;
    op = await startOperator(namespaces.opsNs, ns, {
      databaseUrl: database.url,
      forwarderAdminURL: forwarderURL,
      stripeApiBase: stripeNowhere,
    });

    await r.putSecret('stripe-acme', { 'signing-secret': STRIPE_SECRET });
    await r.putSecret('stripe-broken', { key: 'rk_test_51TallyPrometheusE2E000000' });
    await r.putSecret('meta-website', { token: GOOD_TOKEN });
    await r.putSecret('meta-revoked', { token: BAD_TOKEN });
    await r.apply('stripeintegrations', 'acme', {
      displayName: 'Acme',
      webhook: { mode: 'External', signingSecretRef: { name: 'stripe-acme', key: 'signing-secret' } },
    });
    await r.apply('calintegrations', 'demo-calls', { displayName: 'Demo calls' });
    await r.apply('metapixels', 'website', {
      displayName: 'Website',
      pixelId: GOOD_PIXEL_ID,
      accessTokenSecretRef: { name: 'meta-website', key: 'token' },
    });
    await r.apply('metapixels', 'revoked', {
      displayName: 'Revoked token',
      pixelId: BAD_PIXEL_ID,
      accessTokenSecretRef: { name: 'meta-revoked', key: 'token' },
    });
    for (const [plural, name] of [
      ['stripeintegrations', 'acme'],
      ['calintegrations', 'demo-calls'],
    ] as const) {
      await eventually(
        `${name} Ready`,
        async () => condition(await r.get(plural, name), 'Ready')?.status === 'True',
        60_000,
      );
    }

    // The forwarder runs from the operator's rendered configuration, with Meta's Graph API replaced by the
    // local Conversions API (the operator's local pipeline cannot point it elsewhere).
    const rendered = await eventually('both pixels in the rendered configuration', async () => {
      const c = yaml.load(await readFile(path.join(op.dir, 'tally.yaml'), 'utf8')) as {
        metaPixels?: unknown[];
      };
      return (c.metaPixels?.length ?? 0) === 2 && c;
    });
    const forwarderConfig = path.join(dir, 'forwarder.yaml');
    await writeFile(
      forwarderConfig,
      yaml.dump({
        ...rendered,
        forwarder: {
          host: '127.0.0.1',
          adminPort: Number(new URL(forwarderURL).port),
          graphBaseUrl: meta.url,
        },
      }),
    );
    forwarder = runTally(['forwarder', '--config', forwarderConfig], {
      ...process.env,
      DATABASE_URL: database.url,
    });
    await eventually('the forwarder ready', async () => (await fetch(`${forwarderURL}/readyz`)).ok, 60_000);

    targets = {
      'tally-ingest': new URL(op.localIngest!.adminURL).host,
      'tally-forwarder': new URL(forwarderURL).host,
      'tally-operator': new URL(op.adminURL).host,
    };
    prometheus = await startPrometheus(targets);
  }, 240_000);

  afterAll(async () => {
    await prometheus?.stop();
    forwarder?.child.kill('SIGTERM');
    await forwarder?.exited;
    await op?.close();
    await meta?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function trigger(args: string[]): Promise<string> {
    const run = runTally(['trigger', ...args, '--kubeconfig', kubeconfig]);
    const code = await run.exited;
    return `${code} ${run.output()}`;
  }
  const checkout = (set: object) =>
    trigger(['stripe', 'checkout.session.completed', '-i', `${ns}/acme`, '--set', JSON.stringify(set)]);

  /** Waits until Prometheus has scraped every target at least once after this moment. */
  async function scrapedAfterNow(): Promise<void> {
    const since = Date.now() / 1000;
    await eventually(
      'a scrape of every target',
      async () => {
        const up = await prometheus!.query('timestamp(up)');
        return up.length === Object.keys(targets).length && up.every((s) => s.value > since);
      },
      30_000,
    );
  }

  it('sees triggered events by type, revenue by currency in minor units, and rejections by reason', async () => {
    // Applied now that Prometheus scrapes: its first failures, 200 ms apart, fall between scrapes, so
    // increase() sees them.
    await r.apply('stripeintegrations', 'broken', {
      displayName: 'Stripe unreachable',
      apiKeySecretRef: { name: 'stripe-broken', key: 'key' },
    });
    const sent = await Promise.all([
      checkout({ amount_total: 4900, currency: 'usd' }),
      checkout({ amount_total: 2500, currency: 'usd' }),
      checkout({ amount_total: 9800, currency: 'jpy' }), // zero-decimal: 9800 yen
      checkout({ amount_total: 1250, currency: 'kwd' }), // three-decimal: 1.250 dinar
    ]);
    sent.push(await checkout({ amount_total: 3000, currency: 'usd', payment_status: 'unpaid' }));
    sent.push(await trigger(['cal', 'BOOKING_CREATED', '-i', `${ns}/demo-calls`]));
    sent.push(await trigger(['cal', 'PING', '-i', `${ns}/demo-calls`]));
    for (const s of sent) expect(s).toMatch(/^0 200 /);
    const forged = await trigger([
      'stripe',
      'invoice.paid',
      '-i',
      `${ns}/acme`,
      '-s',
      'whsec_not_the_right_one',
      '-u',
      op.localIngest!.webhookURL,
    ]);
    expect(forged).toMatch(/^1 400 \{"error":"invalid_signature"/);
    // A checkout from 8 days ago, delivered twice (as Stripe retries): stored once, too old for Meta.
    const old = stripeEvent(
      'checkout.session.completed',
      checkoutSession({ amount_total: 1500, currency: 'eur' }),
      {
        created: Math.floor(Date.now() / 1000) - 8 * 86_400,
      },
    );
    const body = JSON.stringify(old);
    for (const duplicate of [false, true]) {
      const res = await fetch(`${op.localIngest!.webhookURL}/webhooks/stripe/${ns}/acme`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'stripe-signature': signStripe(body, STRIPE_SECRET) },
        body,
      });
      expect(await res.json()).toEqual(duplicate ? { received: true, duplicate: true } : { received: true });
    }

    // The forwarder has done all it will do: 4 purchases sent, the unpaid checkout skipped, the old one
    // dead-lettered; the other pixel is paused on its rejected token. Its gauges refresh every 5 s.
    await eventually(
      'the forwarder done',
      async () => {
        const { items } = (await (await fetch(`${forwarderURL}/api/v1/pixels`)).json()) as {
          items: PixelStatus[];
        };
        const w = items.find((p) => p.pixel === good());
        const b = items.find((p) => p.pixel === bad());
        return w?.sent === 4 && w.skipped === 1 && w.deadLettered === 1 && b?.paused === true;
      },
      60_000,
    );
    await eventually(
      'the outbox gauges refreshed',
      async () => {
        const text = await (await fetch(`${forwarderURL}/metrics`)).text();
        return (
          text.includes(`tally_forwarder_outbox_dead_lettered_events{pixel="${good()}"} 1`) &&
          text.includes(`tally_forwarder_outbox_pending_events{pixel="${good()}"} 0`)
        );
      },
      30_000,
    );
    await scrapedAfterNow();

    const q = (expr: string) => prometheus!.query(expr);
    expect(byLabel(await q('up'), 'job')).toEqual({
      'tally-ingest': 1,
      'tally-forwarder': 1,
      'tally-operator': 1,
    });
    expect(
      // `> 0`: ingest creates every configured type's series at 0 before its first event.
      byLabel(await q(`sum by (type) (tally_ingest_conversions_total{integration=~"${ns}/.*"}) > 0`), 'type'),
    ).toEqual({
      checkout_completed: 6,
      booking_created: 1,
    });
    // Minor units, each payment once: the unpaid checkout adds nothing, the duplicate delivery adds nothing.
    expect(
      byLabel(
        await q(`sum by (currency) (tally_ingest_revenue_minor_units_total{integration="${ns}/acme"})`),
        'currency',
      ),
    ).toEqual({ USD: 7400, JPY: 9800, KWD: 1250, EUR: 1500 });
    expect(byLabel(await q('sum by (reason) (tally_ingest_webhooks_rejected_total)'), 'reason')).toEqual({
      invalid_signature: 1,
    });
    expect(byLabel(await q('sum by (source) (tally_ingest_webhooks_duplicate_total) > 0'), 'source')).toEqual(
      {
        stripe: 1,
      },
    );
    expect(byLabel(await q('sum by (reason) (tally_ingest_webhooks_ignored_total)'), 'reason')).toEqual({
      ping: 1,
    });
    expect(byLabel(await q('sum by (source) (tally_ingest_webhooks_received_total)'), 'source')).toEqual({
      stripe: 8,
      cal: 2,
    });

    expect(byLabel(await q('sum by (pixel) (tally_forwarder_events_sent_total)'), 'pixel')).toEqual({
      [good()]: 4,
    });
    expect(
      byLabel(
        await q(`sum by (reason) (tally_forwarder_events_dead_lettered_total{pixel="${good()}"})`),
        'reason',
      ),
    ).toEqual({ too_old: 1 });
    expect(
      byLabel(await q(`sum by (reason) (tally_forwarder_events_skipped_total{pixel="${good()}"})`), 'reason'),
    ).toEqual({ checkout_not_paid: 1 });
    expect(byLabel(await q('max by (pixel) (tally_forwarder_pixel_paused)'), 'pixel')).toEqual({
      [good()]: 0,
      [bad()]: 1,
    });
    expect(
      (await q(`tally_forwarder_events_failed_total{pixel="${bad()}", reason="token_invalid"}`))[0]?.value,
    ).toBeGreaterThanOrEqual(1);
    expect(
      (await q(`max(tally_forwarder_outbox_pending_events{pixel="${bad()}"})`))[0]?.value,
    ).toBeGreaterThan(0);

    expect((await q('sum(tally_operator_leader)'))[0]?.value).toBe(1);
    expect(
      (await q('sum(tally_operator_reconciles_total{controller="stripeintegration", result="error"})'))[0]
        ?.value,
    ).toBeGreaterThanOrEqual(2);
    expect(condition(await r.get('stripeintegrations', 'broken'), 'Ready')?.reason).toBe('StripeUnreachable');
  }, 120_000);

  it('exports metrics promtool accepts from all three components', async () => {
    for (const [job, host] of Object.entries(targets)) {
      const text = await (await fetch(`http://${host}/metrics`)).text();
      const result = await runCommand('promtool', ['check', 'metrics'], text);
      expect({ job, ...result }).toEqual({ job, code: 0, stdout: '', stderr: '' });
    }
  });

  it('evaluates every alert rule without errors, and the alerts for what happened are active', async () => {
    const { groups } = await prometheus!.api<{
      groups: { rules: { name: string; health: string; lastError?: string }[] }[];
    }>('rules');
    const rules = groups.flatMap((g) => g.rules);
    expect(rules.map((r) => r.name).sort()).toEqual(
      alertRules()
        .map((r) => r.alert)
        .sort(),
    );
    // A rule that has not been evaluated yet reports "unknown"; wait for one round.
    await eventually('every rule evaluated', async () => {
      const { groups } = await prometheus!.api<{ groups: { rules: { health: string }[] }[] }>('rules');
      return groups.every((g) => g.rules.every((r) => r.health !== 'unknown'));
    });
    const again = await prometheus!.api<{
      groups: { rules: { name: string; health: string; lastError?: string }[] }[];
    }>('rules');
    for (const r of again.groups.flatMap((g) => g.rules))
      expect({ rule: r.name, health: r.health, error: r.lastError ?? '' }).toEqual({
        rule: r.name,
        health: 'ok',
        error: '',
      });

    const active = async () =>
      (await prometheus!.query('ALERTS'))
        .map(
          (a) =>
            `${a.metric.alertname} ${a.metric.pixel ?? a.metric.controller ?? ''} ${a.metric.alertstate}`,
        )
        .sort();
    // Dead letters fire at once; a paused pixel and reconcile errors wait out their `for` as pending.
    await eventually('the alerts', async () => {
      const now = await active();
      return (
        now.includes(`TallyForwarderDeadLetters ${good()} firing`) &&
        now.includes(`TallyMetaPixelPaused ${bad()} pending`) &&
        now.includes('TallyOperatorReconcileErrors stripeintegration pending') &&
        now
      );
    });
    const now = await active();
    for (const quiet of [
      'TallyIngestAbsent',
      'TallyForwarderAbsent',
      'TallyOperatorNoLeader',
      'TallyIngestDatabaseErrors',
    ])
      expect(now.filter((a) => a.startsWith(`${quiet} `))).toEqual([]);
    expect(now.filter((a) => a.startsWith('TallyMetaPixelPaused ') && a.includes(good()))).toEqual([]);
  });

  it('has every metric the alerts and the dashboard use, with the labels they use', async () => {
    const names = await prometheus!.api<string[]>('label/__name__/values');
    const scraped: ExportedMetric[] = [];
    for (const name of names.filter((n) => n.startsWith('tally_'))) {
      const series = await prometheus!.api<Record<string, string>[]>(
        `series?match[]=${encodeURIComponent(name)}`,
      );
      const labels = new Set(series.flatMap((s) => Object.keys(s)).filter((l) => l !== '__name__'));
      scraped.push({ name, type: 'scraped', help: '', labels: [...labels], component: 'ingest' });
    }
    const d = dashboard();
    const expressions = [
      ...alertRules().map((a) => [a.alert, a.expr] as const),
      ...dashboardPanels(d).flatMap((p) =>
        (p.targets ?? []).map((t) => [`${p.title} ${t.refId}`, t.expr] as const),
      ),
      ...d.templating.list
        .filter((v) => v.type === 'query')
        .map((v) => {
          const { selector, label } = parseLabelValues(variableQuery(v));
          return [`$${v.name}`, `${selector ?? ''} by (${label})`] as const;
        }),
    ];
    const problems = expressions.flatMap(([where, expr]) => [
      ...selectors(expr)
        .filter((s) => s.metric !== 'up' && !names.includes(s.metric))
        .map((s) => `${where}: ${s.metric} was never scraped`),
      ...checkExpression(expr, scraped).map((p) => `${where}: ${p}`),
    ]);
    expect(problems).toEqual([]);
  });

  it('answers every dashboard query with data, with the labels its legend shows', async () => {
    const d = dashboard();
    // Resolve the variables as Grafana does: label_values() through the label values API, then the regex.
    const values: Record<string, string> = { ...TEST_INTERVALS };
    const escape = (s: string) => s.replace(/[\\^$.|?*+()[\]{}]/g, '\\$&');
    for (const v of d.templating.list.filter((x) => x.type === 'query')) {
      const { selector, label } = parseLabelValues(substitute(variableQuery(v), values));
      const found = await prometheus!.api<string[]>(
        `label/${label}/values${selector ? `?match[]=${encodeURIComponent(selector)}` : ''}`,
      );
      const regex = v.regex ? new RegExp(v.regex.replace(/^\/(.*)\/$/, '$1')) : undefined;
      const options = [
        ...new Set(
          found.flatMap((value) => {
            if (!regex) return [value];
            const m = regex.exec(value);
            return m ? [m[1] ?? m[0]] : [];
          }),
        ),
      ];
      expect(options.length, `$${v.name} has options`).toBeGreaterThan(0);
      values[v.name] = v.allValue ?? `(${options.map(escape).join('|')})`;
    }
    expect(values.namespace).toBe(`(${escape(ns)})`);
    expect(values.pixel).toMatch(/revoked/);

    const empty: string[] = [];
    for (const p of dashboardPanels(d).filter((x) => x.type !== 'row')) {
      for (const t of p.targets ?? []) {
        const where = `${p.title} ${t.refId}`;
        const result = await prometheus!.query(substitute(t.expr, values));
        if (result.length === 0) empty.push(where);
        for (const label of [...(t.legendFormat ?? '').matchAll(/\{\{\s*(\w+)\s*\}\}/g)].map((m) => m[1]!)) {
          for (const s of result) expect(s.metric[label], `${where}: legend label ${label}`).toBeDefined();
        }
      }
    }
    expect(empty).toEqual([]);
  });
});
