#!/usr/bin/env node
import { Command, InvalidArgumentError, Option } from 'commander';
import type { ZodType } from 'zod';
import { defaultCrdDirs, renderCrdFiles, staleCrdFiles, writeCrdFiles } from './crds.js';
import type { OperatorCommandOptions } from './operator.js';
import {
  ContainerSecurityContext,
  parseJsonValue,
  PodSecurityContext,
  ResourceRequirements,
} from '../operator/pipeline/workloads.js';
import { CAL_SAMPLES, DEFAULT_INGEST_URL, parseIntegration, STRIPE_SAMPLES, trigger } from './trigger.js';

const program = new Command('tally')
  .description(
    'Kubernetes-native conversion tracking: Stripe and Cal.com events in, revenue-bearing conversions out.',
  )
  .version(process.env.npm_package_version ?? '0.1.0')
  .showHelpAfterError();

program
  .command('crds')
  .description('Print the CustomResourceDefinitions (StripeIntegration, MetaPixel, CalIntegration) as YAML.')
  .option(
    '--write [dir]',
    'write one file per CRD into dir (default: crds/ and charts/tally/crds/) instead of printing',
  )
  .option(
    '--check [dir]',
    'exit 1 when the files in dir (default: crds/ and charts/tally/crds/) differ from what this version generates',
  )
  .addHelpText(
    'after',
    '\nExamples:\n  tally crds | kubectl apply --server-side -f -\n  tally crds --check crds/',
  )
  .action(async (opts: { write?: string | true; check?: string | true }) => {
    const dirs = (option: string | true) => (typeof option === 'string' ? [option] : defaultCrdDirs());
    if (opts.check) {
      for (const dir of dirs(opts.check)) {
        const stale = await staleCrdFiles(dir);
        if (stale.length > 0) {
          console.error(
            `CRDs in ${dir} are out of date: ${stale.join(', ')}. Run \`npm run crds\` and commit.`,
          );
          process.exitCode = 1;
        } else {
          console.log(`CRDs in ${dir} match the schema source.`);
        }
      }
    } else if (opts.write) {
      for (const dir of dirs(opts.write)) {
        for (const file of await writeCrdFiles(dir)) console.log(`wrote ${file}`);
      }
    } else {
      process.stdout.write([...renderCrdFiles().values()].join('---\n'));
    }
  });

program
  .command('dev')
  .description(
    'Run Tally locally: a real kube-apiserver and etcd on loopback, the CRDs and examples/ applied. Stops on Ctrl-C.',
  )
  .addOption(
    new Option('--dir <dir>', 'where the local cluster keeps its data, certificates and logs').default(
      '.tally',
    ),
  )
  .option('--no-examples', 'do not apply the resources in examples/')
  .action(async (opts: { dir: string; examples: boolean }) => {
    const { runDev } = await import('./dev.js');
    await runDev(opts);
  });

configFileOptions(program.command('ingest'))
  .description('Receive and verify Stripe and Cal.com webhooks and store them as conversions in PostgreSQL.')
  .addHelpText(
    'after',
    '\nThe database is database.url from the config, else DATABASE_URL, else an embedded PostgreSQL in --data-dir.\n' +
      'Webhooks (ingest.port): POST /webhooks/stripe/<namespace>/<name>, POST /webhooks/cal/<namespace>/<name>.\n' +
      'Admin (ingest.adminPort): /healthz, /readyz, /metrics, /api/v1/conversions, /api/v1/stats.',
  )
  .action(async (opts: { config: string; dataDir: string }) => {
    const stopped = untilSignal(); // listen before starting: a SIGTERM during start-up still stops cleanly
    const { runIngest } = await import('../ingest/main.js');
    const ingest = await runIngest({ configPath: opts.config, dataDir: opts.dataDir });
    await stopped;
    await ingest.close();
  });

