import { toStructuralSchema } from '../structural-schema.js';
import { API_VERSION, CATEGORY, GROUP, VERSION } from './common.js';
import { KINDS, type KindDefinition } from './kinds.js';

/** The CustomResourceDefinition of one kind, as written to crds/ and applied to clusters. */
export function customResourceDefinition(def: KindDefinition) {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: `${def.plural}.${GROUP}`,
      labels: { 'app.kubernetes.io/name': 'tally', 'app.kubernetes.io/part-of': 'tally' },
    },
    spec: {
      group: GROUP,
      names: {
        kind: def.kind,
        listKind: `${def.kind}List`,
        plural: def.plural,
        singular: def.singular,
        shortNames: def.shortNames,
        categories: [CATEGORY, 'tally'],
      },
      scope: 'Namespaced',
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: def.printerColumns,
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description: def.description,
              required: ['spec'],
              properties: {
                apiVersion: {
                  type: 'string',
                  description: `APIVersion defines the versioned schema of this object: ${API_VERSION}.`,
                },
                kind: { type: 'string', description: `Kind is the type of this object: ${def.kind}.` },
                metadata: { type: 'object' },
                spec: toStructuralSchema(def.spec),
                status: toStructuralSchema(def.status),
              },
            },
          },
        },
      ],
    },
  };
}

export type CustomResourceDefinition = ReturnType<typeof customResourceDefinition>;

export function allCustomResourceDefinitions(): CustomResourceDefinition[] {
  return KINDS.map(customResourceDefinition);
}

/** The file each CRD is checked in as, kubebuilder style: crds/<group>_<plural>.yaml. */
export function crdFileName(crd: CustomResourceDefinition): string {
  return `${GROUP}_${crd.spec.names.plural}.yaml`;
}
