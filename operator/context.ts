import type { V1Deployment, V1Secret, V1Service } from '@kubernetes/client-node';
import type { Informer, Logger } from './runtime/index.js';
import type { Kube } from './kube.js';
import type { PipelineState } from './pipeline/state.js';
import type { WorkloadOptions } from './pipeline/workloads.js';
import type { CalIntegration, MetaPixel, StripeIntegration } from './resources.js';
import type { ForwarderReports } from './pixel.js';

/** The namespace, image, replicas… of the ingest and forwarder Deployments are WorkloadOptions. */
export interface ResolvedOptions extends WorkloadOptions {
  publicBaseURL: string;
  pipeline: 'kubernetes' | 'local';
  stripeApiBase?: string;
  statsRefreshMs: number;
  endpointVerifyMs: number;
  identity: string;
}

/** What every reconciler shares: the caches, the writer and the pipeline's view of ingest. */
export interface OperatorContext {
  opts: ResolvedOptions;
  kube: Kube;
  log: Logger;
  stripe: Informer<StripeIntegration>;
  cal: Informer<CalIntegration>;
  pixels: Informer<MetaPixel>;
  secrets: Informer<V1Secret>;
  ownSecrets: Informer<V1Secret>;
  deployments: Informer<V1Deployment>;
  services: Informer<V1Service>;
  pipeline: PipelineState;
  forwarder: ForwarderReports;
}

export const nsName = (key: string) => {
  const i = key.indexOf('/');
  return { namespace: key.slice(0, i), name: key.slice(i + 1) };
};

/** "Secret growth/stripe-acme key restricted-key": how messages name a secret reference. */
export const refText = (namespace: string, ref: { name: string; key: string }) =>
  `Secret ${namespace}/${ref.name} key ${ref.key}`;
