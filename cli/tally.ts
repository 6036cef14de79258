#!/usr/bin/env node
import { Command, Option } from 'commander';
import { defaultCrdDir, renderCrdFiles, staleCrdFiles, writeCrdFiles } from './crds.js';
import { CAL_SAMPLES, STRIPE_SAMPLES, trigger } from './trigger.js';

const program = new Command('tally')
  .description(
    'Kubernetes-native conversion tracking: Stripe and Cal.com events in, revenue-bearing conversions out.',
  )
  .version(process.env.npm_package_version ?? '0.1.0')
  .showHelpAfterError();

program
  .command('crds')
  .description('Print the CustomResourceDefinitions (StripeIntegration, MetaPixel, CalIntegration) as YAML.')
  .option('--write [dir]', 'write one file per CRD into dir (default: crds/) instead of printing')
  .option(
    '--check [dir]',
    'exit 1 when the files in dir (default: crds/) differ from what this version generates',
  )
  .addHelpText(
    'after',
    '\nExamples:\n  tally crds | kubectl apply --server-side -f -\n  tally crds --check crds/',
  )
  .action(async (opts: { write?: string | true; check?: string | true }) => {
    if (opts.check) {
      const dir = typeof opts.check === 'string' ? opts.check : defaultCrdDir();
      const stale = await staleCrdFiles(dir);
      if (stale.length > 0) {
        console.error(
          `CRDs in ${dir} are out of date: ${stale.join(', ')}. Run \`npm run crds\` and commit.`,
        );
        process.exitCode = 1;
      } else {
        console.log(`CRDs in ${dir} match the schema source.`);
      }
    } else if (opts.write) {
      const dir = typeof opts.write === 'string' ? opts.write : defaultCrdDir();
      for (const file of await writeCrdFiles(dir)) console.log(`wrote ${file}`);
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

program
  .command('ingest')
  .description('Receive and verify Stripe and Cal.com webhooks and store them as conversions in PostgreSQL.')
  .requiredOption(
    '-c, --config <file>',
    'the Tally configuration file (YAML or JSON); reloaded when it changes',
  )
  .option(
    '--data-dir <dir>',
    'data folder of the embedded PostgreSQL used when no database URL is set',
    '.tally/postgres',
  )
  .addHelpText(
    'after',
    '\nThe database is database.url from the config, else DATABASE_URL, else an embedded PostgreSQL in --data-dir.\n' +
      'Webhooks (ingest.port): POST /webhooks/stripe/<namespace>/<name>, POST /webhooks/cal/<namespace>/<name>.\n' +
      'Admin (ingest.adminPort): /healthz, /readyz, /metrics, /api/v1/conversions, /api/v1/stats.',
  )
  .action(async (opts: { config: string; dataDir: string }) => {
    const { runIngest } = await import('../ingest/main.js');
    const ingest = await runIngest({ configPath: opts.config, dataDir: opts.dataDir });
    await untilSignal();
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
  .requiredOption('-s, --secret <secret>', 'the signing secret (Stripe whsec_…) or Cal.com webhook secret')
  .option('-u, --url <url>', 'the ingest webhook base URL', 'http://127.0.0.1:8080')
  .option('--set <json>', 'fields to override in the sample object, as JSON, e.g. \'{"amount_total": 4900}\'')
  .option('--account <acct>', 'send as an event of this Stripe Connect account')
  .addHelpText(
    'after',
    `\nStripe types: ${Object.keys(STRIPE_SAMPLES).join(', ')}` +
      `\nCal.com triggers: ${Object.keys(CAL_SAMPLES).join(', ')}` +
      '\n\nExample:\n  tally trigger stripe checkout.session.completed -i growth/acme -s whsec_…',
  )
  .action(
    async (
      provider: string,
      type: string,
      opts: { integration: string; secret: string; url: string; set?: string; account?: string },
    ) => {
      if (provider !== 'stripe' && provider !== 'cal') {
        program.error(`provider must be stripe or cal, got "${provider}"`);
      }
      try {
        const result = await trigger({
          provider: provider as 'stripe' | 'cal',
          type,
          integration: opts.integration,
          url: opts.url,
          secret: opts.secret,
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

for (const [name, description] of [
  [
    'operator',
    'Reconcile StripeIntegration, MetaPixel and CalIntegration resources into a running pipeline.',
  ],
  ['forwarder', "Forward stored conversions to Meta's Conversions API."],
] as const) {
  program
    .command(name)
    .description(`${description} (not available in this version yet)`)
    .action(() => {
      console.error(`tally ${name} is not available in this version yet.`);
      process.exitCode = 2;
    });
}

/** Resolves on SIGINT or SIGTERM, so a command can shut down cleanly (Kubernetes sends SIGTERM). */
function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
}

await program.parseAsync();