program
  .command('trigger')
  .description('Send a realistic, correctly signed sample event to ingest, like `stripe trigger`.')
  .argument('<provider>', 'stripe or cal')
  .argument(
    '<type>',
    'a Stripe event type (checkout.session.completed, …) or a Cal.com trigger (BOOKING_CREATED, …)',
  )
  .requiredOption('-i, --integration <namespace/name>', 'the StripeIntegration or CalIntegration to send to')
  .option(
    '-s, --secret <secret>',
    'the signing secret (Stripe whsec_…) or Cal.com webhook secret (default: read from the cluster)',
  )
  .option(
    '-u, --url <url>',
    `the ingest webhook base URL (default: the integration's status.webhookURL when the secret comes from the cluster, else ${DEFAULT_INGEST_URL})`,
  )
  .option(
    '--kubeconfig <file>',
    'cluster access for reading the secret (default: KUBECONFIG, else ~/.kube/config)',
  )
  .option('--set <json>', 'fields to override in the sample object, as JSON, e.g. \'{"amount_total": 4900}\'')
  .option('--account <acct>', 'send as an event of this Stripe Connect account')
  .addHelpText(
    'after',
    `\nStripe types: ${Object.keys(STRIPE_SAMPLES).join(', ')}` +
      `\nCal.com triggers: ${Object.keys(CAL_SAMPLES).join(', ')}` +
      "\n\nWithout --secret, the secret is read from the Secret the integration's status (or spec) references, " +
      'which needs get on the integration and on that Secret.' +
      '\n\nExamples:\n  tally trigger stripe checkout.session.completed -i growth/acme' +
      '\n  tally trigger stripe invoice.paid -i growth/acme -s whsec_… -u http://127.0.0.1:8080',
  )
  .action(
    async (
      provider: string,
      type: string,
      opts: {
        integration: string;
        secret?: string;
        url?: string;
        kubeconfig?: string;
        set?: string;
        account?: string;
      },
    ) => {
      if (provider !== 'stripe' && provider !== 'cal') {
        program.error(`provider must be stripe or cal, got "${provider}"`);
      }
      const source = provider as 'stripe' | 'cal';
      try {
        const { namespace, name } = parseIntegration(opts.integration);
        let secret = opts.secret;
        let webhookURL: string | undefined;
        if (secret === undefined) {
          const { integrationFromCluster } = await import('./trigger-cluster.js');
          const found = await integrationFromCluster(source, namespace, name, opts.kubeconfig);
          secret = found.secret;
          if (opts.url === undefined) webhookURL = found.webhookURL;
        }
        const result = await trigger({
          provider: source,
          type,
          integration: opts.integration,
          url: opts.url,
          webhookURL,
          secret,
          override: opts.set ? (JSON.parse(opts.set) as Record<string, unknown>) : undefined,
          account: opts.account,
        });
        console.log(`${result.status} ${result.body}${result.eventId ? `  (${result.eventId})` : ''}`);
        if (result.status >= 300) process.exitCode = 1;
      } catch (err) {
        console.error(`tally trigger: ${(err as Error).message}`);
        process.exitCode = 1;
      }
    },
  );

const forwarder = configFileOptions(program.command('forwarder'))
  .description(
    "Drain the outbox to Meta's Conversions API, once per MetaPixel, batched, retried and deduplicated.",
  )
  .option('--admin-port <port>', 'admin listener port (default: forwarder.adminPort, 9091)', parsePort)
  .option('--host <address>', 'admin listener address (default: forwarder.host)')
  .addHelpText(
    'after',
    '\nAdmin: /healthz, /readyz, /metrics, GET /api/v1/pixels, GET /api/v1/dead-letters, POST /api/v1/dead-letters/redrive.',
  )
  .action(async (opts: { config: string; dataDir: string; adminPort?: number; host?: string }) => {
    const stopped = untilSignal(); // listen before starting: a SIGTERM during start-up still stops cleanly
    const { runForwarder } = await import('../forwarder/main.js');
    const running = await runForwarder({
      configPath: opts.config,
      dataDir: opts.dataDir,
      adminPort: opts.adminPort,
      host: opts.host,
    });
    await stopped;
    await running.close();
  });

forwarder
  .command('redrive')
  .description(
    'Send dead-lettered events again: every row matching all the given filters goes back to pending. ' +
      "Takes the forwarder's --config and --data-dir.",
  )
  .option('--pixel <namespace/name>', 'only this MetaPixel')
  .option('--outbox-id <id>', 'only these outbox rows (repeatable)', collectIds, [])
  .option('--event-id <id>', 'only these stored events (repeatable)', collectIds, [])
  .option('--reason <reason>', 'only this dead-letter reason, e.g. invalid_event or too_old')
  .action(async (_opts, command: Command) => {
    // --config and --data-dir belong to `tally forwarder`, wherever they stand on the command line.
    const opts = command.optsWithGlobals<{
      config: string;
      dataDir: string;
      pixel?: string;
      outboxId: number[];
      eventId: number[];
      reason?: string;
    }>();
    if (!opts.pixel && !opts.reason && opts.outboxId.length === 0 && opts.eventId.length === 0) {
      return program.error('error: give at least one of --pixel, --outbox-id, --event-id, --reason');
    }
    const { redrive } = await import('../forwarder/main.js');
    const ids = await redrive({
      configPath: opts.config,
      dataDir: opts.dataDir,
      pixel: opts.pixel,
      outboxIds: opts.outboxId.length ? opts.outboxId : undefined,
      eventIds: opts.eventId.length ? opts.eventId : undefined,
      reason: opts.reason,
    });
    console.log(`re-driven ${ids.length} dead-lettered event${ids.length === 1 ? '' : 's'}`);
  });

