import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { freePort } from '../core/net.js';
import { projectRoot } from '../core/project-root.js';
import { resolveBinaries } from '../test/env/binaries.js';
import { ControlPlane } from '../test/env/control-plane.js';
import { installCustomResourceDefinitions } from '../test/env/install-crds.js';
import { progressReporter } from '../test/env/progress.js';
import { startOperator, type StartedOperator } from './operator.js';

const run = promisify(execFile);
const OPERATOR_NAMESPACE = 'tally-system';

export interface DevOptions {
  dir: string;
  examples: boolean;
}

/** `tally dev`: the local stack behind `npm start`. */
export async function runDev(opts: DevOptions): Promise<void> {
  const dir = path.resolve(opts.dir);
  const progress = progressReporter('preparing kube-apiserver and etcd');
  const binaries = await resolveBinaries((line) => progress.update(line)).finally(() => progress.done());
  console.log(`control plane binaries: ${binaries.source}`);

  const started = Date.now();
  const plane = await ControlPlane.start({
    dir: path.join(dir, 'cluster'),
    binaries,
    contextName: 'tally-local',
  });
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      console.log('\nstopping the operator, the local pipeline and the control plane…');
      await operator?.close();
      await plane.stop();
      console.log('stopped; data kept in', dir);
    })();
    return stopping;
  };
  let operator: StartedOperator | undefined;
  const adminPort = await freePort();
  const forwarderAdminPort = await freePort();
  try {
    await installCustomResourceDefinitions(plane.kubeConfig());
    await ensureNamespace(plane.kubeConfig(), OPERATOR_NAMESPACE);
    // The operator with the pipeline as local processes: no kubelet runs here.
    operator = await startOperator(
      {
        kubeconfig: plane.kubeconfigPath,
        namespace: OPERATOR_NAMESPACE,
        pipeline: 'local',
        localDir: path.join(dir, 'operator'),
        localForwarder: true,
        leaderElection: true,
        adminHost: '127.0.0.1',
        adminPort,
      },
      // Status follows ingest and forwarder within seconds: a laptop is not a busy cluster.
      { localForwarderAdminPort: forwarderAdminPort, identity: 'tally-dev', statsRefreshMs: 5_000 },
    );
    if (opts.examples) {
      const examples = path.join(projectRoot(), 'examples');
      const { stdout } = await run(binaries.kubectl, [
        '--kubeconfig',
        plane.kubeconfigPath,
        'apply',
        '--server-side',
        '--field-manager=tally-dev',
        '-f',
        examples,
      ]);
      process.stdout.write(stdout);
    }
  } catch (err) {
    await stop();
    throw err;
  }

  const kubectl = binaries.kubectl;
  const ingest = operator.running.localIngest!;
  console.log(`
Tally is running locally (up in ${((Date.now() - started) / 1000).toFixed(1)} s).

  export KUBECONFIG=${plane.kubeconfigPath}
  API server: ${plane.server}    kubectl ${kubectlVersionHint(kubectl)}: ${kubectl}

Webhook URLs (ingest at ${ingest.webhookURL}):
  Stripe  growth/acme        ${ingest.webhookURL}/webhooks/stripe/growth/acme
  Cal.com growth/demo-calls  ${ingest.webhookURL}/webhooks/cal/growth/demo-calls

Metrics:
  ingest     ${ingest.adminURL}/metrics
  forwarder  http://127.0.0.1:${forwarderAdminPort}/metrics
  operator   ${operator.running.adminURL}/metrics

Try:
  kubectl get conversions -A
  npx tally trigger stripe checkout.session.completed -i growth/acme   # the secret and URL come from the cluster
  kubectl get stripeintegrations -n growth        # "Receiving payment events" and the revenue
  kubectl get metapixels -n growth -o wide         # forwarding results (no Meta reachable from here)
  kubectl explain stripeintegration.spec.webhook

Logs: ${path.join(plane.dir, 'logs')} and ${path.join(dir, 'operator', 'logs')}.  Ctrl-C stops; data is kept.`);

  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await stop();
}

async function ensureNamespace(kc: KubeConfig, name: string): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name } } }).catch((err: { code?: number }) => {
    if (err.code !== 409) throw err;
  });
}

function kubectlVersionHint(kubectl: string): string {
  return kubectl.includes('k8s-') ? `(${path.basename(path.dirname(kubectl)).split('_')[0]})` : '';
}
