import { randomBytes } from 'node:crypto';
import type { V1Secret } from '@kubernetes/client-node';
import { readyCondition, type ConditionInput } from './conditions.js';
import { nsName, type OperatorContext } from './context.js';
import { isConflict } from './runtime/index.js';
import type { ReconcileResult } from './runtime/index.js';
import {
  CAL,
  CAL_PREVIOUS_SECRET_KEY,
  CAL_SECRET_KEY,
  calWebhookSecretName,
  isControlledBy,
  MANAGED_BY,
  MANAGED_BY_LABEL,
  ownerReference,
  ROTATE_ANNOTATION,
  secretValue,
  webhookURL,
  type CalIntegration,
} from './resources.js';
import { commitStatus, phaseOf } from './status.js';

/** The rotation request a Secret's value was generated for (the annotation's value at that time). */
export const ROTATED_FOR_ANNOTATION = 'tally.dev/rotated-for';

/** 32 random bytes: 256 bits, URL-safe so it pastes cleanly into Cal.com. */
const generateSecret = () => randomBytes(32).toString('base64url');

export function calReconciler(ctx: OperatorContext) {
  return async (key: string): Promise<ReconcileResult> => {
    const { namespace, name } = nsName(key);
    const obj = ctx.cal.get(name, namespace);
    if (!obj || obj.metadata.deletionTimestamp) return;
    const url = webhookURL(ctx.opts.publicBaseURL, 'cal', namespace, name);
    const secretName = calWebhookSecretName(name);
    const provisioned = await provision(obj);
    const ingest = ctx.pipeline.ingestCondition(`cal:${namespace}/${name}`);
    const stats = ingest.status === 'True' ? await ctx.pipeline.stats(key) : undefined;
    const bookings = stats
      ? Object.fromEntries(Object.entries(stats.counts).filter(([type]) => type.startsWith('booking_')))
      : {};
    const any = Object.keys(bookings).length > 0;
    const receiving: ConditionInput = any
      ? {
          type: 'Receiving',
          status: 'True',
          reason: 'BookingsReceived',
          message: `Last booking event at ${stats!.lastEventTime}.`,
        }
      : {
          type: 'Receiving',
          status: 'False',
          reason: 'NoEventsYet',
          message: 'No Cal.com booking event has arrived yet.',
        };
    const ready = readyCondition([provisioned, ingest], {
      reason: 'Ready',
      message: `Paste ${url} as the Subscriber URL and the secret from Secret ${namespace}/${secretName} key ${CAL_SECRET_KEY} into Cal.com.`,
    });
    await commitStatus(
      ctx,
      CAL,
      obj,
      {
        phase: phaseOf(ready, any, {
          waiting: 'Waiting for first booking',
          receiving: 'Receiving booking events',
        }),
        message: ready.message,
        webhookURL: url,
        ...(provisioned.status === 'True'
          ? { webhookSecretRef: { name: secretName, key: CAL_SECRET_KEY } }
          : {}),
        ...(any && stats?.lastEventTime ? { lastEventTime: stats.lastEventTime } : {}),
        ...(any ? { bookingCounts: bookings } : {}),
      },
      [provisioned, ingest, receiving, ready],
    );
    return { requeueAfter: ctx.opts.statsRefreshMs };
  };

  /**
   * Generates the webhook secret once and keeps it: created with POST (never an apply that a stale
   * cache could turn into an overwrite), rotated only when the rotate annotation asks for a new value,
   * keeping the previous secret valid next to it until the next rotation.
   */
  async function provision(obj: CalIntegration): Promise<ConditionInput> {
    const { namespace, name } = obj.metadata;
    const secretName = calWebhookSecretName(name);
    const type = 'SecretProvisioned';
    const rotateTo = obj.metadata.annotations?.[ROTATE_ANNOTATION] ?? '';
    let secret: V1Secret | undefined = ctx.secrets.get(secretName, namespace);
    const desired = (data: Record<string, string>, rotatedFor: string, resourceVersion?: string) => ({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: {
        name: secretName,
        namespace,
        labels: { [MANAGED_BY_LABEL]: MANAGED_BY, 'tally.dev/cal-integration': name },
        annotations: { [ROTATED_FOR_ANNOTATION]: rotatedFor },
        ownerReferences: [ownerReference(obj)],
        ...(resourceVersion ? { resourceVersion } : {}),
      },
      type: 'Opaque',
      data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
    });

    if (!secret) {
      try {
        secret = await ctx.kube.createSecret(desired({ [CAL_SECRET_KEY]: generateSecret() }, rotateTo));
        await ctx.kube.event(
          obj,
          'Normal',
          'SecretProvisioned',
          `Generated the webhook secret in Secret ${namespace}/${secretName}.`,
        );
      } catch (err) {
        if (!isConflict(err)) throw err;
        secret = await ctx.kube.readSecret(namespace, secretName); // created meanwhile; the cache lags
      }
    }
    if (!isControlledBy(secret, obj)) {
      return {
        type,
        status: 'False',
        reason: 'SecretConflict',
        message: `Secret ${namespace}/${secretName} exists and is not owned by this CalIntegration: delete or rename it so Tally can generate the webhook secret there.`,
      };
    }
    const current = secretValue(secret, CAL_SECRET_KEY);
    const rotatedFor = secret.metadata?.annotations?.[ROTATED_FOR_ANNOTATION] ?? '';
    if (!current || rotatedFor !== rotateTo) {
      const data: Record<string, string> = { [CAL_SECRET_KEY]: generateSecret() };
      if (current) data[CAL_PREVIOUS_SECRET_KEY] = current;
      // resourceVersion makes the apply conditional: a stale cache gets 409 and retries, never a second rotation.
      await ctx.kube.applyChild(
        'secrets',
        desired(data, rotateTo, secret.metadata?.resourceVersion),
        undefined,
      );
      await ctx.kube.event(
        obj,
        'Normal',
        current ? 'SecretRotated' : 'SecretProvisioned',
        current
          ? `Rotated the webhook secret in Secret ${namespace}/${secretName}; the previous one stays valid until the next rotation. Paste the new one into Cal.com.`
          : `Generated the webhook secret in Secret ${namespace}/${secretName}.`,
      );
    } else {
      const data: Record<string, string> = { [CAL_SECRET_KEY]: current };
      const previous = secretValue(secret, CAL_PREVIOUS_SECRET_KEY);
      if (previous) data[CAL_PREVIOUS_SECRET_KEY] = previous;
      await ctx.kube.applyChild('secrets', desired(data, rotatedFor), secret);
    }
    return {
      type,
      status: 'True',
      reason: 'SecretGenerated',
      message: `The webhook secret is in Secret ${namespace}/${secretName} key ${CAL_SECRET_KEY}.`,
    };
  }
}
