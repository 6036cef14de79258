import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { kubectl } from '../env/context.js';
import { runTally, type Running } from './tally-cli.js';

describe('`tally dev` (what `npm start` runs)', () => {
  const running: Running[] = [];
  let dir: string;
  afterAll(async () => {
    for (const r of running) r.child.kill('SIGKILL');
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function start() {
    const run = runTally(['dev', '--dir', dir]);
    running.push(run);
    const output = await run.waitForOutput('Ctrl-C stops', 120_000);
    const kubeconfig = /export KUBECONFIG=(\S+)/.exec(output)?.[1];
    const server = /API server: (https:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1];
    expect(kubeconfig).toBe(path.join(dir, 'cluster', 'kubeconfig'));
    expect(server).toBeDefined();
    return { run, kubeconfig: kubeconfig!, server: server! };
  }

  async function stop(run: Running) {
    run.child.kill('SIGINT');
    expect(await run.exited).toBe(0);
    expect(run.output()).toContain('stopped; data kept in');
  }

  it('starts a control plane with the CRDs and examples applied, stops on Ctrl-C, and keeps its data', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'tally-dev-'));
    await chmod(dir, 0o755);

    const first = await start();
    const list = await kubectl(['--kubeconfig', first.kubeconfig, 'get', 'conversions', '-A', '-o', 'name']);
    expect(list.code).toBe(0);
    expect(list.stdout.split('\n').filter(Boolean).sort()).toEqual([
      'calintegration.tally.dev/demo-calls',
      'metapixel.tally.dev/website-pixel',
      'stripeintegration.tally.dev/acme',
    ]);
    const uid = await kubectl([
      '--kubeconfig',
      first.kubeconfig,
      'get',
      'stripe',
      'acme',
      '-n',
      'growth',
      '-o',
      'jsonpath={.metadata.uid}',
    ]);
    expect(uid.stdout).toMatch(/^[0-9a-f-]{36}$/);

    // The README's walk-through: a triggered checkout makes the integration "Receiving payment events".
    const webhookBase = /ingest at (http:\/\/127\.0\.0\.1:\d+)/.exec(first.run.output())?.[1];
    expect(webhookBase).toBeDefined();
    // As printed: after `export KUBECONFIG=…`, the secret and webhook URL come from the cluster.
    const trigger = runTally(
      [
        'trigger',
        'stripe',
        'checkout.session.completed',
        '-i',
        'growth/acme',
        '--set',
        '{"amount_total": 4900}',
      ],
      { ...process.env, KUBECONFIG: first.kubeconfig },
    );
    expect(await trigger.exited).toBe(0);
    expect(trigger.output()).toMatch(/^200 \{"received":true\}/);
    const status = (kind: string, name: string, path: string) =>
      kubectl([
        '--kubeconfig',
        first.kubeconfig,
        'get',
        kind,
        name,
        '-n',
        'growth',
        '-o',
        `jsonpath=${path}`,
      ]).then((r) => r.stdout);
    await expect
      .poll(() => status('stripe', 'acme', '{.status.phase} {.status.recentRevenue.summary}'), {
        timeout: 60_000,
        interval: 1_000,
      })
      .toBe('Receiving payment events 49.00 USD');
    // No Meta is reachable from here: the pixel must say so, not claim to forward.
    await expect
      .poll(
        () =>
          status(
            'pixel',
            'website-pixel',
            '{.status.conditions[?(@.type=="Forwarding")].reason} {.status.conditions[?(@.type=="Ready")].status}',
          ),
        {
          timeout: 60_000,
          interval: 1_000,
        },
      )
      .toMatch(/^(DeliveryFailing|AccessTokenRejected) False$/);

    await stop(first.run);
    await expect(fetch(`${first.server}/readyz`)).rejects.toThrow();

    // A second start reuses etcd's data: the same object, not a re-created one.
    const second = await start();
    const again = await kubectl([
      '--kubeconfig',
      second.kubeconfig,
      'get',
      'stripe',
      'acme',
      '-n',
      'growth',
      '-o',
      'jsonpath={.metadata.uid}',
    ]);
    expect(again.stdout).toBe(uid.stdout);
    await stop(second.run);
  }, 300_000);
});
