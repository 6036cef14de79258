import Stripe from 'stripe';
import type { V1Secret } from '@kubernetes/client-node';
import { readyCondition, type ConditionInput } from '../conditions.js';
import { nsName, refText, type OperatorContext } from '../context.js';
import { digestOf } from '../kube.js';
import {
  FINALIZER,
  isControlledBy,
  MANAGED_BY,
  MANAGED_BY_LABEL,
  ownerReference,
  secretValue,
  STRIPE,
  STRIPE_SIGNING_KEY,
  stripeSigningSecretName,
  webhookURL,
  type StripeIntegration,
} from '../resources.js';
import type { ReconcileResult } from '../runtime/index.js';
import { commitStatus, countsOf, phaseOf, recentRevenue } from '../status.js';
import {
  classifyStripeError,
  compatible,
  enabledEvents,
  findOwnEndpoints,
  ownerMetadata,
  stripeClient,
  upToDate,
  type DesiredEndpoint,
  type EndpointOwner,
} from './endpoints.js';

export const ENDPOINT_ID_ANNOTATION = 'tally.dev/endpoint-id';
export const ENDPOINT_DIGEST_ANNOTATION = 'tally.dev/endpoint-digest';
/** Lets a resource go when its endpoint cannot be deleted (the key is gone for good). */
export const SKIP_CLEANUP_ANNOTATION = 'tally.dev/skip-cleanup';

/** Thrown after the status says what is wrong, so the key is retried with backoff. */
export class RetryLater extends Error {}

interface Registration {
  condition: ConditionInput;
  endpointId?: string;
  signingSecretRef?: { name: string; key: string };
  retry?: boolean;
}

