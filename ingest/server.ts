import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import type pg from 'pg';
import type { NormalizedEvent, Source } from '../core/conversion.js';
import type { EventStore } from '../core/store/event-store.js';
import { normaliseCalEvent, parseCalEnvelope, verifyCalSignature } from './adapters/cal.js';
import { WebhookRejection, type Ignored } from './adapters/rejection.js';
import { normaliseStripeEvent, verifyStripeEvent } from './adapters/stripe.js';
import type { IngestMetrics } from './metrics.js';
import type { Routing } from './routing.js';
import { registerReadApi } from './read-api.js';

export interface IngestDeps {
  routing: () => Routing;
  store: EventStore;
  pool: pg.Pool;
  metrics: IngestMetrics;
  log: FastifyBaseLogger;
  bodyLimitBytes: number;
  stripeToleranceSeconds: () => number;
}

interface Target {
  namespace: string;
  name: string;
}

/** Seconds a provider should wait before retrying while the database is unavailable. */
const RETRY_AFTER_SECONDS = 5;

/**
 * The public listener: webhook routes only. Bodies stay raw bytes (signatures cover the exact
 * bytes); nothing else is served here, so the read API and metrics never face the internet.
 */
export async function buildWebhookServer(deps: IngestDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.log,
    bodyLimit: deps.bodyLimitBytes,
    logController: new LogController({ disableRequestLogging: true }),
  });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  app.setErrorHandler((err: { code?: string; statusCode?: number; message: string }, req, reply) => {
    const source = sourceOf(req);
    const rejection =
      err.code === 'FST_ERR_CTP_BODY_TOO_LARGE'
        ? new WebhookRejection(413, 'body_too_large', `The body is larger than ${deps.bodyLimitBytes} bytes.`)
        : err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE'
          ? new WebhookRejection(415, 'unsupported_media_type', 'Send the webhook as application/json.')
          : (err.statusCode ?? 500) < 500
            ? new WebhookRejection(err.statusCode ?? 400, 'bad_request', err.message)
            : undefined;
    if (rejection) return reject(reply, source, targetLabel(req, deps), rejection, deps);
    deps.log.error({ err: { message: err.message } }, 'webhook handler failed');
    return reply
      .code(500)
      .send({ error: 'internal_error', message: 'Unexpected error; the event was not stored.' });
  });
  app.setNotFoundHandler((req, reply) =>
    reply
      .code(404)
      .send({ error: 'not_found', message: `No webhook route at ${req.method} ${req.url.split('?')[0]}.` }),
  );
  app.addHook('onResponse', async (req, reply) => {
    const source = sourceOf(req);
    if (source) {
      deps.metrics.requestDuration.observe(
        { source, code: String(reply.statusCode) },
        reply.elapsedTime / 1000,
      );
    }
  });

  app.post<{ Params: Target }>('/webhooks/stripe/:namespace/:name', (req, reply) =>
    handle('stripe', req, reply, deps, (raw, routing) => {
      const integration = routing.stripe.get(id(req.params))!;
      const event = verifyStripeEvent(
        raw,
        req.headers['stripe-signature'],
        integration.signingSecrets,
        deps.stripeToleranceSeconds(),
      );
      return normaliseStripeEvent(
        event,
        raw.toString('utf8'),
        integration,
        () => routing.destinations.get(id(req.params)) ?? [],
      );
    }),
  );
  app.post<{ Params: Target }>('/webhooks/cal/:namespace/:name', (req, reply) =>
    handle('cal', req, reply, deps, (raw, routing) => {
      const integration = routing.cal.get(id(req.params))!;
      verifyCalSignature(raw, req.headers['x-cal-signature-256'], integration.webhookSecrets);
      const text = raw.toString('utf8');
      const envelope = parseCalEnvelope(text);
      if (envelope.triggerEvent === 'PING') return { kind: 'ignored', reason: 'ping' };
      return normaliseCalEvent(envelope, text, integration);
    }),
  );
  return app;
}

