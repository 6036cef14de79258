import {
  CoordinationV1Api,
  CustomObjectsApi,
  V1MicroTime,
  type KubeConfig,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Controller, type ReconcileObservation } from '../../operator/runtime/controller.js';
import { customObjectSource, Informer } from '../../operator/runtime/informer.js';
import { splitKey } from '../../operator/runtime/keys.js';
import { Manager } from '../../operator/runtime/manager.js';
import { createTestNamespace, kubeConfig } from '../env/context.js';
import { calIntegrations, captureLogger, group, version } from './support.js';

type Cal = KubernetesObject & { spec: { displayName: string } };

/** What one reconcile saw in the cache: the display name, or `gone`. */
interface Visit {
  key: string;
  saw: string;
}

/**
 * A controller for CalIntegrations in `ns` whose reconcile records what it read from the informer cache
 * (never from the event) and runs `behaviour` for special keys.
 */
function calController(
  kc: KubeConfig,
  ns: string,
  opts: {
    name: string;
    behaviour?: (key: string, obj: Cal | undefined, attempt: number) => Promise<unknown>;
  },
) {
  const informer = new Informer<Cal>(
    kc,
    customObjectSource<Cal>(kc, { group, version, plural: 'calintegrations', namespace: ns }),
    { resyncMs: 0 },
  );
  const visits: Visit[] = [];
  const observations: ReconcileObservation[] = [];
  const depths: number[] = [];
  const attempts = new Map<string, number>();
  const { log, entries } = captureLogger();
  const controller = new Controller({
    name: opts.name,
    workers: 2,
    queue: { baseDelayMs: 20, maxDelayMs: 500 },
    log,
    metrics: {
      reconciled: (o) => observations.push(o),
      queueDepth: (_controller, depth) => depths.push(depth),
    },
    reconcile: async (key) => {
      const { namespace, name } = splitKey(key);
      const obj = informer.get(name, namespace);
      visits.push({ key: name, saw: obj ? obj.spec.displayName : 'gone' });
      const attempt = (attempts.get(name) ?? 0) + 1;
      attempts.set(name, attempt);
      return (await opts.behaviour?.(name, obj, attempt)) as { requeueAfter?: number } | void;
    },
  }).watch(informer);
  const visitsOf = (name: string) => visits.filter((v) => v.key === name).map((v) => v.saw);
  const outcomesOf = (name: string) =>
    observations.filter((o) => o.key === `${ns}/${name}`).map((o) => o.outcome);
  return { informer, controller, visits, visitsOf, observations, outcomesOf, depths, entries };
}

