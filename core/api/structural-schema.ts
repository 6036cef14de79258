import { z } from 'zod';

/** The subset of OpenAPI v3 a CustomResourceDefinition accepts (a "structural schema"). */
export type JSONSchemaProps = { [key: string]: unknown };

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** Keywords zod emits that the API server does not accept in a structural schema. */
const DROPPED_KEYWORDS = new Set(['$schema', 'propertyNames', 'id']);

/**
 * Converts a zod schema into a CRD structural schema. zod already speaks OpenAPI 3.0; what is left is
 * the Kubernetes dialect: int64 instead of JavaScript's safe-integer bounds, no regex beside the
 * date-time format (the API server checks it), no `additionalProperties: false`.
 */
export function toStructuralSchema(schema: z.ZodType): JSONSchemaProps {
  const raw = z.toJSONSchema(schema, { target: 'openapi-3.0', io: 'input', unrepresentable: 'throw' });
  return normalise(raw);
}

function normalise(node: JSONSchemaProps): JSONSchemaProps {
  const out: JSONSchemaProps = {};
  for (const [key, value] of Object.entries(node)) {
    if (DROPPED_KEYWORDS.has(key)) continue;
    if (key === 'additionalProperties' && value === false) continue;
    if (key === 'properties' && isRecord(value)) {
      out[key] = Object.fromEntries(
        Object.entries(value).map(([name, child]) => [name, normalise(asSchema(child))]),
      );
    } else if ((key === 'items' || key === 'additionalProperties') && isRecord(value)) {
      out[key] = normalise(value);
    } else if ((key === 'anyOf' || key === 'allOf' || key === 'oneOf') && Array.isArray(value)) {
      out[key] = value.map((child) => normalise(asSchema(child)));
    } else {
      out[key] = value;
    }
  }
  if (out.type === 'integer') {
    if (out.minimum === -MAX_SAFE) delete out.minimum;
    if (out.maximum === MAX_SAFE) delete out.maximum;
    out.format = 'int64';
  }
  if (out.format === 'date-time') delete out.pattern;
  return out;
}

function isRecord(value: unknown): value is JSONSchemaProps {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function asSchema(value: unknown): JSONSchemaProps {
  if (!isRecord(value)) throw new Error(`expected a schema object, got ${JSON.stringify(value)}`);
  return value;
}
