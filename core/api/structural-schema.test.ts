import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { toStructuralSchema } from './structural-schema.js';

describe('toStructuralSchema', () => {
  it('turns integers into int64 without JavaScript safe-integer bounds, keeping real bounds', () => {
    const schema = toStructuralSchema(z.object({ count: z.int().min(0), any: z.int() }));
    expect(schema.properties).toEqual({
      count: { type: 'integer', minimum: 0, format: 'int64' },
      any: { type: 'integer', format: 'int64' },
    });
  });

  it('leaves date-time validation to the API server instead of a regex', () => {
    const schema = toStructuralSchema(z.object({ at: z.iso.datetime() }));
    expect(schema.properties).toEqual({ at: { type: 'string', format: 'date-time' } });
  });

  it('keeps descriptions, defaults and Kubernetes extensions, and drops what CRDs reject', () => {
    const schema = toStructuralSchema(
      z
        .object({
          mode: z.enum(['A', 'B']).default('A').describe('the mode'),
          counts: z.record(z.string(), z.int()),
        })
        .strict()
        .meta({ 'x-kubernetes-validations': [{ rule: 'true', message: 'm' }] }),
    );
    expect(schema).toEqual({
      type: 'object',
      properties: {
        mode: { type: 'string', enum: ['A', 'B'], default: 'A', description: 'the mode' },
        counts: { type: 'object', additionalProperties: { type: 'integer', format: 'int64' } },
      },
      required: ['counts'],
      'x-kubernetes-validations': [{ rule: 'true', message: 'm' }],
    });
  });

  it('refuses a schema JSON cannot express instead of emitting a silently wrong one', () => {
    expect(() => toStructuralSchema(z.object({ when: z.date() }))).toThrow();
  });
});
