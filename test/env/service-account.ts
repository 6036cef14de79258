import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import { inject } from 'vitest';
import { kubeConfig } from './context.js';

const run = promisify(execFile);

/**
 * Kubernetes access as a ServiceAccount: a client certificate for system:serviceaccount:<ns>:<name>,
 * signed by the test CA. RBAC bound to that ServiceAccount is all it may do (no token controller runs,
 * so a certificate stands in for the token).
 */
export async function serviceAccountKubeConfig(namespace: string, name: string): Promise<KubeConfig> {
  const admin = kubeConfig();
  const pki = path.join(path.dirname(inject('kubeconfigPath')), 'pki');
  if (!existsSync(path.join(pki, 'ca.key'))) {
    throw new Error(`no test CA key in ${pki}: this test needs the control plane the test setup starts`);
  }
  const dir = await mkdtemp(path.join(tmpdir(), 'tally-sa-cert-'));
  try {
    const openssl = (...args: string[]) => run('openssl', args, { cwd: dir });
    await openssl(
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-subj',
      `/CN=system:serviceaccount:${namespace}:${name}`,
      '-keyout',
      'sa.key',
      '-out',
      'sa.csr',
    );
    await openssl(
      'x509',
      '-req',
      '-in',
      'sa.csr',
      '-CA',
      path.join(pki, 'ca.crt'),
      '-CAkey',
      path.join(pki, 'ca.key'),
      '-CAcreateserial',
      '-CAserial',
      path.join(dir, 'ca.srl'),
      '-days',
      '1',
      '-out',
      'sa.crt',
    );
    const [cert, key] = await Promise.all([
      readFile(path.join(dir, 'sa.crt')),
      readFile(path.join(dir, 'sa.key')),
    ]);
    const cluster = admin.getCurrentCluster()!;
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'test', server: cluster.server, caData: cluster.caData, skipTLSVerify: false }],
      users: [{ name, certData: cert.toString('base64'), keyData: key.toString('base64') }],
      contexts: [{ name: 'test', cluster: 'test', user: name, namespace }],
      currentContext: 'test',
    });
    return kc;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
