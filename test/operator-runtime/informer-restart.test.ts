import { CoreV1Api, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { customObjectSource, Informer, type InformerEvent } from '../../operator/runtime/informer.js';
import { objectKey } from '../../operator/runtime/keys.js';
import { resolveBinaries, type ControlPlaneBinaries } from '../env/binaries.js';
import { ControlPlane } from '../env/control-plane.js';
import { installCustomResourceDefinitions } from '../env/install-crds.js';
import { calIntegrations, captureLogger, group, version } from './support.js';
import { TcpProxy } from './tcp-proxy.js';

/** The port a control plane serves on, from its https://127.0.0.1:<port> URL. */
const portOf = (plane: ControlPlane) => Number(new URL(plane.server).port);

/**
 * These tests need an API server they may stop, so they run their own control plane. ControlPlane picks
 * new ports on every start; a TCP proxy gives the informer one stable address across restarts.
 */
describe('Informer recovery when the API server goes away', () => {
  let dir: string;
  let binaries: ControlPlaneBinaries;
  let plane: ControlPlane;
  let proxy: TcpProxy;
  /** Talks to the API server through the proxy, as the operator would. */
  let viaProxy: KubeConfig;
  const informers: Informer<KubernetesObject>[] = [];
  const ns = 'recovery';

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'tally-runtime-restart-'));
    binaries = await resolveBinaries();
    plane = await ControlPlane.start({ dir, binaries, contextName: 'tally-restart' });
    await installCustomResourceDefinitions(plane.kubeConfig());
    await plane
      .kubeConfig()
      .makeApiClient(CoreV1Api)
      .createNamespace({ body: { metadata: { name: ns } } });
    proxy = await TcpProxy.start(portOf(plane));
    viaProxy = plane.kubeConfig();
    const cluster = viaProxy.getCurrentCluster()!;
    viaProxy.clusters = viaProxy.clusters.map((c) =>
      c.name === cluster.name ? { ...c, server: `https://127.0.0.1:${proxy.port}` } : c,
    );
  }, 180_000);

  afterAll(async () => {
    await Promise.all(informers.map((i) => i.stop()));
    await proxy?.close();
    await plane?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  function startInformer(opts: ConstructorParameters<typeof Informer>[2]) {
    const seen: { event: InformerEvent; key: string }[] = [];
    const informer = new Informer(
      viaProxy,
      customObjectSource(viaProxy, { group, version, plural: 'calintegrations', namespace: ns }),
      opts,
    );
    informer.addHandler((obj, event) => seen.push({ event, key: objectKey(obj) }));
    informers.push(informer);
    informer.start();
    return { informer, seen };
  }

  it('restarts after the API server and etcd restart, catches up on what changed meanwhile, and replays its cache', async () => {
    const direct = () => calIntegrations(plane.kubeConfig(), ns);
    await direct().create('kept', 'Kept');
    await direct().create('removed-while-down', 'Removed');
    const { log, entries } = captureLogger();
    const { informer, seen } = startInformer({ restartInitialDelayMs: 200, restartMaxDelayMs: 2_000, log });
    await informer.waitForSync(30_000);
    expect(informer.list().map(objectKey).sort()).toEqual([`${ns}/kept`, `${ns}/removed-while-down`]);

    // The API server becomes unreachable, then is restarted (new process, same etcd data).
    proxy.refuse();
    await expect.poll(() => informer.stats.restarts, { timeout: 30_000 }).toBeGreaterThan(0);
    await plane.stop();
    plane = await ControlPlane.start({ dir, binaries, contextName: 'tally-restart' });
    await installCustomResourceDefinitions(plane.kubeConfig());
    // Changes the informer cannot see yet: it is still cut off.
    await direct().delete('removed-while-down');
    await direct().create('created-while-down', 'Created');
    await direct().rename('kept', 'Kept and renamed');
    proxy.forwardTo(portOf(plane));

    await expect
      .poll(() => informer.list().map(objectKey).sort(), { timeout: 60_000 })
      .toEqual([`${ns}/created-while-down`, `${ns}/kept`]);
    await expect
      .poll(() => (informer.get('kept', ns) as { spec?: { displayName?: string } }).spec?.displayName, {
        timeout: 30_000,
      })
      .toBe('Kept and renamed');
    expect(seen).toContainEqual({ event: 'delete', key: `${ns}/removed-while-down` });
    expect(seen).toContainEqual({ event: 'add', key: `${ns}/created-while-down` });
    // On reconnecting it re-emitted what it had cached (client-node issue 795).
    expect(seen).toContainEqual({ event: 'replay', key: `${ns}/kept` });
    expect(entries.some((e) => e.level === 'warn' && e.message.includes('restarting'))).toBe(true);

    // And it keeps watching on the new API server.
    await direct().create('after-restart', 'After');
    await expect.poll(() => informer.get('after-restart', ns), { timeout: 30_000 }).toBeDefined();
  }, 240_000);

  it('a watchdog restarts a watch that went silent on a half-open connection', async () => {
    const direct = () => calIntegrations(plane.kubeConfig(), ns);
    // The API server ends each watch after 1-2 s, so a healthy watch reconnects well within the watchdog.
    const { informer } = startInformer({
      watchTimeoutSeconds: 1,
      watchdogMs: 5_000,
      restartInitialDelayMs: 200,
    });
    await informer.waitForSync(30_000);
    await direct().create('healthy', 'Healthy');
    await expect.poll(() => informer.get('healthy', ns), { timeout: 30_000 }).toBeDefined();
    // A quiet but healthy watch outlives the watchdog period without a restart.
    await new Promise((resolve) => setTimeout(resolve, 7_000));
    expect(informer.stats.restarts).toBe(0);

    // Every connection now silently stops carrying bytes, new ones too, so a watch that happens to be
    // reconnecting cannot slip past; nothing is closed. Only the watchdog can notice.
    proxy.freeze(true);
    await direct().create('while-frozen', 'Frozen');
    await expect.poll(() => informer.stats.restarts, { timeout: 60_000, interval: 250 }).toBeGreaterThan(0);
    expect(informer.stats.lastError).toMatch(/no watch event or reconnect for \d+ s/);
    expect(informer.get('while-frozen', ns)).toBeUndefined();
    // The network heals for new connections: the restarted informer catches up.
    proxy.thaw();
    await expect
      .poll(() => informer.get('while-frozen', ns), { timeout: 60_000, interval: 250 })
      .toBeDefined();
  }, 120_000);
});
