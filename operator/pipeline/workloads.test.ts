import { describe, expect, it } from 'vitest';
import { TallyConfig } from '../../core/config/tally-config.js';
import {
  ContainerSecurityContext,
  deployment,
  forwarderAdminServiceURL,
  ingestAdminServiceURL,
  parseJsonValue,
  PodSecurityContext,
  ResourceRequirements,
  service,
  type WorkloadOptions,
} from './workloads.js';

const opts: WorkloadOptions = {
  namespace: 'tally-system',
  image: 'registry.example/tally:1.2.3',
  ingestReplicas: 2,
  forwarderReplicas: 1,
  databaseUrlSecret: { name: 'db', key: 'url' },
};

describe('ingest and forwarder workloads', () => {
  it('listen where the rendered configuration (schema defaults) makes the processes listen', () => {
    const defaults = TallyConfig.parse({});
    const port = (component: 'ingest' | 'forwarder', name: string) =>
      deployment(opts, component, 'h').spec!.template.spec!.containers[0]!.ports!.find((p) => p.name === name)
        ?.containerPort;
    expect(port('ingest', 'webhooks')).toBe(defaults.ingest.port);
    expect(port('ingest', 'admin')).toBe(defaults.ingest.adminPort);
    expect(port('forwarder', 'admin')).toBe(defaults.forwarder.adminPort);
    expect(service('tally-system', 'forwarder').spec!.ports).toEqual([
      { name: 'admin', port: defaults.forwarder.adminPort, targetPort: 'admin', protocol: 'TCP' },
    ]);
    expect(forwarderAdminServiceURL('ops')).toBe(
      `http://tally-forwarder.ops.svc:${defaults.forwarder.adminPort}`,
    );
    expect(ingestAdminServiceURL('ops')).toBe(`http://tally-ingest.ops.svc:${defaults.ingest.adminPort}`);
  });

  it('each Service selects exactly the pods of its Deployment', () => {
    for (const component of ['ingest', 'forwarder'] as const) {
      const d = deployment(opts, component, 'h');
      const s = service('tally-system', component);
      expect(s.metadata.name).toBe(d.metadata.name);
      expect(s.spec!.selector).toEqual(d.spec!.selector.matchLabels);
      expect(d.spec!.template.metadata!.labels).toMatchObject(s.spec!.selector!);
    }
  });

  it('are non-root with a read-only root filesystem unless told otherwise', () => {
    const pod = deployment(opts, 'ingest', 'h').spec!.template.spec!;
    expect(pod.securityContext).toEqual({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    expect(pod.containers[0]!.securityContext).toEqual({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    });
    expect(pod.containers[0]!.resources).toBeUndefined();
    expect(pod.imagePullSecrets).toBeUndefined();
    expect(pod.containers[0]!.imagePullPolicy).toBeUndefined();
  });

  it('take resources per component, security contexts, pull policy and pull secrets', () => {
    const custom: WorkloadOptions = {
      ...opts,
      imagePullPolicy: 'Always',
      imagePullSecrets: ['regcred'],
      ingestResources: { requests: { cpu: '250m' } },
      forwarderResources: { limits: { memory: '256Mi' } },
      podSecurityContext: { runAsNonRoot: true, runAsUser: 10001 },
      containerSecurityContext: { readOnlyRootFilesystem: true },
    };
    const ingest = deployment(custom, 'ingest', 'h').spec!.template.spec!;
    const forwarder = deployment(custom, 'forwarder', 'h').spec!.template.spec!;
    expect(ingest.containers[0]!.resources).toEqual({ requests: { cpu: '250m' } });
    expect(forwarder.containers[0]!.resources).toEqual({ limits: { memory: '256Mi' } });
    for (const pod of [ingest, forwarder]) {
      expect(pod.securityContext).toEqual({ runAsNonRoot: true, runAsUser: 10001 });
      expect(pod.containers[0]!.securityContext).toEqual({ readOnlyRootFilesystem: true });
      expect(pod.imagePullSecrets).toEqual([{ name: 'regcred' }]);
      expect(pod.containers[0]!.imagePullPolicy).toBe('Always');
    }
  });
});

describe('option schemas', () => {
  it('accept Kubernetes quantities, numbers included, and refuse anything else by name', () => {
    expect(ResourceRequirements.parse({ requests: { cpu: 0.5, memory: '256Mi' }, limits: {} })).toEqual({
      requests: { cpu: '0.5', memory: '256Mi' },
      limits: {},
    });
    const bad = ResourceRequirements.safeParse({ requests: { memory: '256 MB' } });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues[0]).toMatchObject({
      path: ['requests', 'memory'],
      message: expect.stringContaining('Kubernetes quantity') as string,
    });
    expect(ResourceRequirements.safeParse({ request: { cpu: '1' } }).success).toBe(false);
  });

  it('refuse unknown security context fields (a typo would otherwise fail every apply)', () => {
    expect(PodSecurityContext.safeParse({ runAsNonRoot: true, fsGroup: 65532 }).success).toBe(true);
    expect(PodSecurityContext.safeParse({ runAsNonroot: true }).success).toBe(false);
    expect(
      ContainerSecurityContext.safeParse({ readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } })
        .success,
    ).toBe(true);
    expect(ContainerSecurityContext.safeParse({ readOnlyRootFileSystem: true }).success).toBe(false);
    expect(ContainerSecurityContext.safeParse({ runAsUser: -1 }).success).toBe(false);
  });
});

describe('JSON command-line values', () => {
  it('parse and check, or say what is wrong', () => {
    expect(parseJsonValue(ResourceRequirements, '{"limits":{"memory":"512Mi"}}')).toEqual({
      limits: { memory: '512Mi' },
    });
    expect(() => parseJsonValue(ResourceRequirements, "{limits: '1'}")).toThrow('must be a JSON object');
    expect(() => parseJsonValue(PodSecurityContext, '{"runAsUser": "root"}')).toThrow(/^runAsUser: /);
  });
});
