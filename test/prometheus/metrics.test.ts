import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../core/project-root.js';
import { alertRules, exportedMetrics } from './promql.js';

/** Prometheus' naming conventions (https://prometheus.io/docs/practices/naming/) for Tally's own metrics. */
describe('Tally metric names', () => {
  const metrics = exportedMetrics();

  it('are tally_<component>_… in snake case, with help text', () => {
    expect(metrics.length).toBeGreaterThan(25);
    for (const m of metrics) {
      expect(m.name).toMatch(new RegExp(`^tally_${m.component}_[a-z][a-z0-9_]*[a-z0-9]$`));
      expect(m.name).not.toContain('__');
      expect(m.help.length, m.name).toBeGreaterThan(10);
    }
    expect(new Set(metrics.map((m) => m.name)).size).toBe(metrics.length);
  });

  it('end in _total exactly when they are counters, and name their unit otherwise', () => {
    for (const m of metrics) {
      if (m.type === 'counter') expect(m.name).toMatch(/_total$/);
      else expect(m.name).not.toMatch(/_total$/);
      // Base units only: seconds, not milliseconds; a histogram always says what it measures.
      expect(m.name).not.toMatch(/_(milliseconds|ms|minutes|hours|days|kilobytes|megabytes|percent)(_|$)/);
      if (m.type === 'histogram') expect(m.name).toMatch(/_(seconds|bytes|events)$/);
      if (m.name.includes('timestamp')) expect(m.name).toMatch(/_timestamp_seconds$/);
    }
  });

  it('never have a label that could carry a secret or unbounded values', () => {
    const labels = new Set(metrics.flatMap((m) => m.labels));
    for (const banned of [
      'token',
      'secret',
      'key',
      'email',
      'customer',
      'event_id',
      'url',
      'message',
      'error',
    ])
      expect(labels).not.toContain(banned);
  });

  it('and every alert are documented in docs/metrics.md', () => {
    const doc = readFileSync(path.join(projectRoot(), 'docs', 'metrics.md'), 'utf8');
    const undocumented = [
      ...metrics.filter((m) => !doc.includes(`\`${m.name}\``)).map((m) => m.name),
      ...alertRules()
        .filter((r) => !doc.includes(`### ${r.alert}`))
        .map((r) => r.alert),
    ];
    expect(undocumented).toEqual([]);
  });
});
