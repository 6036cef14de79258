import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { projectRoot } from '../core/project-root.js';
import { resolveBinaries } from '../test/env/binaries.js';
import { ControlPlane } from '../test/env/control-plane.js';
import { installCustomResourceDefinitions } from '../test/env/install-crds.js';
import { progressReporter } from '../test/env/progress.js';

const run = promisify(execFile);

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
      console.log('\nstopping the local control plane…');
      await plane.stop();
      console.log('stopped; data kept in', dir);
    })();
    return stopping;
  };
  try {
    await installCustomResourceDefinitions(plane.kubeConfig());
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
  console.log(`
Tally is running locally (control plane up in ${((Date.now() - started) / 1000).toFixed(1)} s).

  export KUBECONFIG=${plane.kubeconfigPath}
  API server: ${plane.server}    kubectl ${kubectlVersionHint(kubectl)}: ${kubectl}

Try:
  kubectl get conversions -A
  kubectl get stripeintegrations -n growth -o wide
  kubectl explain metapixel.spec
  kubectl explain stripeintegration.spec.webhook

Logs: ${path.join(plane.dir, 'logs')}.  Press Ctrl-C to stop; data is kept for the next start.`);

  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await stop();
}

function kubectlVersionHint(kubectl: string): string {
  return kubectl.includes('k8s-') ? `(${path.basename(path.dirname(kubectl)).split('_')[0]})` : '';
}
