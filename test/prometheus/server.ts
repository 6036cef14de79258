import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import yaml from 'js-yaml';
import { freePort, startProcess, waitFor, type ManagedProcess } from '../env/processes.js';
import { PROMETHEUS_DIR } from './promql.js';

export interface Sample {
  metric: Record<string, string>;
  value: number;
}

export interface RunningPrometheus {
  url: string;
  process: ManagedProcess;
  /** An instant query; throws with Prometheus' error message when it fails. */
  query(expr: string): Promise<Sample[]>;
  /** `GET /api/v1/<path>`'s data. */
  api<T>(pathAndQuery: string): Promise<T>;
  stop(): Promise<void>;
}

interface ApiAnswer<T> {
  status: 'success' | 'error';
  data: T;
  errorType?: string;
  error?: string;
}

/**
 * A real Prometheus (Debian's `prometheus` binary) on a free loopback port, scraping `targets` (job name →
 * host:port) every second and evaluating Tally's alerting rules every second, with its storage in a
 * temporary folder removed on stop.
 */
export async function startPrometheus(targets: Record<string, string>): Promise<RunningPrometheus> {
  const dir = await mkdtemp(path.join(tmpdir(), 'tally-prometheus-'));
  const port = await freePort();
  const config = {
    global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
    rule_files: [path.join(PROMETHEUS_DIR, 'rules.yaml')],
    scrape_configs: Object.entries(targets).map(([job, target]) => ({
      job_name: job,
      static_configs: [{ targets: [target] }],
    })),
  };
  const configFile = path.join(dir, 'prometheus.yml');
  await writeFile(configFile, yaml.dump(config));
  const child = startProcess(
    'prometheus',
    'prometheus',
    [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${path.join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    path.join(dir, 'prometheus.log'),
  );
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    await child.stop();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitFor('Prometheus ready', async () => (await fetch(`${url}/-/ready`)).ok, {
      timeoutMs: 30_000,
      process: child,
    });
  } catch (err) {
    await child.stop();
    throw err;
  }
  async function api<T>(pathAndQuery: string): Promise<T> {
    const res = await fetch(`${url}/api/v1/${pathAndQuery}`);
    const body = (await res.json()) as ApiAnswer<T>;
    if (body.status !== 'success') throw new Error(`Prometheus: ${body.errorType}: ${body.error}`);
    return body.data;
  }
  return {
    url,
    process: child,
    api,
    async query(expr) {
      const data = await api<{
        resultType: string;
        result: { metric: Record<string, string>; value: [number, string] }[] | [number, string];
      }>(`query?query=${encodeURIComponent(expr)}`);
      if (data.resultType === 'scalar') {
        const [, v] = data.result as [number, string];
        return [{ metric: {}, value: Number(v) }];
      }
      return (data.result as { metric: Record<string, string>; value: [number, string] }[]).map((r) => ({
        metric: r.metric,
        value: Number(r.value[1]),
      }));
    },
    stop,
  };
}

/** `{label value: sample value}` of a query grouped by one label, for exact comparisons. */
export function byLabel(samples: Sample[], label: string): Record<string, number> {
  return Object.fromEntries(samples.map((s) => [s.metric[label] ?? '', s.value]));
}
