import { readFileSync } from 'node:fs';
import path from 'node:path';
import yaml from 'js-yaml';
import { describe, expect, it } from 'vitest';
import { runCommand } from '../env/run.js';
import { alertRules, checkExpression, exportedMetrics, PROMETHEUS_DIR } from './promql.js';

interface RulesTest {
  tests: { name: string; alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[];
}

describe('Prometheus alerting rules', () => {
  const rules = alertRules();

  it('pass promtool check rules', async () => {
    const result = await runCommand('promtool', ['check', 'rules', path.join(PROMETHEUS_DIR, 'rules.yaml')]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });

  it('fire exactly as their promtool unit tests expect', async () => {
    const result = await runCommand('promtool', [
      'test',
      'rules',
      path.join(PROMETHEUS_DIR, 'rules.test.yaml'),
    ]);
    expect(`${result.stdout}${result.stderr}`).toContain('SUCCESS');
    expect(result.code).toBe(0);
  });

  it('each have a unit test where they fire and one where they stay quiet', () => {
    const doc = yaml.load(readFileSync(path.join(PROMETHEUS_DIR, 'rules.test.yaml'), 'utf8')) as RulesTest;
    const cases = doc.tests.flatMap((t) => t.alert_rule_test ?? []);
    const missing = rules.flatMap((r) => {
      const own = cases.filter((c) => c.alertname === r.alert);
      return [
        ...(own.some((c) => c.exp_alerts.length > 0) ? [] : [`${r.alert}: no case where it fires`]),
        ...(own.some((c) => c.exp_alerts.length === 0) ? [] : [`${r.alert}: no case where it stays quiet`]),
      ];
    });
    expect(missing).toEqual([]);
  });

  it('each have a severity, a summary, a description and runbook text', () => {
    expect(rules.length).toBeGreaterThanOrEqual(13);
    for (const r of rules) {
      expect(r.alert, r.alert).toMatch(/^Tally[A-Z]\w+$/);
      expect(['warning', 'critical'], r.alert).toContain(r.labels.severity);
      for (const key of ['summary', 'description', 'runbook']) {
        expect(r.annotations[key]?.length ?? 0, `${r.alert} ${key}`).toBeGreaterThan(20);
      }
    }
    expect(new Set(rules.map((r) => r.alert)).size).toBe(rules.length);
  });

  it('only use metrics and labels that ingest, the forwarder and the operator export', () => {
    const metrics = exportedMetrics();
    const problems = rules.flatMap((r) => checkExpression(r.expr, metrics).map((p) => `${r.alert}: ${p}`));
    expect(problems).toEqual([]);
  });
});
