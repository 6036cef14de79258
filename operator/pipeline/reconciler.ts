import type { KubernetesObject } from '@kubernetes/client-node';
import type { OperatorContext } from '../context.js';
import type { LocalPipeline } from './local.js';
import { createHash } from 'node:crypto';
import { configText, renderConfig, withListeners } from './render.js';
import { CONFIG_FILE, CONFIG_SECRET, deployment, labels, service } from './workloads.js';

export const PIPELINE_KEY = 'pipeline';

/**
 * One key for the whole pipeline: render the configuration from every resource into a Secret in the
 * operator's namespace, keep the ingest and forwarder Deployments and Services in line with it (a
 * config-hash annotation rolls the pods), and in local mode feed the same configuration to child
 * processes.
 */
export function pipelineReconciler(
  ctx: OperatorContext,
  local: LocalPipeline | undefined,
  localIngest?: Record<string, unknown>,
  minIntervalMs = 100,
) {
  let last = -Infinity;
  return async (): Promise<{ requeueAfter?: number } | void> => {
    // Under a burst of changes, render at most every minIntervalMs: each rendering covers all of them.
    const wait = last + minIntervalMs - performance.now();
    if (wait > 0) return { requeueAfter: wait };
    last = performance.now();
    const rendered = renderConfig({
      stripe: ctx.stripe.list(),
      cal: ctx.cal.list(),
      pixels: ctx.pixels.list(),
      secret: (ns, name) => ctx.secrets.get(name, ns),
    });
    const text = configText(rendered.config);
    const hash = createHash('sha256').update(text).digest('hex').slice(0, 32);
    const { namespace } = ctx.opts;

    await ctx.kube.applyChild(
      'secrets',
      {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: CONFIG_SECRET, namespace, labels: labels() },
        type: 'Opaque',
        data: { [CONFIG_FILE]: Buffer.from(text).toString('base64') },
      },
      ctx.ownSecrets.get(CONFIG_SECRET, namespace),
    );
    for (const component of ['ingest', 'forwarder'] as const) {
      const svc = service(namespace, component);
      await ctx.kube.applyChild('services', svc, ctx.services.get(svc.metadata.name, namespace));
      const desired = deployment(ctx.opts, component, hash);
      await ctx.kube.applyChild(
        'deployments',
        desired,
        ctx.deployments.get(desired.metadata.name, namespace),
      );
    }

    const texts = [text];
    if (local && localIngest) {
      const localText = withListeners(text, localIngest);
      await local.writeConfig(localText);
      await local.ensureRunning();
      texts.push(localText);
    }
    ctx.pipeline.publish(rendered, texts);
  };
}

/** The pipeline key for events of anything the configuration is built from. */
export const toPipeline = (_obj: KubernetesObject) => PIPELINE_KEY;
