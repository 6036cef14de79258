import { z } from 'zod';

export const GROUP = 'tally.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

/** Every Tally kind is listed by `kubectl get conversions`. */
export const CATEGORY = 'conversions';

/** A reference to one key of a Secret in the resource's own namespace (the cert-manager / external-secrets shape). */
export const SecretKeySelector = z
  .object({
    name: z
      .string()
      .min(1)
      .max(253)
      .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/)
      .describe('Name of the Secret, in the same namespace as this resource.'),
    key: z
      .string()
      .min(1)
      .max(253)
      .regex(/^[-._a-zA-Z0-9]+$/)
      .describe('Key within the Secret whose value is used.'),
  })
  .describe('A reference to a key of a Secret in the same namespace. Tally never stores the value itself.');
export type SecretKeySelector = z.infer<typeof SecretKeySelector>;

export const DisplayName = z
  .string()
  .min(1)
  .max(100)
  .describe('Human-readable name shown in dashboards and logs, e.g. "Acme checkout".');

/** metav1.Condition, field for field, with the API server's own validation. */
export const Condition = z
  .object({
    type: z
      .string()
      .min(1)
      .max(316)
      .regex(
        /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$/,
      )
      .describe('Type of condition in CamelCase, e.g. Ready, SecretProvisioned, WebhookRegistered.'),
    status: z.enum(['True', 'False', 'Unknown']).describe('Status of the condition: True, False or Unknown.'),
    observedGeneration: z
      .int()
      .min(0)
      .optional()
      .describe('The metadata.generation the condition was computed from.'),
    lastTransitionTime: z.iso
      .datetime()
      .describe('When the condition last changed from one status to another.'),
    reason: z
      .string()
      .min(1)
      .max(1024)
      .regex(/^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/)
      .describe('Programmatic identifier in CamelCase for the last transition, e.g. SecretNotFound.'),
    message: z.string().max(32768).describe('Human-readable details: what happened and what to fix.'),
  })
  .describe('The state of one aspect of the resource (the metav1.Condition shape).');
export type Condition = z.infer<typeof Condition>;

export const Conditions = z
  .array(Condition)
  .max(16)
  .meta({
    description:
      'Current state of the resource. Ready summarises the others; a False condition names what to fix in its message.',
    'x-kubernetes-list-type': 'map',
    'x-kubernetes-list-map-keys': ['type'],
  });

export const ObservedGeneration = z
  .int()
  .min(0)
  .describe(
    'The metadata.generation the controller last acted on; status is current when it equals metadata.generation.',
  );

export const Timestamp = z.iso.datetime();

/** Informational one-line summary (CloudNativePG style); conditions are the contract. */
export const Phase = z.string().max(128);

export const Message = z
  .string()
  .max(4096)
  .describe('Details about the phase: what Tally is doing or what to fix.');
