import { readyCondition, type ConditionInput } from './conditions.js';
import { nsName, type OperatorContext } from './context.js';
import type { ReconcileResult } from './runtime/index.js';
import { PIXEL } from './resources.js';
import { commitStatus } from './status.js';
import { secretProblem } from './stripe/reconciler.js';

/** What the forwarder reports per pixel (its admin API GET /api/v1/pixels, when it exists). */
export interface PixelReport {
  eventsForwarded: number;
  eventsFailed: number;
  lastForwardTime?: string;
  /** The last error as Meta reported it; the forwarder never includes the token. */
  lastError?: string;
  /** Whether Meta currently accepts the token (false after a 190 OAuthException). */
  tokenValid?: boolean;
  lastErrorTime?: string;
  /** Events waiting in the outbox for this pixel. */
  pending?: number;
}

/** The last attempt failed: an error newer than the last success (or no success at all). */
function deliveryFailing(report: PixelReport): boolean {
  if (!report.lastError || !report.lastErrorTime) return false;
  return !report.lastForwardTime || report.lastErrorTime > report.lastForwardTime;
}

export interface ForwarderReports {
  pixel(id: string): PixelReport | undefined;
}

/** Until the forwarder reports, there is nothing to read: status says so instead of guessing. */
export const noForwarderReports: ForwarderReports = { pixel: () => undefined };

export function pixelReconciler(ctx: OperatorContext) {
  return async (key: string): Promise<ReconcileResult> => {
    const { namespace, name } = nsName(key);
    const obj = ctx.pixels.get(name, namespace);
    if (!obj || obj.metadata.deletionTimestamp) return;
    const ref = obj.spec.accessTokenSecretRef;
    const problem = secretProblem(
      ctx.secrets.get(ref.name, namespace),
      namespace,
      ref,
      'the Conversions API access token',
    );
    const token: ConditionInput = problem
      ? { type: 'AccessTokenFound', ...problem }
      : {
          type: 'AccessTokenFound',
          status: 'True',
          reason: 'SecretFound',
          message: `Using the access token in Secret ${namespace}/${ref.name}.`,
        };

    const wanted = obj.spec.stripeIntegrations;
    const present = new Set(ctx.stripe.list(namespace).map((s) => s.metadata.name));
    const missing = (wanted ?? []).filter((n) => !present.has(n));
    const sources: ConditionInput =
      missing.length > 0
        ? {
            type: 'SourcesFound',
            status: 'False',
            reason: 'StripeIntegrationNotFound',
            message: `StripeIntegration ${missing.map((n) => `${namespace}/${n}`).join(', ')} not found: create it or remove it from spec.stripeIntegrations.`,
          }
        : {
            type: 'SourcesFound',
            status: 'True',
            reason: 'SourcesFound',
            message: wanted
              ? `Receives events of ${wanted.join(', ')}.`
              : `Receives events of every StripeIntegration in ${namespace} (${present.size} now).`,
          };

    const configured: ConditionInput = ctx.pipeline.inConfiguration(`pixel:${namespace}/${name}`)
      ? {
          type: 'ForwarderConfigured',
          status: 'True',
          reason: 'InConfiguration',
          message: 'The pixel is in the configuration the forwarder runs from.',
        }
      : ctx.pipeline.isRendered
        ? {
            type: 'ForwarderConfigured',
            status: 'False',
            reason: 'NotConfigured',
            message: 'The pixel is not in the forwarder configuration; see AccessTokenFound.',
          }
        : {
            type: 'ForwarderConfigured',
            status: 'Unknown',
            reason: 'ConfigPending',
            message: 'The pipeline configuration has not been rendered yet.',
          };

    const report = ctx.forwarder.pixel(key);
    const forwarding: ConditionInput = !report
      ? {
          type: 'Forwarding',
          status: 'Unknown',
          reason: 'ForwarderNotReporting',
          message: 'The forwarder has not reported results for this pixel yet.',
        }
      : report.tokenValid === false
        ? {
            type: 'Forwarding',
            status: 'False',
            reason: 'AccessTokenRejected',
            message: `Meta rejected the access token in Secret ${namespace}/${ref.name}: generate a new one in Events Manager.`,
          }
        : deliveryFailing(report)
          ? {
              type: 'Forwarding',
              status: 'False',
              reason: 'DeliveryFailing',
              message: `Delivery to Meta is failing: ${report.lastError!.slice(0, 512)}. ${report.pending ?? 0} events wait and are retried with backoff.`,
            }
          : {
              type: 'Forwarding',
              status: 'True',
              reason: 'Forwarding',
              message: `${report.eventsForwarded} events accepted by Meta.`,
            };

    const parts = [token, sources, configured];
    if (report) parts.push(forwarding);
    const ready = readyCondition(parts, {
      reason: 'Configured',
      message: report
        ? 'Forwarding to the Conversions API.'
        : 'Configured for forwarding; the forwarder has not reported results yet.',
    });
    const phase =
      ready.status === 'True'
        ? report
          ? 'Forwarding events'
          : 'Configured'
        : token.status === 'False'
          ? 'Access token missing'
          : forwarding.reason === 'AccessTokenRejected'
            ? 'Access token invalid'
            : forwarding.reason === 'DeliveryFailing'
              ? 'Meta unreachable or failing'
              : ready.status === 'Unknown'
                ? 'Provisioning'
                : 'Error';
    await commitStatus(
      ctx,
      PIXEL,
      obj,
      {
        phase,
        message: ready.message,
        ...(report
          ? {
              eventsForwarded: report.eventsForwarded,
              eventsFailed: report.eventsFailed,
              ...(report.lastForwardTime ? { lastForwardTime: report.lastForwardTime } : {}),
              ...(report.lastError ? { lastError: report.lastError.slice(0, 1024) } : {}),
            }
          : {}),
      },
      [token, sources, configured, forwarding, ready],
    );
  };
}