async function handle(
  source: Source,
  req: FastifyRequest<{ Params: Target }>,
  reply: FastifyReply,
  deps: IngestDeps,
  // One configuration snapshot per request: a reload meanwhile cannot change it half-way.
  adapt: (raw: Buffer, routing: Routing) => NormalizedEvent | Ignored,
) {
  const routing = deps.routing();
  const integration = id(req.params);
  const known = source === 'stripe' ? routing.stripe.has(integration) : routing.cal.has(integration);
  const label = known ? integration : 'unknown';
  deps.metrics.received.inc({ source, integration: label });
  if (!known) {
    return reject(
      reply,
      source,
      label,
      new WebhookRejection(
        404,
        'unknown_integration',
        `No ${source === 'stripe' ? 'StripeIntegration' : 'CalIntegration'} ${integration} is configured here.`,
      ),
      deps,
    );
  }
  if (!Buffer.isBuffer(req.body)) {
    return reject(
      reply,
      source,
      label,
      new WebhookRejection(400, 'empty_body', 'The request has no body.'),
      deps,
    );
  }

  let result: NormalizedEvent | Ignored;
  try {
    result = adapt(req.body, routing);
  } catch (err) {
    if (err instanceof WebhookRejection) return reject(reply, source, label, err, deps);
    throw err;
  }
  if ('kind' in result) {
    deps.metrics.ignored.inc({ source, integration: label, reason: result.reason });
    return reply.code(200).send({ received: true, ignored: result.reason });
  }

  try {
    const outcome = await deps.store.save(result);
    if (outcome === 'duplicate') {
      deps.metrics.duplicate.inc({ source, integration: label });
      return reply.code(200).send({ received: true, duplicate: true });
    }
    deps.metrics.accepted.inc({ source, integration: label });
    if (result.conversionType) {
      deps.metrics.conversions.inc({ source, integration: label, type: result.conversionType });
    }
    return reply.code(200).send({ received: true });
  } catch (err) {
    deps.metrics.databaseErrors.inc();
    deps.log.warn(
      { err: { message: (err as Error).message }, source, integration },
      'could not store webhook',
    );
    reply.header('Retry-After', String(RETRY_AFTER_SECONDS));
    return reject(
      reply,
      source,
      label,
      new WebhookRejection(503, 'database_unavailable', 'The event could not be stored; retry later.'),
      deps,
    );
  }
}

function reject(
  reply: FastifyReply,
  source: Source | undefined,
  integration: string,
  r: WebhookRejection,
  deps: IngestDeps,
) {
  if (source) deps.metrics.rejected.inc({ source, integration, reason: r.reason });
  return reply.code(r.status).send({ error: r.reason, message: r.message });
}

function id(t: Target): string {
  return `${t.namespace}/${t.name}`;
}

function sourceOf(req: FastifyRequest): Source | undefined {
  const path = req.url;
  return path.startsWith('/webhooks/stripe/')
    ? 'stripe'
    : path.startsWith('/webhooks/cal/')
      ? 'cal'
      : undefined;
}

/** The integration label for errors raised before the handler ran (body too large, content type). */
function targetLabel(req: FastifyRequest, deps: IngestDeps): string {
  const [, , source, namespace, name] = req.url.split('?')[0]!.split('/');
  const routing = deps.routing();
  const integration = `${namespace}/${name}`;
  const known =
    source === 'stripe' ? routing.stripe.has(integration) : source === 'cal' && routing.cal.has(integration);
  return known ? integration : 'unknown';
}

/** The private listener: health, readiness, metrics and the read API. */
export async function buildAdminServer(
  deps: IngestDeps,
  ready: () => Promise<string[]>,
): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.log,
    logController: new LogController({ disableRequestLogging: true }),
  });
  app.get('/healthz', () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const problems = await ready();
    return problems.length === 0
      ? { status: 'ready' }
      : reply.code(503).send({ status: 'not_ready', problems });
  });
  app.get('/metrics', async (_req, reply) =>
    reply
      .header('Content-Type', deps.metrics.registry.contentType)
      .send(await deps.metrics.registry.metrics()),
  );
  // What this process has loaded, so the operator reports an integration Ready only once ingest serves it.
  app.get('/api/v1/integrations', () => {
    const routing = deps.routing();
    return {
      configDigest: routing.configDigest,
      stripe: [...routing.stripe.keys()],
      cal: [...routing.cal.keys()],
    };
  });
  registerReadApi(app, deps.pool);
  return app;
}