/** --config and --data-dir, shared by the commands that run from the configuration file. */
function configFileOptions(command: Command): Command {
  return command
    .requiredOption(
      '-c, --config <file>',
      'the Tally configuration file (YAML or JSON); reloaded when it changes',
    )
    .option(
      '--data-dir <dir>',
      'data folder of the embedded PostgreSQL used when no database URL is set',
      '.tally/postgres',
    );
}

function parsePort(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('must be a port number');
  return n;
}

function parseCount(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('must be a whole number');
  return n;
}

/** A commander parser for a JSON option checked with `schema`. */
function json<T>(schema: ZodType<T>) {
  return (value: string): T => {
    try {
      return parseJsonValue(schema, value);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  };
}

function collectIds(value: string, previous: number[]): number[] {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer id');
  return [...previous, n];
}

program
  .command('operator')
  .description('Reconcile StripeIntegration, MetaPixel and CalIntegration resources into a running pipeline.')
  .requiredOption(
    '-n, --namespace <ns>',
    "the operator's own namespace: its Lease, the rendered config, the workloads",
  )
  .option('--kubeconfig <file>', 'cluster access (default: KUBECONFIG, else the in-cluster service account)')
  .option('--watch-namespace <ns>', 'reconcile only this namespace (default: all)')
  .option(
    '--public-base-url <url>',
    'base of the webhook URLs providers call, e.g. https://hooks.example.com',
  )
  .addOption(
    new Option(
      '--pipeline <mode>',
      'kubernetes: Deployments; local: also run ingest and forwarder as child processes',
    )
      .choices(['kubernetes', 'local'])
      .default('kubernetes'),
  )
  .option('--image <ref>', 'image of the ingest and forwarder Deployments')
  .option('--ingest-replicas <n>', 'ingest replicas', parseCount)
  .option('--forwarder-replicas <n>', 'forwarder replicas', parseCount)
  .option(
    '--ingest-resources <json>',
    'ingest container resources, e.g. \'{"requests":{"cpu":"100m"},"limits":{"memory":"512Mi"}}\'',
    json(ResourceRequirements),
  )
  .option(
    '--forwarder-resources <json>',
    'forwarder container resources (as --ingest-resources)',
    json(ResourceRequirements),
  )
  .addOption(
    new Option('--image-pull-policy <policy>', 'imagePullPolicy of the Deployments').choices([
      'Always',
      'IfNotPresent',
      'Never',
    ]),
  )
  .option(
    '--image-pull-secret <name>',
    'imagePullSecrets of the Deployments (repeatable)',
    (v: string, prev: string[] = []) => [...prev, v],
  )
  .option(
    '--pod-security-context <json>',
    'pod securityContext of the Deployments (default: runAsNonRoot, RuntimeDefault seccomp)',
    json(PodSecurityContext),
  )
  .option(
    '--container-security-context <json>',
    'container securityContext of the Deployments (default: read-only root filesystem, no privilege escalation, all capabilities dropped)',
    json(ContainerSecurityContext),
  )
  .option(
    '--database-url-secret <name/key>',
    'Secret key with the DATABASE_URL of the Deployments',
    'tally-database/url',
  )
  .option('--local-dir <dir>', 'local mode: config file, logs and embedded PostgreSQL', '.tally/operator')
  .option('--local-database-url <url>', 'local mode: database of the child processes (default: embedded)')
  .option('--no-local-forwarder', 'local mode: do not run the forwarder')
  .option(
    '--ingest-admin-url <url>',
    "ingest's admin API (default: the local ingest, or the in-cluster Service)",
  )
  .option(
    '--forwarder-admin-url <url>',
    "the forwarder's admin API, read for MetaPixel status (default: the local forwarder, or the in-cluster Service)",
  )
  .option('--stripe-api-base <url>', "Stripe's API (tests point it at a local server)")
  .option('--identity <name>', 'leader-election identity; use the pod name')
  .option('--no-leader-election', 'run without a Lease (one replica only)')
  .option('--admin-host <address>', 'admin listener (/metrics, /healthz, /readyz)', '127.0.0.1')
  .option('--admin-port <port>', 'admin listener port', parsePort, 8081)
  .action(async (opts: OperatorCommandOptions) => {
    const stopped = untilSignal();
    const { startOperator } = await import('./operator.js');
    const operator = await startOperator(opts);
    if (operator.running.localIngest) {
      console.log(
        `local ingest: webhooks ${operator.running.localIngest.webhookURL}, admin ${operator.running.localIngest.adminURL}`,
      );
    }
    // Losing the Lease means another replica leads now: exit, and let the Deployment restart this one.
    const exit = await Promise.race([stopped.then(() => 'stopped' as const), operator.running.done]);
    await operator.close();
    if (exit === 'leadership-lost') process.exitCode = 1;
  });

/** Resolves on SIGINT or SIGTERM, so a command can shut down cleanly (Kubernetes sends SIGTERM). */
function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
}

await program.parseAsync();
