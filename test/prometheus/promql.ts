import { readFileSync } from 'node:fs';
import path from 'node:path';
import yaml from 'js-yaml';
import type { MetricObject, Registry } from 'prom-client';
import { projectRoot } from '../../core/project-root.js';
import { createForwarderMetrics } from '../../forwarder/metrics.js';
import { createIngestMetrics } from '../../ingest/metrics.js';
import { createOperatorMetrics } from '../../operator/metrics.js';

/**
 * What the alert rules and the Grafana dashboard ask Prometheus for, and what Tally exports, so tests can
 * check one against the other: a renamed metric or label must break a test, not a dashboard in production.
 */

export const PROMETHEUS_DIR = path.join(projectRoot(), 'charts', 'tally', 'prometheus');
export const DASHBOARD_PATH = path.join(projectRoot(), 'charts', 'tally', 'dashboards', 'tally.json');

/** Labels Prometheus adds from the scrape target (static configs, or Kubernetes service discovery). */
export const TARGET_LABELS = ['job', 'instance', 'namespace', 'pod', 'service', 'container', 'endpoint'];

export interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

export function alertRules(): AlertRule[] {
  const doc = yaml.load(readFileSync(path.join(PROMETHEUS_DIR, 'rules.yaml'), 'utf8')) as {
    groups: { name: string; rules: AlertRule[] }[];
  };
  return doc.groups.flatMap((g) => g.rules);
}

export interface DashboardTarget {
  expr: string;
  legendFormat?: string;
  refId: string;
  instant?: boolean;
}
export interface DashboardPanel {
  id: number;
  type: string;
  title: string;
  description?: string;
  datasource?: { type: string; uid: string };
  gridPos: { h: number; w: number; x: number; y: number };
  targets?: (DashboardTarget & { datasource?: { type: string; uid: string } })[];
  panels?: DashboardPanel[];
}
export interface DashboardVariable {
  name: string;
  type: string;
  query: string | { query: string };
  regex?: string;
  includeAll?: boolean;
  allValue?: string;
  datasource?: { type: string; uid: string };
}
export interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: DashboardPanel[];
  templating: { list: DashboardVariable[] };
}

export function dashboard(): Dashboard {
  return JSON.parse(readFileSync(DASHBOARD_PATH, 'utf8')) as Dashboard;
}

/** Every panel, including those inside collapsed rows. */
export function dashboardPanels(d: Dashboard = dashboard()): DashboardPanel[] {
  return d.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
}

export function variableQuery(v: DashboardVariable): string {
  return typeof v.query === 'string' ? v.query : v.query.query;
}

/** `label_values(selector, label)` or `label_values(label)`, Grafana's variable query for Prometheus. */
export function parseLabelValues(query: string): { selector?: string; label: string } {
  const m = /^label_values\(\s*(?:(.+),\s*)?([a-zA-Z_]\w*)\s*\)$/.exec(query.trim());
  if (!m) throw new Error(`not a label_values() query: ${query}`);
  return { selector: m[1], label: m[2]! };
}

/** A metric selector in an expression: the metric name and the label names its matchers use. */
export interface Selector {
  metric: string;
  labels: string[];
}

/** Drops string literals, so regexes and Grafana variables inside matchers cannot look like names. */
function withoutStrings(expr: string): string {
  return expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""');
}

/** The Tally metrics an expression selects (`tally_…`, and `up`), with the labels matched on. */
export function selectors(expr: string): Selector[] {
  const text = withoutStrings(expr);
  const found: Selector[] = [];
  for (const m of text.matchAll(/\b(tally_[a-zA-Z0-9_]+|up)\b\s*(\{[^}]*\})?/g)) {
    const labels = [...(m[2] ?? '').matchAll(/([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)/g)].map((l) => l[1]!);
    found.push({ metric: m[1]!, labels });
  }
  return found;
}

/** Label names used by `by`, `without`, `on`, `ignoring`, `group_left` and `group_right`. */
export function groupingLabels(expr: string): string[] {
  const text = withoutStrings(expr);
  return [...text.matchAll(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g)].flatMap(
    (m) =>
      m[1]!
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
  );
}

export interface ExportedMetric {
  name: string;
  type: string;
  help: string;
  labels: string[];
  component: 'ingest' | 'forwarder' | 'operator';
}

/** Every metric the three components register (their own, not Node.js' process metrics). */
export function exportedMetrics(): ExportedMetric[] {
  const registries: [ExportedMetric['component'], Registry][] = [
    ['ingest', createIngestMetrics().registry],
    ['forwarder', createForwarderMetrics().registry],
    ['operator', createOperatorMetrics().registry],
  ];
  return registries.flatMap(([component, registry]) =>
    registry
      .getMetricsAsArray()
      // prom-client keeps the label names on the metric object without declaring them in MetricObject.
      .map((m) => m as MetricObject & { labelNames?: readonly string[] })
      .filter((m) => m.name.startsWith('tally_'))
      .map((m) => ({
        name: m.name,
        type: String(m.type),
        help: m.help,
        labels: [...(m.labelNames ?? [])],
        component,
      })),
  );
}

/**
 * The exported metric a series name belongs to (`x_bucket` → histogram `x`), and the labels it carries,
 * `le` included for buckets. Undefined when nothing exports it.
 */
export function resolveSeries(
  name: string,
  metrics: ExportedMetric[],
): { metric: ExportedMetric; labels: string[] } | undefined {
  const exact = metrics.find((m) => m.name === name);
  if (exact) return { metric: exact, labels: exact.labels };
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  const base = m && metrics.find((x) => x.name === m[1] && (x.type === 'histogram' || x.type === 'summary'));
  if (!base) return undefined;
  return { metric: base, labels: m[2] === 'bucket' ? [...base.labels, 'le'] : base.labels };
}

/**
 * Problems with an expression against what Tally exports: unknown metrics, matchers on labels the metric does
 * not have, and grouping by labels none of the expression's metrics have. Empty when all is well.
 */
export function checkExpression(expr: string, metrics: ExportedMetric[]): string[] {
  const problems: string[] = [];
  const known = new Set(TARGET_LABELS);
  for (const s of selectors(expr)) {
    if (s.metric === 'up') continue;
    const series = resolveSeries(s.metric, metrics);
    if (!series) {
      problems.push(`${s.metric} is not exported by ingest, the forwarder or the operator`);
      continue;
    }
    series.labels.forEach((l) => known.add(l));
    for (const label of s.labels) {
      if (!series.labels.includes(label) && !TARGET_LABELS.includes(label))
        problems.push(`${s.metric} has no label ${label} (it has: ${series.labels.join(', ') || 'none'})`);
    }
  }
  for (const label of groupingLabels(expr)) {
    if (!known.has(label)) problems.push(`groups by ${label}, which none of its metrics has`);
  }
  return problems;
}

/** Grafana's built-in interval variables, with values that suit a short test run. */
export const TEST_INTERVALS: Record<string, string> = {
  __rate_interval: '1m',
  __interval: '1m',
  __range: '5m',
};

/** Replaces Grafana variables (`$name`, `${name}`, `[[name]]`) in an expression; unknown ones throw. */
export function substitute(expr: string, values: Record<string, string>): string {
  return expr.replace(/\$\{(\w+)\}|\[\[(\w+)\]\]|\$(\w+)/g, (whole, a?: string, b?: string, c?: string) => {
    const name = (a ?? b ?? c)!;
    const value = values[name];
    if (value === undefined) throw new Error(`no value for the dashboard variable ${whole} in ${expr}`);
    return value;
  });
}
