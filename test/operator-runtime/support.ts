import { CustomObjectsApi, PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../../operator/runtime/logger.js';

export const group = 'tally.dev';
export const version = 'v1alpha1';

export interface LogEntry {
  level: 'debug' | 'info' | 'warn' | 'error';
  fields: Record<string, unknown>;
  message: string;
}

/** A Logger that keeps what it was told, so tests can assert what was (not) logged. */
export function captureLogger(): { log: Logger; entries: LogEntry[] } {
  const entries: LogEntry[] = [];
  const at =
    (level: LogEntry['level']) =>
    (fields: object, message: string): void => {
      entries.push({ level, fields: fields as Record<string, unknown>, message });
    };
  return { log: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }, entries };
}

/** A valid CalIntegration (its spec needs only a display name). */
export function calIntegration(namespace: string, name: string, displayName: string) {
  return {
    apiVersion: `${group}/${version}`,
    kind: 'CalIntegration',
    metadata: { name, namespace },
    spec: { displayName },
  };
}

export function calIntegrations(kc: KubeConfig, namespace: string) {
  const api = kc.makeApiClient(CustomObjectsApi);
  const plural = 'calintegrations';
  return {
    create: (name: string, displayName: string) =>
      api.createNamespacedCustomObject({
        group,
        version,
        namespace,
        plural,
        body: calIntegration(namespace, name, displayName),
      }),
    rename: (name: string, displayName: string) =>
      api.patchNamespacedCustomObject(
        { group, version, namespace, plural, name, body: { spec: { displayName } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      ),
    delete: (name: string) => api.deleteNamespacedCustomObject({ group, version, namespace, plural, name }),
  };
}
