import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { readFile, mkdir } from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import type { ControlPlaneBinaries } from './binaries.js';
import { ensurePki, writeKubeconfig, type Pki } from './pki.js';
import { freePort, startProcess, waitFor, type ManagedProcess } from './processes.js';

export interface ControlPlaneOptions {
  /** Holds pki/, etcd/, logs/ and kubeconfig; an existing folder is reused (data and certificates). */
  dir: string;
  binaries: ControlPlaneBinaries;
  /** Name of the kubeconfig context and cluster. */
  contextName?: string;
}

/**
 * A real kube-apiserver backed by etcd, on loopback, with RBAC on and an admin client certificate:
 * what envtest starts for controller-runtime, without controllers, scheduler or kubelet.
 */
export class ControlPlane {
  private constructor(
    readonly dir: string,
    readonly server: string,
    readonly kubeconfigPath: string,
    readonly binaries: ControlPlaneBinaries,
    private readonly processes: ManagedProcess[],
  ) {}

  static async start(opts: ControlPlaneOptions): Promise<ControlPlane> {
    const { dir, binaries } = opts;
    const logs = path.join(dir, 'logs');
    await mkdir(logs, { recursive: true });
    const pki = await ensurePki(path.join(dir, 'pki'));
    const [etcdPort, peerPort, apiPort] = await threeFreePorts();

    const etcd = startProcess(
      'etcd',
      binaries.etcd,
      etcdArgs(path.join(dir, 'etcd'), etcdPort, peerPort),
      path.join(logs, 'etcd.log'),
    );
    const started: ManagedProcess[] = [etcd];
    try {
      await waitFor('etcd to report healthy', () => etcdHealthy(etcdPort), {
        timeoutMs: 30_000,
        process: etcd,
      });
      const apiserver = startProcess(
        'kube-apiserver',
        binaries.kubeApiserver,
        apiserverArgs(pki, dir, etcdPort, apiPort),
        path.join(logs, 'kube-apiserver.log'),
      );
      started.unshift(apiserver);
      await waitFor('kube-apiserver /readyz', () => apiserverReady(pki, apiPort), {
        timeoutMs: 90_000,
        process: apiserver,
      });

      const server = `https://127.0.0.1:${apiPort}`;
      const kubeconfigPath = path.join(dir, 'kubeconfig');
      await writeKubeconfig(pki, server, kubeconfigPath, opts.contextName ?? 'tally-local');
      const plane = new ControlPlane(dir, server, kubeconfigPath, binaries, started);
      // envtest waits for the default namespace too: the apiserver creates it shortly after /readyz.
      const core = plane.kubeConfig().makeApiClient(CoreV1Api);
      await waitFor('namespace default', async () => Boolean(await core.readNamespace({ name: 'default' })), {
        timeoutMs: 30_000,
        process: apiserver,
      });
      return plane;
    } catch (err) {
      await Promise.all(started.map((p) => p.stop(2_000)));
      throw err;
    }
  }

  kubeConfig(): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromFile(this.kubeconfigPath);
    return kc;
  }

  /** The API server first, so it stops writing before etcd goes away. */
  async stop(): Promise<void> {
    for (const p of this.processes) await p.stop();
  }
}

function etcdArgs(dataDir: string, port: number, peerPort: number): string[] {
  const client = `http://127.0.0.1:${port}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  return [
    '--name=tally',
    `--data-dir=${dataDir}`,
    `--listen-client-urls=${client}`,
    `--advertise-client-urls=${client}`,
    `--listen-peer-urls=${peer}`,
    `--initial-advertise-peer-urls=${peer}`,
    `--initial-cluster=tally=${peer}`,
    // A test and dev store: losing the last writes on a power cut is fine, fsync on every write is slow.
    '--unsafe-no-fsync',
    '--listen-metrics-urls=',
    '--log-level=warn',
  ];
}

function apiserverArgs(pki: Pki, dir: string, etcdPort: number, port: number): string[] {
  // Defaults follow controller-runtime's envtest (pkg/internal/testing/controlplane/apiserver.go).
  return [
    `--etcd-servers=http://127.0.0.1:${etcdPort}`,
    '--bind-address=127.0.0.1',
    '--advertise-address=127.0.0.1',
    `--secure-port=${port}`,
    `--cert-dir=${path.join(dir, 'pki')}`,
    `--tls-cert-file=${pki.apiserverCert}`,
    `--tls-private-key-file=${pki.apiserverKey}`,
    `--client-ca-file=${pki.caCert}`,
    '--service-cluster-ip-range=10.0.0.0/24',
    `--service-account-issuer=https://127.0.0.1:${port}`,
    `--service-account-key-file=${pki.serviceAccountPub}`,
    `--service-account-signing-key-file=${pki.serviceAccountKey}`,
    '--authorization-mode=RBAC',
    // No service-account controller runs, so its admission plugin would reject every Pod.
    '--disable-admission-plugins=ServiceAccount',
    '--allow-privileged=true',
    '--endpoint-reconciler-type=none',
    '--profiling=false',
  ];
}

async function etcdHealthy(port: number): Promise<boolean> {
  const res = await fetch(`http://127.0.0.1:${port}/health`);
  return res.ok && ((await res.json()) as { health?: string }).health === 'true';
}

async function apiserverReady(pki: Pki, port: number): Promise<boolean> {
  const [ca, cert, key] = await Promise.all(
    [pki.caCert, pki.adminCert, pki.adminKey].map((f) => readFile(f)),
  );
  return new Promise((resolve, reject) => {
    const req = https.get(
      { host: '127.0.0.1', port, path: '/readyz', ca, cert, key, timeout: 5_000 },
      (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      },
    );
    req.on('timeout', () => req.destroy(new Error('readyz timed out')));
    req.on('error', reject);
  });
}

async function threeFreePorts(): Promise<[number, number, number]> {
  const ports = new Set<number>();
  while (ports.size < 3) ports.add(await freePort());
  const [a, b, c] = [...ports] as [number, number, number];
  return [a, b, c];
}
