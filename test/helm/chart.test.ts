import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import yaml from 'js-yaml';
import type {
  V1Container,
  V1Deployment,
  V1PodSpec,
  V1PolicyRule,
  V1Service,
  V1StatefulSet,
} from '@kubernetes/client-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../../core/project-root.js';
import { deployment, service } from '../../operator/pipeline/workloads.js';
import { createTestNamespace, kubectl } from '../env/context.js';
import { helm, resolveHelm } from '../env/helm.js';

const chart = path.join(projectRoot(), 'charts', 'tally');
const allOnValues = path.join(chart, 'ci', 'all-on-values.yaml');

type Obj = {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  [key: string]: unknown;
};

async function render(namespace: string, args: string[] = []): Promise<{ text: string; objects: Obj[] }> {
  const r = await helm(['template', 'tally', chart, '--namespace', namespace, ...args]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return { text: r.stdout, objects: (yaml.loadAll(r.stdout) as (Obj | null)[]).filter((o) => o !== null) };
}

const find = <T = Obj>(objects: Obj[], kind: string, name: string, namespace?: string) => {
  const found = objects.find(
    (o) => o.kind === kind && o.metadata.name === name && (!namespace || o.metadata.namespace === namespace),
  );
  if (!found) throw new Error(`no ${kind} ${name} in the rendered chart`);
  return found as unknown as T & Obj;
};
const all = (objects: Obj[], kind: string) => objects.filter((o) => o.kind === kind);
const operatorContainer = (objects: Obj[]) =>
  find<V1Deployment>(objects, 'Deployment', 'tally-operator').spec!.template.spec!.containers[0]!;
/** The value of `--flag=value` among the operator's arguments. */
const flag = (container: V1Container, name: string) =>
  container.args?.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);

/** What a label selector (matchLabels + In expressions) selects, evaluated on labels. */
function selects(
  selector: {
    matchLabels?: Record<string, string>;
    matchExpressions?: { key: string; operator: string; values: string[] }[];
  },
  labels: Record<string, string> = {},
): boolean {
  return (
    Object.entries(selector.matchLabels ?? {}).every(([k, v]) => labels[k] === v) &&
    (selector.matchExpressions ?? []).every((e) => e.operator === 'In' && e.values.includes(labels[e.key]!))
  );
}

async function serverDryRun(text: string) {
  return kubectl(
    ['apply', '--server-side', '--dry-run=server', '--field-manager=helm-test', '-f', '-'],
    text,
  );
}