export function stripeReconciler(ctx: OperatorContext) {
  /** Endpoints verified at Stripe by this process: uid → what was verified and when. */
  const verified = new Map<string, { id: string; digest: string; at: number }>();

  return async (key: string): Promise<ReconcileResult> => {
    const { namespace, name } = nsName(key);
    const obj = ctx.stripe.get(name, namespace);
    if (!obj) return; // gone: its Secret goes with it (ownerReference), the pipeline drops it
    const managed = (obj.spec.webhook?.mode ?? 'Managed') === 'Managed';
    const finalizers = obj.metadata.finalizers ?? [];

    if (obj.metadata.deletionTimestamp || (!managed && finalizers.includes(FINALIZER))) {
      await cleanUp(obj, !obj.metadata.deletionTimestamp);
      verified.delete(obj.metadata.uid!);
      if (obj.metadata.deletionTimestamp) return;
    }
    if (managed && !finalizers.includes(FINALIZER)) {
      // Before any endpoint exists, so no endpoint can outlive its resource.
      await ctx.kube.setFinalizers(STRIPE, obj, [...finalizers, FINALIZER]);
      return; // the update comes back through the informer
    }

    const url = webhookURL(ctx.opts.publicBaseURL, 'stripe', namespace, name);
    const reg = managed ? await register(obj, url) : external(obj);
    const ingest = ctx.pipeline.ingestCondition(`stripe:${namespace}/${name}`);
    const stats = ingest.status === 'True' ? await ctx.pipeline.stats(key) : undefined;
    const counts = countsOf(stats);
    const receiving: ConditionInput = counts
      ? {
          type: 'Receiving',
          status: 'True',
          reason: 'EventsReceived',
          message: `Last event at ${stats!.lastEventTime}.`,
        }
      : {
          type: 'Receiving',
          status: 'False',
          reason: 'NoEventsYet',
          message: 'No Stripe event has arrived yet.',
        };
    const ready = readyCondition([reg.condition, ingest], {
      reason: 'Ready',
      message: `Stripe events are verified and stored; webhook URL ${url}.`,
    });
    const phase = phaseOf(ready, Boolean(counts), {
      waiting: 'Waiting for first event',
      receiving: 'Receiving payment events',
    });
    await commitStatus(
      ctx,
      STRIPE,
      obj,
      {
        phase,
        message: ready.message,
        webhookURL: url,
        ...(reg.endpointId ? { endpointId: reg.endpointId } : {}),
        ...(reg.signingSecretRef ? { signingSecretRef: reg.signingSecretRef } : {}),
        ...(stats?.lastEventTime ? { lastEventTime: stats.lastEventTime } : {}),
        ...(recentRevenue(stats, obj.status?.recentRevenue)
          ? { recentRevenue: recentRevenue(stats, obj.status?.recentRevenue) }
          : {}),
        ...(counts ? { eventCounts: counts } : {}),
      },
      [reg.condition, ingest, receiving, ready],
    );
    if (reg.retry) throw new RetryLater(`${reg.condition.reason}: ${reg.condition.message}`);
    return { requeueAfter: ctx.opts.statsRefreshMs };
  };

  function external(obj: StripeIntegration): Registration {
    const { namespace } = obj.metadata;
    const ref = obj.spec.webhook.signingSecretRef!;
    const missing = secretProblem(
      ctx.secrets.get(ref.name, namespace),
      namespace,
      ref,
      'the endpoint signing secret (whsec_...)',
    );
    if (missing) return { condition: { type: 'WebhookRegistered', ...missing } };
    return {
      signingSecretRef: ref,
      condition: {
        type: 'WebhookRegistered',
        status: 'True',
        reason: 'ExternalEndpoint',
        message: `Verifying with the signing secret in ${refText(namespace, ref)}; the endpoint is yours to keep pointed at the webhook URL.`,
      },
    };
  }

  async function register(obj: StripeIntegration, url: string): Promise<Registration> {
    const { namespace, name } = obj.metadata;
    const uid = obj.metadata.uid!;
    const type = 'WebhookRegistered';
    const secretName = stripeSigningSecretName(name);
    const owned = ctx.secrets.get(secretName, namespace);
    if (owned && !isControlledBy(owned, obj)) {
      return {
        condition: {
          type,
          status: 'False',
          reason: 'SecretConflict',
          message: `Secret ${namespace}/${secretName} exists and is not owned by this StripeIntegration: delete or rename it so Tally can store the signing secret there.`,
        },
      };
    }
    const keyRef = obj.spec.apiKeySecretRef!;
    const apiKeyProblem = secretProblem(
      ctx.secrets.get(keyRef.name, namespace),
      namespace,
      keyRef,
      'a Stripe restricted key (rk_...)',
    );
    if (apiKeyProblem) return { condition: { type, ...apiKeyProblem } };
    const apiKey = secretValue(ctx.secrets.get(keyRef.name, namespace), keyRef.key)!;

    const desired: DesiredEndpoint = {
      url,
      enabledEvents: enabledEvents(obj.spec.conversionTypes),
      connect: Boolean(obj.spec.connectAccountId),
      description: `Tally ${namespace}/${name}`,
    };
    const digest = digestOf({ desired, apiVersion: Stripe.API_VERSION });
    const signingSecretRef = { name: secretName, key: STRIPE_SIGNING_KEY };
    const done = (id: string): Registration => ({
      endpointId: id,
      signingSecretRef,
      condition: {
        type,
        status: 'True',
        reason: 'EndpointRegistered',
        message: `Stripe webhook endpoint ${id} delivers ${desired.enabledEvents.length} event types to ${url}.`,
      },
    });
    const known = verified.get(uid);
    if (known && known.digest === digest && performance.now() - known.at < ctx.opts.endpointVerifyMs)
      return done(known.id);

    const owner: EndpointOwner = { namespace, name, uid };
    const stripe = stripeClient(apiKey, ctx.opts.stripeApiBase);
    try {
      const own = await findOwnEndpoints(stripe, owner);
      const recordedId = owned?.metadata?.annotations?.[ENDPOINT_ID_ANNOTATION];
      const hasSecret = Boolean(secretValue(owned, STRIPE_SIGNING_KEY));
      let keep = own.find((e) => e.id === recordedId && hasSecret && compatible(e, desired));
      if (keep && !upToDate(keep, desired)) {
        keep = await stripe.webhookEndpoints.update(keep.id, {
          url: desired.url,
          enabled_events: desired.enabledEvents as Stripe.WebhookEndpointUpdateParams.EnabledEvent[],
          disabled: false,
          description: desired.description,
        });
        await ctx.kube.event(obj, 'Normal', 'WebhookUpdated', `Updated Stripe webhook endpoint ${keep.id}.`);
      }
      if (!keep) {
        const created = await stripe.webhookEndpoints.create({
          url: desired.url,
          enabled_events: desired.enabledEvents as Stripe.WebhookEndpointCreateParams.EnabledEvent[],
          api_version: Stripe.API_VERSION,
          description: desired.description,
          metadata: ownerMetadata(owner, desired.connect),
          ...(desired.connect ? { connect: true } : {}),
        });
        // The secret is returned only now: store it before anything else can fail.
        try {
          await storeSigningSecret(obj, owned, created.id, created.secret!, digest);
        } catch (err) {
          await stripe.webhookEndpoints.del(created.id).catch(() => undefined);
          throw err;
        }
        keep = created;
        await ctx.kube.event(
          obj,
          'Normal',
          'WebhookRegistered',
          `Registered Stripe webhook endpoint ${created.id} for ${url}.`,
        );
      } else if (owned?.metadata?.annotations?.[ENDPOINT_DIGEST_ANNOTATION] !== digest) {
        await storeSigningSecret(obj, owned, keep.id, secretValue(owned, STRIPE_SIGNING_KEY)!, digest);
      }
      for (const stale of own.filter((e) => e.id !== keep.id)) {
        await stripe.webhookEndpoints.del(stale.id).catch(ignoreMissing);
      }
      verified.set(uid, { id: keep.id, digest, at: performance.now() });
      return done(keep.id);
    } catch (err) {
      if (err instanceof Stripe.errors.StripeError || !isKubeError(err)) {
        const failure = classifyStripeError(err, refText(namespace, keyRef));
        ctx.log.warn({ resource: `${namespace}/${name}`, reason: failure.reason }, failure.message);
        return { retry: true, condition: { type, status: 'False', ...failure } };
      }
      throw err;
    }
  }

  async function storeSigningSecret(
    obj: StripeIntegration,
    cached: V1Secret | undefined,
    endpointId: string,
    signingSecret: string,
    digest: string,
  ): Promise<void> {
    const { namespace, name } = obj.metadata;
    await ctx.kube.applyChild(
      'secrets',
      {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: {
          name: stripeSigningSecretName(name),
          namespace,
          labels: { [MANAGED_BY_LABEL]: MANAGED_BY, 'tally.dev/stripe-integration': name },
          annotations: { [ENDPOINT_ID_ANNOTATION]: endpointId, [ENDPOINT_DIGEST_ANNOTATION]: digest },
          ownerReferences: [ownerReference(obj)],
        },
        type: 'Opaque',
        data: { [STRIPE_SIGNING_KEY]: Buffer.from(signingSecret).toString('base64') },
      },
      cached,
    );
  }

  /** Deletes our endpoints, then the finalizer; a blocked cleanup shows in status and retries. */
  async function cleanUp(obj: StripeIntegration, modeSwitch: boolean): Promise<void> {
    const { namespace, name } = obj.metadata;
    const finalizers = obj.metadata.finalizers ?? [];
    if (!finalizers.includes(FINALIZER)) return;
    // Nothing was ever registered (no stored signing secret, no endpoint in status): nothing to delete.
    const registered =
      Boolean(obj.status?.endpointId) || Boolean(ctx.secrets.get(stripeSigningSecretName(name), namespace));
    const skip = !registered || obj.metadata.annotations?.[SKIP_CLEANUP_ANNOTATION] === 'true';
    const keyRef = obj.spec.apiKeySecretRef;
    let failure: { reason: string; message: string } | undefined;
    if (!skip) {
      const problem = keyRef
        ? secretProblem(
            ctx.secrets.get(keyRef.name, namespace),
            namespace,
            keyRef,
            'the Stripe restricted key',
          )
        : { reason: 'ApiKeySecretNotSet', message: 'spec.apiKeySecretRef is not set' };
      if (problem) {
        failure = {
          reason: 'CleanupBlocked',
          message: `Cannot delete the Stripe webhook endpoint: ${problem.message} Or set the annotation ${SKIP_CLEANUP_ANNOTATION}: "true" to leave the endpoint behind.`,
        };
      } else {
        const stripe = stripeClient(
          secretValue(ctx.secrets.get(keyRef!.name, namespace), keyRef!.key)!,
          ctx.opts.stripeApiBase,
        );
        try {
          for (const e of await findOwnEndpoints(stripe, { namespace, name, uid: obj.metadata.uid! })) {
            await stripe.webhookEndpoints.del(e.id).catch(ignoreMissing);
            await ctx.kube.event(obj, 'Normal', 'WebhookDeleted', `Deleted Stripe webhook endpoint ${e.id}.`);
          }
        } catch (err) {
          const f = classifyStripeError(err, refText(namespace, keyRef!));
          failure = {
            reason: 'CleanupFailed',
            message: `Cannot delete the Stripe webhook endpoint: ${f.message}`,
          };
        }
      }
    }
    if (failure) {
      const condition: ConditionInput = { type: 'Ready', status: 'False', ...failure };
      await commitStatus(
        ctx,
        STRIPE,
        obj,
        { ...(obj.status ?? {}), phase: modeSwitch ? 'Error' : 'Deleting', message: failure.message },
        [
          ...((obj.status?.conditions ?? []).filter((c) => c.type !== 'Ready') as ConditionInput[]),
          condition,
        ],
      );
      throw new RetryLater(failure.message);
    }
    await ctx.kube.setFinalizers(
      STRIPE,
      obj,
      finalizers.filter((f) => f !== FINALIZER),
    );
  }
}

/** Why a referenced Secret cannot be used, or undefined when it can. */
export function secretProblem(
  secret: V1Secret | undefined,
  namespace: string,
  ref: { name: string; key: string },
  holding: string,
): { status: 'False'; reason: string; message: string } | undefined {
  if (!secret)
    return {
      status: 'False',
      reason: 'SecretNotFound',
      message: `Secret ${namespace}/${ref.name} not found: create it with key ${ref.key} holding ${holding}.`,
    };
  if (!secretValue(secret, ref.key))
    return {
      status: 'False',
      reason: 'SecretKeyNotFound',
      message: `Secret ${namespace}/${ref.name} has no key ${ref.key}: add ${holding} under that key.`,
    };
  return undefined;
}

function ignoreMissing(err: unknown): void {
  if (err instanceof Stripe.errors.StripeError && err.statusCode === 404) return;
  throw err;
}

function isKubeError(err: unknown): boolean {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'number';
}
