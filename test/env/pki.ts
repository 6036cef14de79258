import { execFile } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface Pki {
  dir: string;
  caCert: string;
  apiserverCert: string;
  apiserverKey: string;
  adminCert: string;
  adminKey: string;
  serviceAccountKey: string;
  serviceAccountPub: string;
}

/**
 * A throwaway certificate authority, a serving certificate for 127.0.0.1 and an admin client
 * certificate in system:masters: the identity envtest uses. Kept when it already exists, so a
 * restarted dev stack keeps working with the kubeconfig users already have.
 */
export async function ensurePki(dir: string): Promise<Pki> {
  const pki: Pki = {
    dir,
    caCert: path.join(dir, 'ca.crt'),
    apiserverCert: path.join(dir, 'apiserver.crt'),
    apiserverKey: path.join(dir, 'apiserver.key'),
    adminCert: path.join(dir, 'admin.crt'),
    adminKey: path.join(dir, 'admin.key'),
    serviceAccountKey: path.join(dir, 'sa.key'),
    serviceAccountPub: path.join(dir, 'sa.pub'),
  };
  if (await exists(pki.serviceAccountPub)) return pki;

  await mkdir(dir, { recursive: true });
  const openssl = (...args: string[]) => run('openssl', args, { cwd: dir });
  const ext = path.join(dir, 'ext.cnf');
  await openssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '3650',
    '-subj',
    '/CN=tally-local-ca',
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
  );
  await signed('apiserver', '/CN=kube-apiserver', [
    'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc',
    'extendedKeyUsage=serverAuth',
    'keyUsage=digitalSignature,keyEncipherment',
  ]);
  await signed('admin', '/O=system:masters/CN=admin', [
    'extendedKeyUsage=clientAuth',
    'keyUsage=digitalSignature,keyEncipherment',
  ]);
  await openssl('genrsa', '-out', 'sa.key', '2048');
  await openssl('rsa', '-in', 'sa.key', '-pubout', '-out', 'sa.pub');
  await Promise.all(
    ['ext.cnf', 'ca.srl', 'apiserver.csr', 'admin.csr'].map((f) => rm(path.join(dir, f), { force: true })),
  );
  return pki;

  async function signed(name: string, subject: string, extensions: string[]) {
    await openssl(
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-subj',
      subject,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
    );
    await writeFile(ext, extensions.join('\n') + '\n');
    await openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '3650',
      '-extfile',
      'ext.cnf',
      '-out',
      `${name}.crt`,
    );
  }
}

/** An admin kubeconfig with the certificates inlined, so it works from any directory. */
export async function writeKubeconfig(
  pki: Pki,
  server: string,
  file: string,
  contextName: string,
): Promise<void> {
  const b64 = async (f: string) => (await readFile(f)).toString('base64');
  const kubeconfig = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      { name: contextName, cluster: { server, 'certificate-authority-data': await b64(pki.caCert) } },
    ],
    users: [
      {
        name: `${contextName}-admin`,
        user: {
          'client-certificate-data': await b64(pki.adminCert),
          'client-key-data': await b64(pki.adminKey),
        },
      },
    ],
    contexts: [
      {
        name: contextName,
        context: { cluster: contextName, user: `${contextName}-admin`, namespace: 'default' },
      },
    ],
    'current-context': contextName,
  };
  await writeFile(file, JSON.stringify(kubeconfig, null, 2) + '\n', { mode: 0o600 });
}

async function exists(file: string): Promise<boolean> {
  return readFile(file).then(
    () => true,
    () => false,
  );
}
