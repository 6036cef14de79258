import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import yaml from 'js-yaml';
import { describe, expect, it } from 'vitest';
import { currencyDecimals } from '../../core/money.js';
import { runCommand } from '../env/run.js';
import {
  checkExpression,
  dashboard,
  dashboardPanels,
  exportedMetrics,
  parseLabelValues,
  substitute,
  TEST_INTERVALS,
  variableQuery,
} from './promql.js';

const SAMPLE_VALUES = {
  ...TEST_INTERVALS,
  namespace: 'growth',
  integration: 'growth/acme',
  pixel: 'growth/website-pixel',
};

/** The Grafana dashboard shipped in the chart; test/e2e/prometheus.test.ts runs its queries for real. */
describe('Grafana dashboard charts/tally/dashboards/tally.json', () => {
  const d = dashboard();
  const panels = dashboardPanels(d);
  const queries = panels.filter((p) => p.type !== 'row');

  it('is a dashboard model with a Prometheus data source variable that every query uses', () => {
    expect(d.uid).toBe('tally-overview');
    expect(d.schemaVersion).toBeGreaterThanOrEqual(39);
    const [ds, ...vars] = d.templating.list;
    expect(ds).toMatchObject({ name: 'datasource', type: 'datasource', query: 'prometheus' });
    expect(vars.map((v) => v.name)).toEqual(['namespace', 'integration', 'pixel']);
    for (const v of vars) expect(v.datasource?.uid).toBe('${datasource}');
    for (const p of queries) {
      expect(p.datasource, p.title).toEqual({ type: 'prometheus', uid: '${datasource}' });
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets ?? []) expect(t.datasource?.uid, p.title).toBe('${datasource}');
      expect(new Set(p.targets?.map((t) => t.refId)).size, p.title).toBe(p.targets?.length);
    }
  });

  it('has unique panel ids and a layout without overlaps inside 24 columns', () => {
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
    const cells = new Set<string>();
    for (const p of panels) {
      const { x, y, w, h } = p.gridPos;
      expect(x + w, p.title).toBeLessThanOrEqual(24);
      for (let i = x; i < x + w; i++)
        for (let j = y; j < y + h; j++) {
          expect(cells.has(`${i},${j}`), `${p.title} overlaps at ${i},${j}`).toBe(false);
          cells.add(`${i},${j}`);
        }
    }
  });

  it('covers what operators asked for', () => {
    const titles = queries.map((p) => p.title);
    for (const t of [
      'Revenue by integration and currency',
      'Conversions by type',
      'Conversions API success ratio',
      'Conversions API latency',
      'Outbox backlog',
      'Oldest pending event',
      'Rejected webhooks by reason',
      'Dead letters',
      'Paused pixels',
      'Reconcile errors',
    ])
      expect(titles).toContain(t);
  });

  it('only queries metrics and labels that ingest, the forwarder and the operator export', () => {
    const metrics = exportedMetrics();
    const problems = [
      ...queries.flatMap((p) =>
        (p.targets ?? []).flatMap((t) =>
          checkExpression(t.expr, metrics).map((e) => `${p.title} ${t.refId}: ${e}`),
        ),
      ),
      ...d.templating.list
        .filter((v) => v.type === 'query')
        .flatMap((v) => {
          const { selector, label } = parseLabelValues(variableQuery(v));
          return checkExpression(`${selector ?? ''} by (${label})`, metrics).map((e) => `$${v.name}: ${e}`);
        }),
    ];
    expect(problems).toEqual([]);
  });

  it('has queries that parse (promtool check rules)', async () => {
    const rules = queries.flatMap((p) =>
      (p.targets ?? []).map((t) => ({
        record: `dashboard:panel_${p.id}_${t.refId}`,
        expr: substitute(t.expr, SAMPLE_VALUES),
      })),
    );
    const dir = await mkdtemp(path.join(tmpdir(), 'tally-dashboard-'));
    try {
      const file = path.join(dir, 'queries.yaml');
      await writeFile(file, yaml.dump({ groups: [{ name: 'dashboard', rules }] }));
      const result = await runCommand('promtool', ['check', 'rules', file]);
      expect(result.stderr).toBe('');
      expect(result.stdout).toContain(`SUCCESS: ${rules.length} rules found`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('converts revenue to major units with the same currency exponents as core/money', () => {
    // Every three-letter code: the ones core/money treats as zero- and three-decimal.
    const letters = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
    const codes = [...letters].flatMap((a) =>
      [...letters].flatMap((b) => [...letters].map((c) => a + b + c)),
    );
    const zero = codes.filter((c) => currencyDecimals(c) === 0);
    const three = codes.filter((c) => currencyDecimals(c) === 3);
    expect(zero).toContain('JPY');
    expect(three).toContain('KWD');
    const revenuePanels = queries.filter((p) => p.title.startsWith('Revenue'));
    expect(revenuePanels).toHaveLength(2);
    for (const p of revenuePanels) {
      const expr = p.targets![0]!.expr;
      const list = (re: RegExp) => (re.exec(expr)?.[1] ?? '').split('|').sort();
      expect(list(/currency!~"([A-Z|]+)"\}\[[^\]]+\]\)\)\s*\/\s*100\n/), p.title).toEqual(
        [...zero, ...three].sort(),
      );
      expect(list(/currency=~"([A-Z|]+)"\}\[[^\]]+\]\)\)\nor/), p.title).toEqual(zero);
      expect(list(/currency=~"([A-Z|]+)"\}\[[^\]]+\]\)\)\s*\/\s*1000$/), p.title).toEqual(three);
    }
  });
});
