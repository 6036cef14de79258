import http from 'node:http';
import { Counter, Gauge, Histogram } from 'prom-client';
import { createRegistry } from '../core/metrics.js';
import type { ControllerMetrics } from './runtime/index.js';

/** The operator's Prometheus metrics: reconciles by controller and result, their duration, queue depth, API writes. */
export function createOperatorMetrics(isLeader: () => boolean = () => false) {
  const registry = createRegistry();
  const reconciles = new Counter({
    name: 'tally_operator_reconciles_total',
    help: 'Reconciles by controller and result (success, requeue_after, conflict, error).',
    labelNames: ['controller', 'result'],
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'tally_operator_reconcile_duration_seconds',
    help: 'How long one reconcile took.',
    labelNames: ['controller'],
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const depth = new Gauge({
    name: 'tally_operator_workqueue_depth',
    help: 'Keys waiting for a worker, by controller.',
    labelNames: ['controller'],
    registers: [registry],
  });
  const writes = new Counter({
    name: 'tally_operator_api_writes_total',
    help: 'Write requests sent to the Kubernetes API, by verb and resource.',
    labelNames: ['verb', 'resource'],
    registers: [registry],
  });
  new Gauge({
    name: 'tally_operator_leader',
    help: '1 while this replica holds the leader lease.',
    registers: [registry],
    collect() {
      this.set(isLeader() ? 1 : 0);
    },
  });
  const controller: ControllerMetrics = {
    reconciled: (o) => {
      reconciles.inc({ controller: o.controller, result: o.outcome });
      duration.observe({ controller: o.controller }, o.durationMs / 1000);
    },
    queueDepth: (c, d) => depth.set({ controller: c }, d),
  };
  return { registry, controller, writes };
}
export type OperatorMetrics = ReturnType<typeof createOperatorMetrics>;

/** /metrics, /healthz and /readyz on the admin port. */
export async function startAdminServer(
  metrics: OperatorMetrics,
  ready: () => boolean,
  host: string,
  port: number,
): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const send = (code: number, type: string, body: string) => {
      res.writeHead(code, { 'Content-Type': type });
      res.end(body);
    };
    if (path === '/healthz') return send(200, 'application/json', '{"status":"ok"}');
    if (path === '/readyz')
      return ready()
        ? send(200, 'application/json', '{"status":"ready"}')
        : send(503, 'application/json', '{"status":"not_ready","problems":["caches not synced"]}');
    if (path === '/metrics') {
      metrics.registry.metrics().then(
        (text) => send(200, metrics.registry.contentType, text),
        () => send(500, 'text/plain', 'metrics unavailable'),
      );
      return;
    }
    send(404, 'application/json', '{"error":"not_found"}');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  const bound = typeof address === 'object' && address ? address.port : port;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${bound}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
