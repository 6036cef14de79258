import yaml from 'js-yaml';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../project-root.js';
import type { JSONSchemaProps } from '../structural-schema.js';
import { allCustomResourceDefinitions } from './crds.js';
import { KINDS } from './kinds.js';

/** Paths of schema properties that have no description; `kubectl explain` would show nothing for them. */
function undescribed(schema: JSONSchemaProps, at: string): string[] {
  const missing: string[] = [];
  const properties = (schema.properties ?? {}) as Record<string, JSONSchemaProps>;
  for (const [name, child] of Object.entries(properties)) {
    const here = `${at}.${name}`;
    if (name !== 'metadata' && typeof child.description !== 'string') missing.push(here);
    missing.push(...undescribed(child, here));
    if (child.items) missing.push(...undescribed(child.items as JSONSchemaProps, `${here}[]`));
  }
  return missing;
}

describe('CustomResourceDefinitions', () => {
  const crds = allCustomResourceDefinitions();

  it('describe every field, so kubectl explain teaches the API', () => {
    for (const crd of crds) {
      const root = crd.spec.versions[0]!.schema.openAPIV3Schema as JSONSchemaProps;
      expect(undescribed(root, crd.spec.names.kind)).toEqual([]);
    }
  });

  it('put all three kinds in the conversions category with a status subresource', () => {
    expect(crds.map((c) => c.spec.names.kind)).toEqual(['StripeIntegration', 'MetaPixel', 'CalIntegration']);
    for (const crd of crds) {
      expect(crd.spec.names.categories).toContain('conversions');
      expect(crd.spec.versions[0]!.subresources).toEqual({ status: {} });
    }
  });

  it('key conditions by type so server-side apply merges them one by one', () => {
    for (const crd of crds) {
      const status = crd.spec.versions[0]!.schema.openAPIV3Schema.properties.status;
      const conditions = (status.properties as Record<string, JSONSchemaProps>).conditions!;
      expect(conditions['x-kubernetes-list-type']).toBe('map');
      expect(conditions['x-kubernetes-list-map-keys']).toEqual(['type']);
    }
  });
});

describe('examples/', () => {
  const dir = path.join(projectRoot(), 'examples');
  const docs = readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .flatMap(
      (f) => yaml.loadAll(readFileSync(path.join(dir, f), 'utf8')) as { kind: string; spec?: unknown }[],
    );

  it('holds one resource of each kind', () => {
    expect(docs.map((d) => d.kind).filter((k) => KINDS.some((def) => def.kind === k))).toEqual([
      'StripeIntegration',
      'MetaPixel',
      'CalIntegration',
    ]);
  });

  it('passes the same zod schemas the CRDs are generated from', () => {
    for (const doc of docs) {
      const def = KINDS.find((k) => k.kind === doc.kind);
      if (def) expect(() => def.spec.parse(doc.spec), doc.kind).not.toThrow();
    }
  });
});
