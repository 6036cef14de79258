import { hostname } from 'node:os';
import path from 'node:path';
import {
  AppsV1Api,
  CoreV1Api,
  KubeConfig,
  type KubernetesObject,
  type V1Deployment,
  type V1Secret,
  type V1Service,
} from '@kubernetes/client-node';
import { createLogger } from '../core/logging.js';
import { freePort } from '../core/net.js';
import { projectRoot } from '../core/project-root.js';
import { calReconciler } from './cal.js';
import { reuseConnections } from './connections.js';
import type { OperatorContext, ResolvedOptions } from './context.js';
import { Kube } from './kube.js';
import { createOperatorMetrics, startAdminServer } from './metrics.js';
import { LocalPipeline } from './pipeline/local.js';
import { PIPELINE_KEY, pipelineReconciler } from './pipeline/reconciler.js';
import type { EntryId } from './pipeline/render.js';
import { PipelineState } from './pipeline/state.js';
import {
  forwarderAdminServiceURL,
  ingestAdminServiceURL,
  type WorkloadOptions,
} from './pipeline/workloads.js';
import { noForwarderReports, pixelReconciler, type ForwarderReports } from './pixel.js';
import {
  calWebhookSecretName,
  GROUP,
  MANAGED_BY,
  MANAGED_BY_LABEL,
  stripeSigningSecretName,
  VERSION,
  type CalIntegration,
  type MetaPixel,
  type StripeIntegration,
} from './resources.js';
import {
  Controller,
  customObjectSource,
  Informer,
  Manager,
  objectKey,
  secretSource,
  typedSource,
  type Logger,
  type ManagerExit,
} from './runtime/index.js';
import { stripeReconciler } from './stripe/reconciler.js';
import { HttpForwarderReports } from './forwarder-reports.js';

type WorkloadExtras = Partial<
  Pick<
    WorkloadOptions,
    | 'imagePullPolicy'
    | 'imagePullSecrets'
    | 'ingestResources'
    | 'forwarderResources'
    | 'podSecurityContext'
    | 'containerSecurityContext'
  >
>;

/** Also the pull policy, pull secrets, resources and security contexts of the Deployments (WorkloadOptions). */
export interface OperatorOptions extends WorkloadExtras {
  /** Cluster access; default: kubeconfigPath, else KUBECONFIG / in-cluster service account. */
  kubeConfig?: KubeConfig;
  kubeconfigPath?: string;
  /** The operator's own namespace: the Lease, the rendered config Secret, the ingest/forwarder workloads. */
  namespace: string;
  /** Watch only this namespace's resources (default: every namespace). */
  watchNamespace?: string;
  /** Base of the webhook URLs in status, e.g. https://hooks.example.com. Local mode defaults to the local ingest. */
  publicBaseURL?: string;
  /** `kubernetes`: Deployments only. `local`: the Deployments, and the same pipeline as child processes. */
  pipeline?: 'kubernetes' | 'local';
  /** Image of the ingest and forwarder Deployments. */
  image?: string;
  ingestReplicas?: number;
  forwarderReplicas?: number;
  /** Secret (in `namespace`) whose key holds the DATABASE_URL of the Deployments. Default tally-database/url. */
  databaseUrlSecret?: { name: string; key: string };
  /** Local mode: where the config file, logs and an embedded PostgreSQL live. Default .tally/operator. */
  localDir?: string;
  /** Local mode: DATABASE_URL of the child processes (default: embedded PostgreSQL in localDir). */
  localDatabaseUrl?: string;
  /** Local mode: ingest's webhook and admin ports (0 or unset: free ports). */
  localIngestPort?: number;
  localIngestAdminPort?: number;
  /** Local mode: the forwarder's admin port (0 or unset: a free port). */
  localForwarderAdminPort?: number;
  /** The forwarder's admin API, read for MetaPixel status; default: the local forwarder when it runs, or
   *  http://tally-forwarder.<namespace>.svc:9091 in kubernetes mode. */
  forwarderAdminURL?: string;
  /** Local mode: also run `tally forwarder` (once the forwarder command exists). */
  localForwarder?: boolean;
  /** The tally CLI the local children run. Default: dist/cli/tally.js of this project. */
  cliPath?: string;
  /** Where ingest's admin API is; default: the local ingest, or http://tally-ingest.<namespace>.svc:9090. */
  ingestAdminURL?: string;
  /** Stripe API base, e.g. http://127.0.0.1:12111 for a local fake. Default: Stripe's own. */
  stripeApiBase?: string;
  /** Leader election identity (the pod name). Default: hostname + pid. */
  identity?: string;
  /** Default true. */
  leaderElection?: boolean;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  /** Admin listener (/metrics, /healthz, /readyz). Default 127.0.0.1:8081; port 0 picks one. */
  adminHost?: string;
  adminPort?: number;
  /** How often a resource's event counts and revenue are refreshed from ingest. Default 30 s. */
  statsRefreshMs?: number;
  /** How long a verified Stripe endpoint is trusted before it is checked again. Default 10 min. */
  endpointVerifyMs?: number;
  /** Reconciles in parallel per controller. Default 4. */
  workers?: number;
  /** Source of forwarder results for MetaPixel status (the forwarder's admin API, when it exists). */
  forwarderReports?: ForwarderReports;
  log?: Logger;
}