describe('the Helm chart (charts/tally)', () => {
  let ns: string;
  let watched: string;
  let defaults: Obj[];
  let allOn: Obj[];
  let rbacRules: { watched: V1PolicyRule[]; own: V1PolicyRule[] };

  beforeAll(async () => {
    const { monitoringCrds } = await resolveHelm();
    // ServiceMonitor and PrometheusRule need prometheus-operator's CRDs in the API server.
    for (const file of monitoringCrds) {
      const applied = await kubectl(['apply', '--server-side', '--field-manager=helm-test', '-f', file]);
      expect(applied.stderr).toBe('');
    }
    const established = await kubectl([
      'wait',
      '--for=condition=Established',
      '--timeout=60s',
      'crd/servicemonitors.monitoring.coreos.com',
      'crd/prometheusrules.monitoring.coreos.com',
    ]);
    expect(established.code, established.stderr).toBe(0);
    ns = await createTestNamespace('helm');
    watched = await createTestNamespace('helm-watched');
    // Pod Security Admission warns about any pod template that breaks the "restricted" standard.
    for (const n of [ns, watched]) {
      const labelled = await kubectl(['label', 'namespace', n, 'pod-security.kubernetes.io/warn=restricted']);
      expect(labelled.code, labelled.stderr).toBe(0);
    }
    defaults = (await render(ns)).objects;
    allOn = (await render(ns, ['-f', allOnValues, '--set', `operator.watchNamespace=${watched}`])).objects;
    rbacRules = yaml.load(
      await readFile(path.join(chart, 'rbac', 'operator.yaml'), 'utf8'),
    ) as typeof rbacRules;
  }, 30 * 60_000); // a machine's first run builds helm

  it('passes helm lint --strict with the default values and with every toggle on', async () => {
    for (const args of [[], ['-f', allOnValues]]) {
      const r = await helm(['lint', '--strict', chart, ...args]);
      expect(r.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
      expect(r.stdout).not.toMatch(/\[(WARNING|ERROR)\]/);
      expect(r.code).toBe(0);
    }
  });

  it('rejects a bad value with its path (values.schema.json)', async () => {
    const lint = await helm(['lint', '--strict', chart, '--set', 'ingest.replicas=-1']);
    expect(lint.code).toBe(1);
    expect(lint.stdout).toContain("at '/ingest/replicas': minimum: got -1, want 0");
    const typo = await helm(['template', 'tally', chart, '--set', 'forwarder.replica=2']);
    expect(typo.code).toBe(1);
    expect(typo.stderr).toContain("at '/forwarder': additional properties 'replica' not allowed");
    const url = await helm(['template', 'tally', chart, '--set', 'webhook.publicBaseUrl=hooks.example.com']);
    expect(url.code).toBe(1);
    expect(url.stderr).toContain("at '/webhook/publicBaseUrl'");
  });

  it('applies with a server-side dry run, CRDs included, with no warning (Pod Security "restricted" included)', async () => {
    for (const args of [[], ['-f', allOnValues, '--set', `operator.watchNamespace=${watched}`]]) {
      const { text, objects } = await render(ns, ['--include-crds', ...args]);
      const r = await serverDryRun(text);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout.trim().split('\n')).toHaveLength(objects.length);
      expect(r.stdout).toContain(
        'customresourcedefinition.apiextensions.k8s.io/stripeintegrations.tally.dev',
      );
    }
  });

  it('the dry run catches a pod template that breaks "restricted" (the check above has teeth)', async () => {
    const { text } = await render(ns, ['--set', 'podSecurityContext.runAsNonRoot=false']);
    const r = await serverDryRun(text);
    expect(r.stderr).toMatch(/would violate PodSecurity "restricted:latest": .*runAsNonRoot != true/);
  });

  it('runs every pod non-root with a read-only root filesystem, and hands the same contexts to the operator', () => {
    for (const objects of [defaults, allOn]) {
      const pods: V1PodSpec[] = [
        ...all(objects, 'Deployment').map((d) => (d as unknown as V1Deployment).spec!.template.spec!),
        ...all(objects, 'StatefulSet').map((s) => (s as unknown as V1StatefulSet).spec!.template.spec!),
      ];
      expect(pods.length).toBeGreaterThan(0);
      for (const pod of pods) {
        expect(pod.securityContext?.runAsNonRoot).toBe(true);
        expect(pod.securityContext?.seccompProfile).toEqual({ type: 'RuntimeDefault' });
        for (const c of pod.containers) {
          expect(c.securityContext).toMatchObject({
            readOnlyRootFilesystem: true,
            allowPrivilegeEscalation: false,
            capabilities: { drop: ['ALL'] },
          });
        }
      }
      const operator = operatorContainer(objects);
      const operatorPod = find<V1Deployment>(objects, 'Deployment', 'tally-operator').spec!.template.spec!;
      expect(JSON.parse(flag(operator, 'pod-security-context')!)).toEqual(operatorPod.securityContext);
      expect(JSON.parse(flag(operator, 'container-security-context')!)).toEqual(operator.securityContext);
    }
  });

  it('binds exactly the rules of rbac/operator.yaml: cluster-wide, or in the watched namespace', () => {
    const sa = [{ kind: 'ServiceAccount', name: 'tally-operator', namespace: ns }];
    expect(find(defaults, 'ServiceAccount', 'tally-operator', ns)).toBeDefined();
    expect(find(defaults, 'ClusterRole', `tally-operator-${ns}`).rules).toEqual(rbacRules.watched);
    expect(find(defaults, 'ClusterRoleBinding', `tally-operator-${ns}`)).toMatchObject({
      roleRef: { kind: 'ClusterRole', name: `tally-operator-${ns}` },
      subjects: sa,
    });
    expect(find(defaults, 'Role', 'tally-operator', ns).rules).toEqual(rbacRules.own);
    expect(find(defaults, 'RoleBinding', 'tally-operator', ns)).toMatchObject({
      roleRef: { kind: 'Role', name: 'tally-operator' },
      subjects: sa,
    });
    expect(find(defaults, 'Deployment', 'tally-operator')).toMatchObject({
      spec: { template: { spec: { serviceAccountName: 'tally-operator' } } },
    });

    expect(all(allOn, 'ClusterRole')).toEqual([]);
    expect(all(allOn, 'ClusterRoleBinding')).toEqual([]);
    expect(find(allOn, 'Role', 'tally-operator-watched', watched).rules).toEqual(rbacRules.watched);
    expect(find(allOn, 'RoleBinding', 'tally-operator-watched', watched)).toMatchObject({
      roleRef: { kind: 'Role', name: 'tally-operator-watched' },
      subjects: sa,
    });
    expect(find(allOn, 'Role', 'tally-operator', ns).rules).toEqual(rbacRules.own);
    expect(flag(operatorContainer(allOn), 'watch-namespace')).toBe(watched);
  });

  it('points the workloads at the DATABASE_URL Secret: the bundled PostgreSQL, or the existing one', () => {
    expect(flag(operatorContainer(defaults), 'database-url-secret')).toBe('tally-database/url');
    const password = Buffer.from(
      find<{ data: { password: string } }>(defaults, 'Secret', 'tally-postgresql').data.password,
      'base64',
    ).toString();
    expect(password).toMatch(/^[A-Za-z0-9]{32}$/);
    const url = Buffer.from(
      find<{ data: { url: string } }>(defaults, 'Secret', 'tally-database').data.url,
      'base64',
    );
    expect(url.toString()).toBe(
      `postgres://tally:${password}@tally-postgresql.${ns}.svc:5432/tally?sslmode=disable`,
    );
    const postgres = find<V1StatefulSet>(defaults, 'StatefulSet', 'tally-postgresql');
    const env = postgres.spec!.template.spec!.containers[0]!.env!;
    expect(env.find((e) => e.name === 'POSTGRES_PASSWORD')?.valueFrom?.secretKeyRef).toEqual({
      name: 'tally-postgresql',
      key: 'password',
    });
    expect(postgres.spec!.template.spec!.containers[0]!.image).toBe('postgres:17');
    expect(find(defaults, 'Service', 'tally-postgresql')).toBeDefined();

    expect(flag(operatorContainer(allOn), 'database-url-secret')).toBe('production-database/DATABASE_URL');
    expect(all(allOn, 'StatefulSet')).toEqual([]);
    expect(all(allOn, 'Secret')).toEqual([]);
  });

  it('passes image, pull secrets, replicas, resources and the public base URL to the operator', () => {
    const dflt = operatorContainer(defaults);
    expect(dflt.image).toBe('ghcr.io/tally-dev/tally:0.1.0');
    expect(flag(dflt, 'image')).toBe('ghcr.io/tally-dev/tally:0.1.0');
    expect(flag(dflt, 'public-base-url')).toBeUndefined();
    expect(flag(dflt, 'ingest-replicas')).toBe('2');
    expect(JSON.parse(flag(dflt, 'ingest-resources')!)).toEqual({
      requests: { cpu: '100m', memory: '128Mi' },
      limits: { memory: '512Mi' },
    });

    const on = operatorContainer(allOn);
    const image =
      'registry.example.com/tally:1.2.3@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef';
    expect(on.image).toBe(image);
    expect(flag(on, 'image')).toBe(image);
    expect(flag(on, 'image-pull-policy')).toBe('Always');
    expect(flag(on, 'image-pull-secret')).toBe('regcred');
    expect(flag(on, 'ingest-replicas')).toBe('3');
    expect(flag(on, 'forwarder-replicas')).toBe('2');
    expect(JSON.parse(flag(on, 'ingest-resources')!)).toEqual({
      requests: { cpu: '250m', memory: '256Mi' },
      limits: { cpu: '1', memory: '1Gi' },
    });
    expect(flag(on, 'public-base-url')).toBe('https://hooks.example.com/tally');
    expect(on.args).toContain('--stripe-api-base=http://stripe-mock.example:12111');
  });

  it('routes the Ingress to the webhooks port of the Service the operator renders; its host is the default base URL', async () => {
    const ingest = service(ns, 'ingest');
    const ingress = find<{ spec: { rules: { host: string; http: { paths: unknown[] } }[] } }>(
      allOn,
      'Ingress',
      'tally-webhooks',
    );
    expect(ingress.spec.rules).toEqual([
      {
        host: 'hooks.example.com',
        http: {
          paths: [
            {
              path: '/webhooks/',
              pathType: 'Prefix',
              backend: { service: { name: ingest.metadata.name, port: { name: 'webhooks' } } },
            },
          ],
        },
      },
    ]);
    expect(ingest.spec!.ports!.map((p) => p.name)).toContain('webhooks');
    const { objects } = await render(ns, [
      '--set',
      'webhook.ingress.enabled=true',
      '--set',
      'webhook.ingress.host=hooks.example.org',
    ]);
    expect(flag(operatorContainer(objects), 'public-base-url')).toBe('http://hooks.example.org');
    expect(all(defaults, 'Ingress')).toEqual([]);
  });

  it('has a PodDisruptionBudget for each component with more than one replica, selecting its pods', async () => {
    const names = (objects: Obj[]) => all(objects, 'PodDisruptionBudget').map((p) => p.metadata.name);
    expect(names(defaults)).toEqual(['tally-ingest']);
    expect(names(allOn).sort()).toEqual(['tally-forwarder', 'tally-ingest', 'tally-operator']);
    const pdb = find<{ spec: { selector: { matchLabels: Record<string, string> } } }>(
      defaults,
      'PodDisruptionBudget',
      'tally-ingest',
    );
    // The ingest pods come from the operator's Deployment: the budget must select its pod labels.
    const pods = deployment(
      {
        namespace: ns,
        image: 'x',
        ingestReplicas: 2,
        forwarderReplicas: 1,
        databaseUrlSecret: { name: 'a', key: 'b' },
      },
      'ingest',
      'h',
    ).spec!.template.metadata!.labels;
    expect(selects(pdb.spec.selector, pods)).toBe(true);
    const off = await render(ns, ['--set', 'podDisruptionBudget.enabled=false', '-f', allOnValues]);
    expect(names(off.objects)).toEqual([]);
  });

  it('scrapes the admin port of the operator, ingest and forwarder Services (ServiceMonitor)', () => {
    const monitor = find<{
      spec: {
        selector: Parameters<typeof selects>[0];
        endpoints: { port: string; path: string }[];
        namespaceSelector: unknown;
      };
    }>(allOn, 'ServiceMonitor', 'tally');
    expect(monitor.metadata.labels).toMatchObject({ release: 'kube-prometheus-stack' });
    expect(monitor.spec.namespaceSelector).toEqual({ matchNames: [ns] });
    expect(monitor.spec.endpoints).toEqual([
      { port: 'admin', path: '/metrics', interval: '15s', scrapeTimeout: '10s' },
    ]);
    const services: V1Service[] = [
      find<V1Service>(allOn, 'Service', 'tally-operator'),
      service(ns, 'ingest'),
      service(ns, 'forwarder'),
    ];
    for (const s of services) {
      expect(selects(monitor.spec.selector, s.metadata!.labels), s.metadata!.name).toBe(true);
      expect(s.spec!.ports!.map((p) => p.name)).toContain('admin');
    }
    expect(
      selects(
        monitor.spec.selector,
        find<V1Service>(defaults, 'Service', 'tally-postgresql').metadata.labels,
      ),
    ).toBe(false);
    expect(all(defaults, 'ServiceMonitor')).toEqual([]);
  });

  it('ships prometheus/rules.yaml unchanged as the PrometheusRule', async () => {
    const rule = find<{ spec: unknown }>(allOn, 'PrometheusRule', 'tally');
    const rules = yaml.load(await readFile(path.join(chart, 'prometheus', 'rules.yaml'), 'utf8'));
    expect(rule.spec).toEqual(rules);
    expect(all(defaults, 'PrometheusRule')).toEqual([]);
  });

  it('ships dashboards/tally.json as a ConfigMap for the Grafana sidecar, with its label configurable', async () => {
    const file = path.join(chart, 'dashboards', 'tally.json');
    if (!existsSync(file)) {
      expect(all(defaults, 'ConfigMap')).toEqual([]); // no dashboard in this checkout: nothing to ship
      return;
    }
    const map = find<{ data: Record<string, string> }>(allOn, 'ConfigMap', 'tally-dashboard');
    expect(JSON.parse(map.data['tally.json']!)).toEqual(JSON.parse(await readFile(file, 'utf8')));
    expect(map.metadata.labels).toMatchObject({ grafana_dashboard: '1' });
    expect(map.metadata.annotations).toEqual({ grafana_folder: 'Tally' });
    const relabelled = await render(ns, [
      '--set',
      'grafanaDashboard.labels.grafana_dashboard=null',
      '--set-string',
      'grafanaDashboard.labels.dashboards=tally',
      '--set',
      'grafanaDashboard.namespace=monitoring',
    ]);
    const moved = find(relabelled.objects, 'ConfigMap', 'tally-dashboard', 'monitoring');
    expect(moved.metadata.labels).toMatchObject({ dashboards: 'tally' });
    expect(moved.metadata.labels).not.toHaveProperty('grafana_dashboard');
    const off = await render(ns, ['--set', 'grafanaDashboard.enabled=false']);
    expect(all(off.objects, 'ConfigMap')).toEqual([]);
  });

  it('documents every value in charts/tally/README.md', async () => {
    const readme = await readFile(path.join(chart, 'README.md'), 'utf8');
    const values = yaml.load(await readFile(path.join(chart, 'values.yaml'), 'utf8')) as Record<
      string,
      unknown
    >;
    const leaves: string[][] = [];
    const walk = (v: unknown, at: string[]) => {
      if (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length > 0)
        for (const [k, child] of Object.entries(v)) walk(child, [...at, k]);
      else leaves.push(at);
    };
    walk(values, []);
    // A value counts as documented when it, or the map holding it (resources, labels…), has a row.
    const undocumented = leaves
      .filter((leaf) => !leaf.some((_, i) => readme.includes(`| \`${leaf.slice(0, i + 1).join('.')}\` |`)))
      .map((leaf) => leaf.join('.'));
    expect(undocumented).toEqual([]);
    expect(leaves.length).toBeGreaterThan(40);
  });
});
