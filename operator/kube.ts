import { createHash } from 'node:crypto';
import {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type KubernetesObject,
  type V1Secret,
} from '@kubernetes/client-node';
import { describeError } from './runtime/index.js';
import type { Logger } from './runtime/index.js';
import {
  API_VERSION,
  canonical,
  FIELD_MANAGER,
  GROUP,
  VERSION,
  type KindInfo,
  type TallyResource,
} from './resources.js';

export const APPLIED_HASH_ANNOTATION = 'tally.dev/applied-hash';

/** Counts every write request the operator sends, by verb and resource (a metric, and the bench's yardstick). */
export type WriteCounter = (verb: 'create' | 'apply' | 'patch' | 'delete', resource: string) => void;

const ssa = setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply);
const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/**
 * Remembers the last write per object so a reconcile that runs before the informer cache has caught
 * up with our own write does not send the same write again: it is skipped while the cache still
 * shows the resourceVersion we wrote over (or the one our write produced).
 */
class WriteMemo {
  private readonly last = new Map<string, { digest: string; before: string | undefined; after: string }>();

  fresh(key: string, digest: string, cachedRv: string | undefined): boolean {
    const e = this.last.get(key);
    return Boolean(e && e.digest === digest && (cachedRv === e.before || cachedRv === e.after));
  }

  record(key: string, digest: string, before: string | undefined, after: string | undefined): void {
    if (after) this.last.set(key, { digest, before, after });
  }

  forget(key: string): void {
    this.last.delete(key);
  }
}

export function digestOf(value: unknown): string {
  return createHash('sha256').update(canonical(value)).digest('hex').slice(0, 32);
}

/** Every write the operator makes, each one server-side apply under FIELD_MANAGER or a guarded patch. */
export class Kube {
  readonly core: CoreV1Api;
  readonly apps: AppsV1Api;
  readonly custom: CustomObjectsApi;
  private readonly statusMemo = new WriteMemo();
  private readonly childMemo = new WriteMemo();

  constructor(
    kc: KubeConfig,
    private readonly identity: string,
    private readonly countWrite: WriteCounter = () => {},
    private readonly log: Logger,
  ) {
    this.core = kc.makeApiClient(CoreV1Api);
    this.apps = kc.makeApiClient(AppsV1Api);
    this.custom = kc.makeApiClient(CustomObjectsApi);
  }

  /**
   * Writes `status` through the status subresource with server-side apply, only when it differs from
   * what the cache holds. Returns whether a write was sent.
   */
  async writeStatus(kind: KindInfo, obj: TallyResource, status: object): Promise<boolean> {
    const { name, namespace, resourceVersion } = obj.metadata;
    const key = `${kind.plural}/${namespace}/${name}`;
    const digest = digestOf(status);
    if (digestOf(obj.status ?? {}) === digest) return false;
    if (this.statusMemo.fresh(key, digest, resourceVersion)) return false;
    this.countWrite('apply', `${kind.plural}/status`);
    const res = (await this.custom.patchNamespacedCustomObjectStatus(
      {
        group: GROUP,
        version: VERSION,
        namespace,
        plural: kind.plural,
        name,
        body: { apiVersion: API_VERSION, kind: kind.kind, metadata: { name, namespace }, status },
        fieldManager: FIELD_MANAGER,
        force: true,
      },
      ssa,
    )) as KubernetesObject;
    this.statusMemo.record(key, digest, resourceVersion, res.metadata?.resourceVersion);
    return true;
  }

  /** Sets the finalizer list with a merge patch guarded by resourceVersion (409 on a stale cache). */
  async setFinalizers(kind: KindInfo, obj: TallyResource, finalizers: string[]): Promise<void> {
    const { name, namespace, resourceVersion } = obj.metadata;
    this.countWrite('patch', kind.plural);
    await this.custom.patchNamespacedCustomObject(
      {
        group: GROUP,
        version: VERSION,
        namespace,
        plural: kind.plural,
        name,
        body: { metadata: { finalizers, resourceVersion } },
        fieldManager: FIELD_MANAGER,
      },
      merge,
    );
  }