describe('Controller and Manager on a real kube-apiserver', () => {
  const kc = kubeConfig();
  const managers: Manager[] = [];
  let ns: string;

  beforeAll(async () => {
    ns = await createTestNamespace('controller');
  });
  afterAll(async () => {
    await Promise.all(managers.map((m) => m.stop()));
  });

  it('reconciles each key once per change, reading the cache; retries errors with backoff; 409 is a quiet requeue', async () => {
    const api = kc.makeApiClient(CustomObjectsApi);
    const cal = calIntegrations(kc, ns);
    await cal.create('existing', 'Existing');
    let staleResourceVersion: string | undefined;
    const c = calController(kc, ns, {
      name: 'cal',
      behaviour: async (name, obj, attempt) => {
        if (name === 'flaky' && attempt <= 2) throw new Error(`flaky attempt ${attempt} failed`);
        if (name === 'conflicting' && attempt === 1 && obj) {
          // A write with a resourceVersion that is no longer current: the API server answers 409.
          staleResourceVersion = obj.metadata?.resourceVersion;
          await cal.rename('conflicting', 'Changed behind our back');
          await api.replaceNamespacedCustomObject({
            group,
            version,
            namespace: ns,
            plural: 'calintegrations',
            name: 'conflicting',
            body: { ...obj, spec: { displayName: 'Our write' } },
          });
        }
        if (name === 'periodic' && attempt <= 2) return { requeueAfter: 50 };
        return undefined;
      },
    });
    const manager = new Manager();
    managers.push(manager);
    manager.addController(c.controller);
    await manager.start();
    expect(c.informer.hasSynced()).toBe(true);
    expect(manager.isLeader).toBe(true);

    // The object that existed before start is reconciled once.
    await expect.poll(() => c.visitsOf('existing'), { timeout: 20_000 }).toEqual(['Existing']);

    // Each change: one reconcile that sees the new state in the cache; a delete is seen as gone.
    await cal.create('one', 'One');
    await expect.poll(() => c.visitsOf('one'), { timeout: 20_000 }).toEqual(['One']);
    await cal.rename('one', 'One, renamed');
    await expect.poll(() => c.visitsOf('one'), { timeout: 20_000 }).toEqual(['One', 'One, renamed']);
    await cal.delete('one');
    await expect.poll(() => c.visitsOf('one'), { timeout: 20_000 }).toEqual(['One', 'One, renamed', 'gone']);

    // Errors: requeued with backoff until they succeed, then forgotten.
    await cal.create('flaky', 'Flaky');
    await expect
      .poll(() => c.outcomesOf('flaky'), { timeout: 20_000 })
      .toEqual(['error', 'error', 'success']);
    expect(c.observations.find((o) => o.outcome === 'error')?.error).toBe('flaky attempt 1 failed');
    expect(c.entries.filter((e) => e.level === 'error').map((e) => e.fields.key)).toEqual([
      `${ns}/flaky`,
      `${ns}/flaky`,
    ]);

    // A real 409 from the API server: requeued and retried, logged at debug level only.
    await cal.create('conflicting', 'Conflicting');
    await expect.poll(() => c.outcomesOf('conflicting')[0], { timeout: 20_000 }).toBe('conflict');
    expect(staleResourceVersion).toBeTruthy();
    expect(c.observations.find((o) => o.outcome === 'conflict')?.error).toMatch(/^HTTP 409 Conflict: /);
    // The retry reads the cache again, which by now holds the write that beat ours.
    await expect
      .poll(() => c.visitsOf('conflicting').at(-1), { timeout: 20_000 })
      .toBe('Changed behind our back');
    await expect.poll(() => c.outcomesOf('conflicting').at(-1), { timeout: 20_000 }).toBe('success');
    expect(c.entries.some((e) => e.level === 'error' && e.fields.key === `${ns}/conflicting`)).toBe(false);
    expect(c.entries.some((e) => e.level === 'debug' && e.fields.key === `${ns}/conflicting`)).toBe(true);

    // requeueAfter: reconciled again without any change to the object.
    await cal.create('periodic', 'Periodic');
    await expect
      .poll(() => c.outcomesOf('periodic'), { timeout: 20_000 })
      .toEqual(['requeue_after', 'requeue_after', 'success']);
    expect(c.visitsOf('periodic')).toEqual(['Periodic', 'Periodic', 'Periodic']);

    // A last change proves nothing else was still queued for the keys above: events arrive in order on
    // one watch, so any extra reconcile of them would have been queued before this one.
    await cal.create('sentinel', 'Sentinel');
    await expect.poll(() => c.visitsOf('sentinel'), { timeout: 20_000 }).toEqual(['Sentinel']);
    expect(c.visitsOf('existing')).toEqual(['Existing']);
    expect(c.visitsOf('one')).toEqual(['One', 'One, renamed', 'gone']);
    expect(c.visitsOf('flaky')).toHaveLength(3);
    expect(c.visitsOf('periodic')).toHaveLength(3);

    expect(c.depths.some((d) => d > 0)).toBe(true);
    expect(c.observations.every((o) => o.durationMs >= 0 && o.controller === 'cal')).toBe(true);
    expect(c.controller.queueDepth).toBe(0);

    await manager.stop();
    await expect(manager.done).resolves.toBe('stopped');
    expect(c.informer.stats.state).toBe('stopped');
  });

  it('with leader election, only the leader reconciles; a standby takes over after a graceful stop, and exits on losing the lease', async () => {
    const cal = calIntegrations(kc, ns);
    const names = ['le-a', 'le-b', 'le-c'];
    for (const name of names) await cal.create(name, name.toUpperCase());
    const replica = (identity: string) => {
      const c = calController(kc, ns, { name: `cal-${identity}` });
      const manager = new Manager({
        leaderElection: {
          kubeConfig: kc,
          namespace: ns,
          name: 'tally-operator',
          identity,
          leaseDurationMs: 3_000,
          renewDeadlineMs: 2_000,
          retryPeriodMs: 500,
        },
      });
      manager.addController(c.controller);
      managers.push(manager);
      return { ...c, manager, identity };
    };
    const first = replica('operator-1');
    await first.manager.start();
    await expect.poll(() => first.manager.isLeader, { timeout: 20_000 }).toBe(true);
    const second = replica('operator-2');
    await second.manager.start();
    // The standby has a warm cache and queued keys, but reconciles nothing while the first leads.
    expect(second.informer.hasSynced()).toBe(true);
    await expect
      .poll(() => second.controller.queueDepth, { timeout: 20_000 })
      .toBeGreaterThanOrEqual(names.length);
    await expect.poll(() => names.every((n) => first.visitsOf(n).length > 0), { timeout: 20_000 }).toBe(true);
    expect(second.manager.isLeader).toBe(false);
    expect(second.visits).toEqual([]);

    await first.manager.stop();
    await expect(first.manager.done).resolves.toBe('stopped');
    await expect.poll(() => second.manager.isLeader, { timeout: 20_000 }).toBe(true);
    await expect
      .poll(() => names.every((n) => second.visitsOf(n).length > 0), { timeout: 20_000 })
      .toBe(true);
    const lease = await kc
      .makeApiClient(CoordinationV1Api)
      .readNamespacedLease({ name: 'tally-operator', namespace: ns });
    expect(lease.spec?.holderIdentity).toBe('operator-2');

    // Someone else takes the Lease: the manager must stop and say so, so the process can exit.
    const now = new V1MicroTime();
    await kc.makeApiClient(CoordinationV1Api).replaceNamespacedLease({
      name: 'tally-operator',
      namespace: ns,
      body: {
        ...lease,
        spec: { ...lease.spec, holderIdentity: 'operator-3', renewTime: now, leaseDurationSeconds: 60 },
      },
    });
    await expect(second.manager.done).resolves.toBe('leadership-lost');
    expect(second.manager.isLeader).toBe(false);
    expect(second.informer.stats.state).toBe('stopped');
    // Its queue is shut down: nothing is taken any more.
    second.controller.enqueue(`${ns}/le-a`);
    expect(second.controller.queueDepth).toBe(0);
  });

  it('fails start() with a clear error when a cache cannot sync in time', async () => {
    const informer = new Informer(
      kc,
      customObjectSource(kc, { group: 'example.com', version: 'v1', plural: 'missingthings', namespace: ns }),
      { restartInitialDelayMs: 100 },
    );
    const controller = new Controller({ name: 'missing', reconcile: async () => {} }).watch(informer);
    const manager = new Manager({ syncTimeoutMs: 1_500 });
    manager.addController(controller);
    await expect(manager.start()).rejects.toThrow(
      /did not sync within 1500 ms \(last error: HTTP 404: 404 page not found\)/,
    );
    await expect(manager.done).resolves.toBe('stopped');
    expect(informer.stats.state).toBe('stopped');
  });
});
