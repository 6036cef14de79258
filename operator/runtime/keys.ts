import type { KubernetesObject } from '@kubernetes/client-node';

/**
 * Queue keys are `namespace/name` (just `name` for cluster-scoped objects), the cache.MetaNamespaceKeyFunc
 * format of client-go: reconcilers receive a key and read the current object from the cache.
 */
export function objectKey(obj: KubernetesObject): string {
  const name = obj.metadata?.name;
  if (!name) throw new Error('object has no metadata.name, so it has no queue key');
  const namespace = obj.metadata?.namespace;
  return namespace ? `${namespace}/${name}` : name;
}

export function splitKey(key: string): { namespace: string | undefined; name: string } {
  const slash = key.indexOf('/');
  return slash < 0
    ? { namespace: undefined, name: key }
    : { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

/** The owner kind a child maps back to. The group is compared without the version, as controller-runtime does. */
export interface OwnerType {
  /** API group, e.g. `tally.dev`; empty for the core group. */
  group: string;
  kind: string;
}

/**
 * The queue key of the object that controls `child` (the ownerReference with `controller: true`) when it
 * is of `owner`'s type. Owner references are namespace-local, so the owner lives in the child's namespace.
 */
export function controllerOwnerKey(child: KubernetesObject, owner: OwnerType): string | undefined {
  const ref = child.metadata?.ownerReferences?.find((r) => r.controller === true);
  if (!ref || ref.kind !== owner.kind || groupOf(ref.apiVersion) !== owner.group) return undefined;
  const namespace = child.metadata?.namespace;
  return namespace ? `${namespace}/${ref.name}` : ref.name;
}

function groupOf(apiVersion: string): string {
  const slash = apiVersion.indexOf('/');
  return slash < 0 ? '' : apiVersion.slice(0, slash);
}
