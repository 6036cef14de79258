import type {
  V1Deployment,
  V1PodSecurityContext,
  V1ResourceRequirements,
  V1SecurityContext,
  V1Service,
} from '@kubernetes/client-node';
import { z } from 'zod';
import { TallyConfig } from '../../core/config/tally-config.js';
import { CONFIG_HASH_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL } from '../resources.js';

export const CONFIG_SECRET = 'tally-config';
export const CONFIG_FILE = 'tally.yaml';
export const INGEST = 'tally-ingest';
export const FORWARDER = 'tally-forwarder';

// The listeners of the rendered configuration file, which sets none: the schema's defaults.
const listeners = TallyConfig.parse({});
export const WEBHOOK_PORT = listeners.ingest.port;
export const INGEST_ADMIN_PORT = listeners.ingest.adminPort;
export const FORWARDER_ADMIN_PORT = listeners.forwarder.adminPort;

/** Where the operator reads ingest's and the forwarder's admin APIs in a cluster: their Services. */
export const ingestAdminServiceURL = (namespace: string) =>
  `http://${INGEST}.${namespace}.svc:${INGEST_ADMIN_PORT}`;
export const forwarderAdminServiceURL = (namespace: string) =>
  `http://${FORWARDER}.${namespace}.svc:${FORWARDER_ADMIN_PORT}`;

// A Kubernetes quantity (apimachinery's resource.Quantity pattern): "100m", "512Mi", "1.5", "2e3".
const quantity = z
  .union([z.string(), z.number().nonnegative()])
  .transform(String)
  .pipe(
    z
      .string()
      .regex(
        /^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$/,
        'must be a Kubernetes quantity such as 100m, 0.5, 256Mi or 1Gi',
      ),
  );
const resourceList = z.record(z.string().min(1), quantity);

/** `resources` of a container: requests and limits only, as in a Deployment. */
export const ResourceRequirements = z.strictObject({
  requests: resourceList.optional(),
  limits: resourceList.optional(),
});

const object = z.record(z.string(), z.unknown());
const id = z.int().min(0);

/** A Pod's securityContext: the fields Kubernetes knows (values are checked by the API server). */
export const PodSecurityContext = z.strictObject({
  appArmorProfile: object.optional(),
  fsGroup: id.optional(),
  fsGroupChangePolicy: z.enum(['OnRootMismatch', 'Always']).optional(),
  runAsGroup: id.optional(),
  runAsNonRoot: z.boolean().optional(),
  runAsUser: id.optional(),
  seLinuxChangePolicy: z.string().optional(),
  seLinuxOptions: object.optional(),
  seccompProfile: object.optional(),
  supplementalGroups: z.array(id).optional(),
  supplementalGroupsPolicy: z.string().optional(),
  sysctls: z.array(object).optional(),
  windowsOptions: object.optional(),
});

/** A container's securityContext. */
export const ContainerSecurityContext = z.strictObject({
  allowPrivilegeEscalation: z.boolean().optional(),
  appArmorProfile: object.optional(),
  capabilities: z
    .strictObject({ add: z.array(z.string()).optional(), drop: z.array(z.string()).optional() })
    .optional(),
  privileged: z.boolean().optional(),
  procMount: z.string().optional(),
  readOnlyRootFilesystem: z.boolean().optional(),
  runAsGroup: id.optional(),
  runAsNonRoot: z.boolean().optional(),
  runAsUser: id.optional(),
  seLinuxOptions: object.optional(),
  seccompProfile: object.optional(),
  windowsOptions: object.optional(),
});

/** Defaults that pass the "restricted" Pod Security Standard; the image runs as 65532 with no writes. */
export const DEFAULT_POD_SECURITY_CONTEXT: V1PodSecurityContext = {
  runAsNonRoot: true,
  seccompProfile: { type: 'RuntimeDefault' },
};
export const DEFAULT_CONTAINER_SECURITY_CONTEXT: V1SecurityContext = {
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  capabilities: { drop: ['ALL'] },
};

/** How the ingest and forwarder Deployments are run: everything but their configuration. */
export interface WorkloadOptions {
  namespace: string;
  image: string;
  imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
  imagePullSecrets?: string[];
  ingestReplicas: number;
  forwarderReplicas: number;
  ingestResources?: V1ResourceRequirements;
  forwarderResources?: V1ResourceRequirements;
  podSecurityContext?: V1PodSecurityContext;
  containerSecurityContext?: V1SecurityContext;
  databaseUrlSecret: { name: string; key: string };
}

