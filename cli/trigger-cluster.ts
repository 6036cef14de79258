import { CoreV1Api, CustomObjectsApi, KubeConfig, type V1Secret } from '@kubernetes/client-node';
import { GROUP, VERSION } from '../core/api/v1alpha1/common.js';
import { secretValue } from '../operator/resources.js';
import { statusCode } from '../operator/runtime/errors.js';

interface SecretRef {
  name?: string;
  key?: string;
}

interface IntegrationObject {
  spec?: { webhook?: { signingSecretRef?: SecretRef }; webhookSecretRef?: SecretRef };
  status?: { webhookURL?: string; signingSecretRef?: SecretRef; webhookSecretRef?: SecretRef };
}

export interface ClusterTarget {
  /** The signing secret (Stripe) or webhook secret (Cal.com) the integration verifies with. */
  secret: string;
  /** status.webhookURL: the full webhook URL the operator published, when it has. */
  webhookURL?: string;
}

/**
 * Reads what `tally trigger` needs from the cluster: the secret the integration verifies with (the
 * one in status, which is what ingest uses, else the one spec references) and its webhook URL.
 * Error messages name the object and the fix, never the secret.
 */
export async function integrationFromCluster(
  provider: 'stripe' | 'cal',
  namespace: string,
  name: string,
  kubeconfigPath?: string,
): Promise<ClusterTarget> {
  const kc = new KubeConfig();
  if (kubeconfigPath) kc.loadFromFile(kubeconfigPath);
  else kc.loadFromDefault();
  const plural = provider === 'stripe' ? 'stripeintegrations' : 'calintegrations';
  const kind = provider === 'stripe' ? 'StripeIntegration' : 'CalIntegration';
  let obj: IntegrationObject;
  try {
    obj = (await kc.makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural,
      name,
    })) as IntegrationObject;
  } catch (err) {
    const code = statusCode(err);
    if (code === 404)
      throw new Error(`${kind} ${namespace}/${name} not found in ${kc.getCurrentCluster()?.server}`);
    if (code === 401 || code === 403)
      throw new Error(
        `not allowed to get ${kind} ${namespace}/${name} (HTTP ${code}); pass --secret instead`,
      );
    throw new Error(`cannot read ${kind} ${namespace}/${name}: ${(err as Error).message}`);
  }
  const ref =
    provider === 'stripe'
      ? (obj.status?.signingSecretRef ?? obj.spec?.webhook?.signingSecretRef)
      : (obj.status?.webhookSecretRef ?? obj.spec?.webhookSecretRef);
  if (!ref?.name || !ref.key) {
    throw new Error(
      provider === 'stripe'
        ? `${kind} ${namespace}/${name} has no signing secret yet (status.signingSecretRef is empty): wait for the operator, or pass --secret`
        : `${kind} ${namespace}/${name} has no webhook secret yet (status.webhookSecretRef is empty): wait for the operator, or pass --secret`,
    );
  }
  let secret: V1Secret;
  try {
    secret = await kc.makeApiClient(CoreV1Api).readNamespacedSecret({ name: ref.name, namespace });
  } catch (err) {
    const code = statusCode(err);
    if (code === 404)
      throw new Error(`Secret ${namespace}/${ref.name}, referenced by ${kind} ${name}, not found`);
    if (code === 401 || code === 403)
      throw new Error(
        `not allowed to get Secret ${namespace}/${ref.name} (HTTP ${code}); pass --secret instead`,
      );
    throw new Error(`cannot read Secret ${namespace}/${ref.name}: ${(err as Error).message}`);
  }
  const value = secretValue(secret, ref.key);
  if (!value) throw new Error(`Secret ${namespace}/${ref.name} has no key "${ref.key}"`);
  return { secret: value, webhookURL: obj.status?.webhookURL };
}
