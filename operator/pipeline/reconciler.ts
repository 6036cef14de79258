import type { KubernetesObject, V1Deployment, V1Service } from '@kubernetes/client-node';
import type { OperatorContext } from '../context.js';
import { CONFIG_HASH_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL } from '../resources.js';
import type { LocalPipeline } from './local.js';
import { createHash } from 'node:crypto';
import { configText, renderConfig, withListeners } from './render.js';

export const PIPELINE_KEY = 'pipeline';
export const CONFIG_SECRET = 'tally-config';
export const CONFIG_FILE = 'tally.yaml';
export const INGEST = 'tally-ingest';
export const FORWARDER = 'tally-forwarder';
const WEBHOOK_PORT = 8080;
const ADMIN_PORT = 9090;

const labels = (component?: string) => ({
  'app.kubernetes.io/name': 'tally',
  [MANAGED_BY_LABEL]: MANAGED_BY,
  ...(component ? { 'app.kubernetes.io/component': component } : {}),
});

/**
 * One key for the whole pipeline: render the configuration from every resource into a Secret in the
 * operator's namespace, keep the ingest Deployment + Service and the forwarder Deployment in line with
 * it (a config-hash annotation rolls the pods), and in local mode feed the same configuration to
 * child processes.
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
    await ctx.kube.applyChild('services', ingestService(namespace), ctx.services.get(INGEST, namespace));
    for (const component of ['ingest', 'forwarder'] as const) {
      const desired = deployment(ctx, component, hash);
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

function ingestService(namespace: string): V1Service & { metadata: { name: string; namespace: string } } {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: INGEST, namespace, labels: labels('ingest') },
    spec: {
      selector: { 'app.kubernetes.io/name': 'tally', 'app.kubernetes.io/component': 'ingest' },
      ports: [
        { name: 'webhooks', port: WEBHOOK_PORT, targetPort: 'webhooks', protocol: 'TCP' },
        { name: 'admin', port: ADMIN_PORT, targetPort: 'admin', protocol: 'TCP' },
      ],
    },
  };
}

function deployment(
  ctx: OperatorContext,
  component: 'ingest' | 'forwarder',
  configHash: string,
): V1Deployment & { metadata: { name: string; namespace: string } } {
  const { opts } = ctx;
  const name = component === 'ingest' ? INGEST : FORWARDER;
  const selector = { 'app.kubernetes.io/name': 'tally', 'app.kubernetes.io/component': component };
  const probe = (path: string) => ({ httpGet: { path, port: 'admin' }, periodSeconds: 10 });
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: opts.namespace, labels: labels(component) },
    spec: {
      replicas: component === 'ingest' ? opts.ingestReplicas : opts.forwarderReplicas,
      selector: { matchLabels: selector },
      template: {
        metadata: {
          labels: { ...labels(component), ...selector },
          annotations: { [CONFIG_HASH_ANNOTATION]: configHash },
        },
        spec: {
          automountServiceAccountToken: false,
          securityContext: { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } },
          containers: [
            {
              name: component,
              image: opts.image,
              args: [component, '--config', `/etc/tally/${CONFIG_FILE}`],
              ports: [
                ...(component === 'ingest'
                  ? [{ name: 'webhooks', containerPort: WEBHOOK_PORT, protocol: 'TCP' }]
                  : []),
                { name: 'admin', containerPort: ADMIN_PORT, protocol: 'TCP' },
              ],
              env: [
                {
                  name: 'DATABASE_URL',
                  valueFrom: {
                    secretKeyRef: { name: opts.databaseUrlSecret.name, key: opts.databaseUrlSecret.key },
                  },
                },
              ],
              readinessProbe: probe('/readyz'),
              livenessProbe: probe('/healthz'),
              ...(opts.resources ? { resources: opts.resources } : {}),
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                capabilities: { drop: ['ALL'] },
              },
              volumeMounts: [{ name: 'config', mountPath: '/etc/tally', readOnly: true }],
            },
          ],
          volumes: [{ name: 'config', secret: { secretName: CONFIG_SECRET } }],
        },
      },
    },
  };
}

/** The pipeline key for events of anything the configuration is built from. */
export const toPipeline = (_obj: KubernetesObject) => PIPELINE_KEY;