export type Component = 'ingest' | 'forwarder';
type Named<T> = T & { metadata: { name: string; namespace: string } };

export const labels = (component?: Component) => ({
  'app.kubernetes.io/name': 'tally',
  [MANAGED_BY_LABEL]: MANAGED_BY,
  ...(component ? { 'app.kubernetes.io/component': component } : {}),
});

const selector = (component: Component) => ({
  'app.kubernetes.io/name': 'tally',
  'app.kubernetes.io/component': component,
});

/**
 * The Services: ingest's webhooks (for an Ingress) and admin API (the operator reads it, Prometheus
 * scrapes it); the forwarder's admin API (MetaPixel status, metrics).
 */
export function service(namespace: string, component: Component): Named<V1Service> {
  const ports =
    component === 'ingest'
      ? [
          { name: 'webhooks', port: WEBHOOK_PORT, targetPort: 'webhooks', protocol: 'TCP' },
          { name: 'admin', port: INGEST_ADMIN_PORT, targetPort: 'admin', protocol: 'TCP' },
        ]
      : [{ name: 'admin', port: FORWARDER_ADMIN_PORT, targetPort: 'admin', protocol: 'TCP' }];
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: component === 'ingest' ? INGEST : FORWARDER, namespace, labels: labels(component) },
    spec: { selector: selector(component), ports },
  };
}

/** A Deployment running `tally <component> --config /etc/tally/tally.yaml` from the config Secret. */
export function deployment(
  opts: WorkloadOptions,
  component: Component,
  configHash: string,
): Named<V1Deployment> {
  const name = component === 'ingest' ? INGEST : FORWARDER;
  const probe = (path: string) => ({ httpGet: { path, port: 'admin' }, periodSeconds: 10 });
  const resources = component === 'ingest' ? opts.ingestResources : opts.forwarderResources;
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: opts.namespace, labels: labels(component) },
    spec: {
      replicas: component === 'ingest' ? opts.ingestReplicas : opts.forwarderReplicas,
      selector: { matchLabels: selector(component) },
      template: {
        metadata: {
          labels: { ...labels(component), ...selector(component) },
          annotations: { [CONFIG_HASH_ANNOTATION]: configHash },
        },
        spec: {
          automountServiceAccountToken: false,
          securityContext: opts.podSecurityContext ?? DEFAULT_POD_SECURITY_CONTEXT,
          ...(opts.imagePullSecrets?.length
            ? { imagePullSecrets: opts.imagePullSecrets.map((n) => ({ name: n })) }
            : {}),
          containers: [
            {
              name: component,
              image: opts.image,
              ...(opts.imagePullPolicy ? { imagePullPolicy: opts.imagePullPolicy } : {}),
              args: [component, '--config', `/etc/tally/${CONFIG_FILE}`],
              ports: [
                ...(component === 'ingest'
                  ? [{ name: 'webhooks', containerPort: WEBHOOK_PORT, protocol: 'TCP' }]
                  : []),
                {
                  name: 'admin',
                  containerPort: component === 'ingest' ? INGEST_ADMIN_PORT : FORWARDER_ADMIN_PORT,
                  protocol: 'TCP',
                },
              ],
              env: [
                {
                  name: 'DATABASE_URL',
                  valueFrom: {
                    secretKeyRef: { name: opts.databaseUrlSecret.name, key: opts.databaseUrlSecret.key },
                  },
                },
              ],
              readinessProbe: probe('/readyz'),
              livenessProbe: probe('/healthz'),
              ...(resources ? { resources } : {}),
              securityContext: opts.containerSecurityContext ?? DEFAULT_CONTAINER_SECURITY_CONTEXT,
              volumeMounts: [{ name: 'config', mountPath: '/etc/tally', readOnly: true }],
            },
          ],
          volumes: [{ name: 'config', secret: { secretName: CONFIG_SECRET } }],
        },
      },
    },
  };
}

/**
 * A JSON command-line value checked with one of the schemas above (resources, security contexts), or
 * an Error whose message names the bad field.
 */
export function parseJsonValue<T>(schema: z.ZodType<T>, text: string): T {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error('must be a JSON object');
  }
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  throw new Error(
    parsed.error.issues.map((i) => `${i.path.length ? `${i.path.join('.')}: ` : ''}${i.message}`).join('; '),
  );
}