export interface RunningOperator {
  adminURL: string;
  /** The local ingest (local mode), for `tally dev` to print. */
  localIngest?: { webhookURL: string; adminURL: string; configPath: string };
  isLeader(): boolean;
  /** Resolves when the operator stops; `leadership-lost` means: exit the process. */
  done: Promise<ManagerExit>;
  close(): Promise<void>;
}

/** `tally operator`: reconcile StripeIntegration, CalIntegration and MetaPixel into secrets, a pipeline and status. */
export async function runOperator(options: OperatorOptions): Promise<RunningOperator> {
  const log: Logger = options.log ?? createLogger('operator');
  const kc = reuseConnections(options.kubeConfig ?? loadKubeConfig(options.kubeconfigPath));
  const mode = options.pipeline ?? 'kubernetes';
  const identity = options.identity ?? `${hostname()}-${process.pid}`;

  let local: LocalPipeline | undefined;
  let localIngest: RunningOperator['localIngest'];
  let localListeners: Record<string, unknown> | undefined;
  let localForwarderAdminURL: string | undefined;
  if (mode === 'local') {
    const dir = path.resolve(options.localDir ?? '.tally/operator');
    const port = options.localIngestPort || (await freePort());
    const adminPort = options.localIngestAdminPort || (await freePort());
    local = new LocalPipeline({
      dir,
      cliPath: options.cliPath ?? path.join(projectRoot(), 'dist', 'cli', 'tally.js'),
      databaseUrl: options.localDatabaseUrl,
      forwarder: options.localForwarder ?? false,
      log,
    });
    const forwarderAdminPort = options.localForwarderAdminPort || (await freePort());
    localListeners = {
      ingest: { host: '127.0.0.1', port, adminPort },
      forwarder: { host: '127.0.0.1', adminPort: forwarderAdminPort },
    };
    localForwarderAdminURL = `http://127.0.0.1:${forwarderAdminPort}`;
    localIngest = {
      webhookURL: `http://127.0.0.1:${port}`,
      adminURL: `http://127.0.0.1:${adminPort}`,
      configPath: local.configPath,
    };
  }
  const opts: ResolvedOptions = {
    namespace: options.namespace,
    publicBaseURL: options.publicBaseURL ?? localIngest?.webhookURL ?? 'http://tally-ingest.invalid',
    pipeline: mode,
    image: options.image ?? 'ghcr.io/tally-dev/tally:0.1.0',
    ingestReplicas: options.ingestReplicas ?? 2,
    forwarderReplicas: options.forwarderReplicas ?? 1,
    imagePullPolicy: options.imagePullPolicy,
    imagePullSecrets: options.imagePullSecrets,
    ingestResources: options.ingestResources,
    forwarderResources: options.forwarderResources,
    podSecurityContext: options.podSecurityContext,
    containerSecurityContext: options.containerSecurityContext,
    databaseUrlSecret: options.databaseUrlSecret ?? { name: 'tally-database', key: 'url' },
    stripeApiBase: options.stripeApiBase,
    statsRefreshMs: options.statsRefreshMs ?? 30_000,
    endpointVerifyMs: options.endpointVerifyMs ?? 600_000,
    identity,
  };
  const ingestAdminURL =
    options.ingestAdminURL ?? localIngest?.adminURL ?? ingestAdminServiceURL(opts.namespace);

  const metrics = createOperatorMetrics(() => manager.isLeader);
  const kube = new Kube(kc, identity, (verb, resource) => metrics.writes.inc({ verb, resource }), log);
  const informerOpts = (name: string) => ({ name, log });
  const custom = <T extends KubernetesObject>(plural: string) =>
    new Informer<T>(
      kc,
      customObjectSource<T>(kc, {
        group: GROUP,
        version: VERSION,
        plural,
        namespace: options.watchNamespace,
      }),
      informerOpts(plural),
    );
  const managedBy = `${MANAGED_BY_LABEL}=${MANAGED_BY}`;
  const apps = kc.makeApiClient(AppsV1Api);
  const core = kc.makeApiClient(CoreV1Api);
  const ns = opts.namespace;

  const stripe = custom<StripeIntegration>('stripeintegrations');
  const cal = custom<CalIntegration>('calintegrations');
  const pixels = custom<MetaPixel>('metapixels');
  const secrets = new Informer<V1Secret>(
    kc,
    secretSource(kc, { namespace: options.watchNamespace }),
    informerOpts('secrets'),
  );
  const ownSecrets = new Informer<V1Secret>(
    kc,
    secretSource(kc, { namespace: ns, labelSelector: managedBy }),
    informerOpts('operator-secrets'),
  );
  const deployments = new Informer<V1Deployment>(
    kc,
    typedSource<V1Deployment>({
      path: `/apis/apps/v1/namespaces/${ns}/deployments`,
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      labelSelector: managedBy,
      list: () => apps.listNamespacedDeployment({ namespace: ns, labelSelector: managedBy }),
    }),
    informerOpts('deployments'),
  );
  const services = new Informer<V1Service>(
    kc,
    typedSource<V1Service>({
      path: `/api/v1/namespaces/${ns}/services`,
      apiVersion: 'v1',
      kind: 'Service',
      labelSelector: managedBy,
      list: () => core.listNamespacedService({ namespace: ns, labelSelector: managedBy }),
    }),
    informerOpts('services'),
  );

  const queue = { baseDelayMs: 200, maxDelayMs: 300_000 };
  const controller = (
    name: string,
    reconcile: (key: string) => Promise<{ requeueAfter?: number } | void>,
    workers = options.workers ?? 4,
  ) => new Controller({ name, reconcile, workers, queue, metrics: metrics.controller, log });

  const pipelineState = new PipelineState(
    () => ingestAdminURL,
    (ids) => notifyEntries(ids),
    log,
  );
  // MetaPixel status reads the forwarder's results: the local forwarder's admin API, or one given.
  // The pixel controller is created below; reports arriving before it exists wait for the first resync.
  const pixelQueue: { ctl?: { enqueue(key: string): void } } = {};
  const forwarderURL =
    options.forwarderAdminURL ??
    (mode === 'kubernetes'
      ? forwarderAdminServiceURL(ns)
      : options.localForwarder
        ? localForwarderAdminURL
        : undefined);
  const httpReports = forwarderURL
    ? new HttpForwarderReports(forwarderURL, (keys) => keys.forEach((k) => pixelQueue.ctl?.enqueue(k)))
    : undefined;
  const forwarderReports = options.forwarderReports ?? httpReports ?? noForwarderReports;

  const ctx: OperatorContext = {
    opts,
    kube,
    log,
    stripe,
    cal,
    pixels,
    secrets,
    ownSecrets,
    deployments,
    services,
    pipeline: pipelineState,
    forwarder: forwarderReports,
  };

  httpReports?.start();

  const stripeCtl = controller('stripeintegration', stripeReconciler(ctx));
  const calCtl = controller('calintegration', calReconciler(ctx));
  const pixelCtl = controller('metapixel', pixelReconciler(ctx));
  pixelQueue.ctl = pixelCtl;
  const pipelineCtl = controller('pipeline', pipelineReconciler(ctx, local, localListeners), 1);
  function notifyEntries(ids: EntryId[]): void {
    for (const id of ids) {
      const key = id.slice(id.indexOf(':') + 1);
      if (id.startsWith('stripe:')) stripeCtl.enqueue(key);
      else if (id.startsWith('cal:')) calCtl.enqueue(key);
      else pixelCtl.enqueue(key);
    }
  }

  /** The resources that use a Secret: by reference or as the owner of a Secret Tally provisioned. */
  const stripeUsing = (s: V1Secret) => {
    const { name, namespace } = s.metadata ?? {};
    return stripe
      .list(namespace)
      .filter(
        (r) =>
          r.spec.apiKeySecretRef?.name === name ||
          r.spec.webhook?.signingSecretRef?.name === name ||
          stripeSigningSecretName(r.metadata.name) === name,
      )
      .map(objectKey);
  };
  const calUsing = (s: V1Secret) =>
    cal
      .list(s.metadata?.namespace)
      .filter((r) => calWebhookSecretName(r.metadata.name) === s.metadata?.name)
      .map(objectKey);
  const pixelsUsing = (s: V1Secret) =>
    pixels
      .list(s.metadata?.namespace)
      .filter((r) => r.spec.accessTokenSecretRef.name === s.metadata?.name)
      .map(objectKey);

  stripeCtl.watch(stripe).watch(secrets, stripeUsing);
  calCtl.watch(cal).watch(secrets, calUsing);
  pixelCtl
    .watch(pixels)
    .watch(secrets, pixelsUsing)
    .watch(stripe, (s) => pixels.list(s.metadata.namespace).map(objectKey));
  const toPipeline = () => PIPELINE_KEY;
  pipelineCtl
    .watch(stripe, toPipeline)
    .watch(cal, toPipeline)
    .watch(pixels, toPipeline)
    .watch(secrets, (s) =>
      stripeUsing(s).length + calUsing(s).length + pixelsUsing(s).length > 0 ? PIPELINE_KEY : undefined,
    )
    .watch(ownSecrets, toPipeline)
    .watch(deployments, toPipeline)
    .watch(services, toPipeline);

  const manager = new Manager({
    log,
    ...(options.leaderElection === false
      ? {}
      : {
          leaderElection: {
            kubeConfig: kc,
            namespace: ns,
            name: 'tally-operator',
            identity,
            leaseDurationMs: options.leaseDurationMs,
            renewDeadlineMs: options.renewDeadlineMs,
            retryPeriodMs: options.retryPeriodMs,
          },
        }),
  });
  for (const c of [stripeCtl, calCtl, pixelCtl, pipelineCtl]) manager.addController(c);

  const admin = await startAdminServer(
    metrics,
    () => [stripe, cal, pixels, secrets].every((i) => i.hasSynced()),
    options.adminHost ?? '127.0.0.1',
    options.adminPort ?? 8081,
  );
  let pipelineStarted = false;
  const startPipeline = setInterval(() => {
    // Only the leader renders and runs the pipeline; the pipeline key is enqueued once leadership is won.
    if (manager.isLeader && !pipelineStarted) {
      pipelineStarted = true;
      pipelineState.start();
      pipelineCtl.enqueue(PIPELINE_KEY);
    }
  }, 100);
  try {
    await manager.start();
  } catch (err) {
    clearInterval(startPipeline);
    await admin.close();
    throw err;
  }
  log.info({ identity, namespace: ns, pipeline: mode, admin: admin.url }, 'operator started');

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      clearInterval(startPipeline);
      httpReports?.stop();
      await manager.stop();
      pipelineState.stop();
      await local?.stop();
      await admin.close();
    })());
  void manager.done.then((exit) => {
    if (exit === 'leadership-lost') void close();
  });
  return {
    adminURL: admin.url,
    localIngest,
    isLeader: () => manager.isLeader,
    done: manager.done,
    close,
  };
}

function loadKubeConfig(file?: string): KubeConfig {
  const kc = new KubeConfig();
  if (file) kc.loadFromFile(file);
  else kc.loadFromDefault();
  return kc;
}
