import { ApiException, CoreV1Api, type KubernetesObject, type V1Secret } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  customObjectSource,
  Informer,
  secretSource,
  type InformerEvent,
} from '../../operator/runtime/informer.js';
import { controllerOwnerKey, objectKey } from '../../operator/runtime/keys.js';
import { createTestNamespace, kubeConfig } from '../env/context.js';
import { calIntegrations, captureLogger, group, version } from './support.js';

interface Seen {
  event: InformerEvent;
  key: string;
  displayName?: string;
}

function record<T extends KubernetesObject>(
  informer: Informer<T>,
  describe?: (obj: T) => string | undefined,
): Seen[] {
  const seen: Seen[] = [];
  informer.addHandler((obj, event) => {
    const displayName = describe?.(obj);
    seen.push({ event, key: objectKey(obj), ...(displayName === undefined ? {} : { displayName }) });
  });
  return seen;
}

const displayNameOf = (obj: KubernetesObject) =>
  (obj as { spec?: { displayName?: string } }).spec?.displayName;

describe('Informer on a real kube-apiserver', () => {
  const kc = kubeConfig();
  const informers: Informer<KubernetesObject>[] = [];
  let ns: string;

  function track<T extends KubernetesObject>(informer: Informer<T>): Informer<T> {
    informers.push(informer as unknown as Informer<KubernetesObject>);
    return informer;
  }

  beforeAll(async () => {
    ns = await createTestNamespace('informer');
  });
  afterAll(async () => {
    await Promise.all(informers.map((i) => i.stop()));
  });

  it('lists, then sees create, update and delete of a tally.dev custom resource, with the cache following', async () => {
    const cal = calIntegrations(kc, ns);
    await cal.create('existing', 'Existing calls');
    const informer = track(
      new Informer(kc, customObjectSource(kc, { group, version, plural: 'calintegrations', namespace: ns })),
    );
    const seen = record(informer, displayNameOf);
    expect(informer.hasSynced()).toBe(false);
    informer.start();
    await informer.waitForSync(30_000);
    expect(informer.hasSynced()).toBe(true);
    expect(informer.list().map(objectKey)).toEqual([`${ns}/existing`]);
    expect(seen).toEqual([{ event: 'add', key: `${ns}/existing`, displayName: 'Existing calls' }]);

    await cal.create('live', 'Demo calls');
    await expect
      .poll(() => displayNameOf(informer.get('live', ns) ?? {}), { timeout: 20_000 })
      .toBe('Demo calls');
    await cal.rename('live', 'Sales calls');
    await expect
      .poll(() => displayNameOf(informer.get('live', ns) ?? {}), { timeout: 20_000 })
      .toBe('Sales calls');
    await cal.delete('live');
    await expect.poll(() => informer.get('live', ns), { timeout: 20_000 }).toBeUndefined();

    expect(seen.slice(1)).toEqual([
      { event: 'add', key: `${ns}/live`, displayName: 'Demo calls' },
      { event: 'update', key: `${ns}/live`, displayName: 'Sales calls' },
      { event: 'delete', key: `${ns}/live`, displayName: 'Sales calls' },
    ]);
    expect(informer.list(ns).map(objectKey)).toEqual([`${ns}/existing`]);
    expect(informer.stats.restarts).toBe(0);
  });

  it('sees create, update and delete of a Secret, and maps an owned Secret to its owner key', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    const informer = track(new Informer(kc, secretSource(kc, { namespace: ns })));
    const seen = record(informer);
    const owners: (string | undefined)[] = [];
    informer.addHandler((secret) =>
      owners.push(controllerOwnerKey(secret, { group, kind: 'CalIntegration' })),
    );
    informer.start();
    await informer.waitForSync(30_000);

    const cal = (await calIntegrations(kc, ns).create('owner', 'Owner')) as KubernetesObject;
    const uid = cal.metadata?.uid;
    expect(uid).toBeTruthy();
    await core.createNamespacedSecret({
      namespace: ns,
      body: {
        metadata: {
          name: 'owner-webhook',
          ownerReferences: [
            {
              apiVersion: `${group}/${version}`,
              kind: 'CalIntegration',
              name: 'owner',
              uid: uid!,
              controller: true,
            },
          ],
        },
        stringData: { 'webhook-secret': 'first' },
      },
    });
    const valueOf = () => {
      const data = informer.get('owner-webhook', ns)?.data?.['webhook-secret'];
      return data === undefined ? undefined : Buffer.from(data, 'base64').toString();
    };
    await expect.poll(valueOf, { timeout: 20_000 }).toBe('first');
    await core.replaceNamespacedSecret({
      name: 'owner-webhook',
      namespace: ns,
      body: {
        ...(await core.readNamespacedSecret({ name: 'owner-webhook', namespace: ns })),
        stringData: { 'webhook-secret': 'second' },
      },
    });
    await expect.poll(valueOf, { timeout: 20_000 }).toBe('second');
    await core.deleteNamespacedSecret({ name: 'owner-webhook', namespace: ns });
    await expect.poll(() => informer.get('owner-webhook', ns), { timeout: 20_000 }).toBeUndefined();

    expect(seen.map((s) => `${s.event} ${s.key}`)).toEqual([
      `add ${ns}/owner-webhook`,
      `update ${ns}/owner-webhook`,
      `delete ${ns}/owner-webhook`,
    ]);
    expect(owners).toEqual([`${ns}/owner`, `${ns}/owner`, `${ns}/owner`]);
  });

  it('keeps one shape in the cache for listed and watched Secrets (plain JSON with apiVersion and kind)', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    await core.createNamespacedSecret({
      namespace: ns,
      body: { metadata: { name: 'listed' }, stringData: { k: 'v' } },
    });
    const informer = track(new Informer<V1Secret>(kc, secretSource(kc, { namespace: ns })));
    informer.start();
    await informer.waitForSync(30_000);
    await core.createNamespacedSecret({
      namespace: ns,
      body: { metadata: { name: 'watched' }, stringData: { k: 'v' } },
    });
    await expect.poll(() => informer.get('watched', ns), { timeout: 20_000 }).toBeDefined();
    for (const name of ['listed', 'watched']) {
      const secret = informer.get(name, ns)!;
      expect(secret).toMatchObject({
        apiVersion: 'v1',
        kind: 'Secret',
        data: { k: Buffer.from('v').toString('base64') },
      });
      expect(typeof secret.metadata?.creationTimestamp).toBe('string');
    }
  });

  it('calls the handlers with every cached object on each resync', async () => {
    const cal = calIntegrations(kc, ns);
    await cal.create('resync-a', 'A');
    await cal.create('resync-b', 'B');
    const informer = track(
      new Informer(kc, customObjectSource(kc, { group, version, plural: 'calintegrations', namespace: ns }), {
        resyncMs: 200,
      }),
    );
    const seen = record(informer);
    informer.start();
    await informer.waitForSync(30_000);
    const cached = informer.list().map(objectKey).sort();
    expect(cached).toEqual(expect.arrayContaining([`${ns}/resync-a`, `${ns}/resync-b`]));
    // Two full passes: every cached key at least twice with event `resync`.
    await expect
      .poll(
        () => cached.every((key) => seen.filter((s) => s.event === 'resync' && s.key === key).length >= 2),
        { timeout: 20_000 },
      )
      .toBe(true);
  });

  it('retries a failing list with backoff doubling from the initial delay, then syncs', async () => {
    const source = customObjectSource(kc, { group, version, plural: 'calintegrations', namespace: ns });
    let calls = 0;
    const { log, entries } = captureLogger();
    const informer = track(
      new Informer(
        kc,
        {
          ...source,
          list: async () => {
            calls++;
            if (calls <= 3) {
              throw new ApiException(
                503,
                'list',
                { kind: 'Status', code: 503, message: 'etcd is unavailable' },
                {},
              );
            }
            return source.list();
          },
        },
        { restartInitialDelayMs: 50, restartMaxDelayMs: 150, log },
      ),
    );
    informer.start();
    await informer.waitForSync(30_000);
    expect(calls).toBe(4);
    expect(informer.stats).toMatchObject({
      restarts: 3,
      lastError: 'HTTP 503: etcd is unavailable',
      state: 'running',
    });
    expect(entries.filter((e) => e.level === 'warn').map((e) => e.fields.retryInMs)).toEqual([50, 100, 150]);
    expect(informer.list().length).toBeGreaterThan(0);
  });

  it('refuses a watchdog shorter than a healthy quiet watch can last', () => {
    const source = customObjectSource(kc, { group, version, plural: 'calintegrations', namespace: ns });
    expect(() => new Informer(kc, source, { watchdogMs: 60_000, watchTimeoutSeconds: 60 })).toThrow(
      /watchdogMs/,
    );
  });

  it('stops cleanly: its own abort is not reported as an error, and waitForSync fails on a stopped informer', async () => {
    const { log, entries } = captureLogger();
    const informer = track(
      new Informer(kc, customObjectSource(kc, { group, version, plural: 'calintegrations', namespace: ns }), {
        log,
      }),
    );
    informer.start();
    await informer.waitForSync(30_000);
    await informer.stop();
    // client-node 1.4.0 reports the aborted watch through its error callback on a later tick.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(informer.stats).toMatchObject({ restarts: 0, lastError: undefined, state: 'stopped' });
    expect(entries.filter((e) => e.level !== 'info')).toEqual([]);

    const never = new Informer(
      kc,
      customObjectSource(kc, { group, version, plural: 'calintegrations', namespace: ns }),
    );
    const waiting = never.waitForSync();
    await never.stop();
    await expect(waiting).rejects.toThrow(/stopped before its cache synced/);
  });
});
