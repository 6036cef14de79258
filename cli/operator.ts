import path from 'node:path';
import { startDatabase, type Database } from '../core/db/embedded-postgres.js';
import { runOperator, type OperatorOptions } from '../operator/main.js';
import type { WorkloadOptions } from '../operator/pipeline/workloads.js';

export interface OperatorCommandOptions {
  kubeconfig?: string;
  namespace: string;
  watchNamespace?: string;
  publicBaseUrl?: string;
  pipeline: 'kubernetes' | 'local';
  image?: string;
  ingestReplicas?: number;
  forwarderReplicas?: number;
  ingestResources?: WorkloadOptions['ingestResources'];
  forwarderResources?: WorkloadOptions['forwarderResources'];
  imagePullPolicy?: WorkloadOptions['imagePullPolicy'];
  imagePullSecret?: string[];
  podSecurityContext?: WorkloadOptions['podSecurityContext'];
  containerSecurityContext?: WorkloadOptions['containerSecurityContext'];
  databaseUrlSecret?: string;
  localDir: string;
  localDatabaseUrl?: string;
  localForwarder: boolean;
  ingestAdminUrl?: string;
  forwarderAdminUrl?: string;
  stripeApiBase?: string;
  identity?: string;
  leaderElection: boolean;
  adminHost: string;
  adminPort: number;
}

export interface StartedOperator {
  running: Awaited<ReturnType<typeof runOperator>>;
  close(): Promise<void>;
}

/**
 * Starts the operator. In local mode the ingest and forwarder children must share one database: unless
 * one is given, an embedded PostgreSQL is started here in <local-dir>/postgres and handed to both.
 */
export async function startOperator(
  opts: OperatorCommandOptions,
  extra: Partial<OperatorOptions> = {},
): Promise<StartedOperator> {
  let db: Database | undefined;
  let localDatabaseUrl = opts.localDatabaseUrl ?? process.env.DATABASE_URL;
  if (opts.pipeline === 'local' && !localDatabaseUrl) {
    db = await startDatabase(path.resolve(opts.localDir, 'postgres'));
    localDatabaseUrl = db.url;
  }
  const [secretName, secretKey] = (opts.databaseUrlSecret ?? 'tally-database/url').split('/');
  try {
    const running = await runOperator({
      kubeconfigPath: opts.kubeconfig,
      namespace: opts.namespace,
      watchNamespace: opts.watchNamespace,
      publicBaseURL: opts.publicBaseUrl,
      pipeline: opts.pipeline,
      image: opts.image,
      ingestReplicas: opts.ingestReplicas,
      forwarderReplicas: opts.forwarderReplicas,
      ingestResources: opts.ingestResources,
      forwarderResources: opts.forwarderResources,
      imagePullPolicy: opts.imagePullPolicy,
      imagePullSecrets: opts.imagePullSecret,
      podSecurityContext: opts.podSecurityContext,
      containerSecurityContext: opts.containerSecurityContext,
      databaseUrlSecret: { name: secretName!, key: secretKey ?? 'url' },
      localDir: opts.localDir,
      localDatabaseUrl,
      localForwarder: opts.localForwarder,
      ingestAdminURL: opts.ingestAdminUrl,
      forwarderAdminURL: opts.forwarderAdminUrl,
      stripeApiBase: opts.stripeApiBase,
      identity: opts.identity,
      leaderElection: opts.leaderElection,
      adminHost: opts.adminHost,
      adminPort: opts.adminPort,
      ...extra,
    });
    return {
      running,
      async close() {
        await running.close();
        await db?.stop();
      },
    };
  } catch (err) {
    await db?.stop();
    throw err;
  }
}