  /**
   * Server-side applies a child (Secret, Service, Deployment) unless the cached copy already carries
   * the digest of this desired state. The digest annotation makes the steady state free of writes.
   */
  async applyChild<T extends KubernetesObject>(
    resource: 'secrets' | 'services' | 'deployments',
    desired: T & { metadata: { name: string; namespace: string } },
    cached: KubernetesObject | undefined,
  ): Promise<boolean> {
    const digest = digestOf(desired);
    const { name, namespace } = desired.metadata;
    if (cached?.metadata?.annotations?.[APPLIED_HASH_ANNOTATION] === digest && !drifted(desired, cached))
      return false;
    const key = `${resource}/${namespace}/${name}`;
    if (this.childMemo.fresh(key, digest, cached?.metadata?.resourceVersion)) return false;
    const body = {
      ...desired,
      metadata: {
        ...desired.metadata,
        annotations: { ...desired.metadata.annotations, [APPLIED_HASH_ANNOTATION]: digest },
      },
    };
    const params = { name, namespace, body, fieldManager: FIELD_MANAGER, force: true };
    this.countWrite('apply', resource);
    const res: KubernetesObject =
      resource === 'secrets'
        ? await this.core.patchNamespacedSecret(params, ssa)
        : resource === 'services'
          ? await this.core.patchNamespacedService(params, ssa)
          : await this.apps.patchNamespacedDeployment(params, ssa);
    this.childMemo.record(key, digest, cached?.metadata?.resourceVersion, res.metadata?.resourceVersion);
    return true;
  }

  /** Creates a Secret that must never be overwritten by a stale reconcile (generated values). */
  async createSecret(
    secret: V1Secret & { metadata: { name: string; namespace: string } },
  ): Promise<V1Secret> {
    this.countWrite('create', 'secrets');
    // Carries the digest applyChild would write, so the next reconcile has nothing to apply.
    const annotations = { ...secret.metadata.annotations, [APPLIED_HASH_ANNOTATION]: digestOf(secret) };
    return this.core.createNamespacedSecret({
      namespace: secret.metadata.namespace,
      body: { ...secret, metadata: { ...secret.metadata, annotations } },
      fieldManager: FIELD_MANAGER,
    });
  }

  readSecret(namespace: string, name: string): Promise<V1Secret> {
    return this.core.readNamespacedSecret({ namespace, name });
  }

  /** A core/v1 Event on the resource. Failing to record one is logged, never fatal. */
  async event(
    obj: TallyResource,
    type: 'Normal' | 'Warning',
    reason: string,
    message: string,
  ): Promise<void> {
    const { name, namespace, uid, resourceVersion } = obj.metadata;
    const now = new Date();
    this.countWrite('create', 'events');
    try {
      await this.core.createNamespacedEvent({
        namespace,
        body: {
          metadata: { generateName: `${name}.`, namespace },
          involvedObject: {
            apiVersion: obj.apiVersion,
            kind: obj.kind,
            name,
            namespace,
            uid,
            resourceVersion,
          },
          type,
          reason,
          message: message.slice(0, 1024),
          source: { component: FIELD_MANAGER },
          reportingComponent: `tally.dev/${FIELD_MANAGER}`,
          reportingInstance: this.identity,
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
      });
    } catch (err) {
      this.log.warn(
        { object: `${namespace}/${name}`, reason, error: describeError(err) },
        'could not record event',
      );
    }
  }
}

/** Someone else changed what we own (e.g. edited a generated Secret's data): apply again. */
function drifted(desired: KubernetesObject, cached: KubernetesObject): boolean {
  const d = desired as { data?: unknown };
  const c = cached as { data?: unknown };
  if (d.data !== undefined && canonical(d.data) !== canonical(c.data ?? {})) return true;
  const refs = (o: KubernetesObject) => canonical((o.metadata?.ownerReferences ?? []).map((r) => r.uid));
  return refs(desired) !== refs(cached);
}
