import type { FastifyInstance } from 'fastify';
import type pg from 'pg';
import { z } from 'zod';
import { InvalidCursor, integrationStats, listConversions } from '../core/store/queries.js';

const Integration = z.string().regex(/^[a-z0-9][-a-z0-9.]*\/[a-z0-9][-a-z0-9.]*$/, 'must be namespace/name');
const Instant = z.iso.datetime({ offset: true }).transform((s) => new Date(s));

const ConversionsQuery = z.strictObject({
  integration: Integration.optional(),
  type: z
    .string()
    .regex(/^[a-z_]+$/)
    .optional(),
  since: Instant.optional(),
  until: Instant.optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
  cursor: z.string().max(200).optional(),
});

const StatsQuery = z.strictObject({ integration: Integration });

/** GET /api/v1/conversions and /api/v1/stats: for the operator's status, people and scripts. */
export function registerReadApi(app: FastifyInstance, pool: pg.Pool): void {
  app.get('/api/v1/conversions', async (req, reply) => {
    const q = ConversionsQuery.safeParse(req.query);
    if (!q.success) return reply.code(400).send(badQuery(q.error));
    try {
      return await listConversions(pool, q.data);
    } catch (err) {
      if (err instanceof InvalidCursor)
        return reply.code(400).send({ error: 'invalid_query', message: 'cursor: invalid' });
      return unavailable(reply, err);
    }
  });

  app.get('/api/v1/stats', async (req, reply) => {
    const q = StatsQuery.safeParse(req.query);
    if (!q.success) return reply.code(400).send(badQuery(q.error));
    try {
      return await integrationStats(pool, q.data.integration);
    } catch (err) {
      return unavailable(reply, err);
    }
  });
}

function badQuery(error: z.ZodError) {
  return {
    error: 'invalid_query',
    message: error.issues.map((i) => `${i.path.join('.') || 'query'}: ${i.message}`).join('; '),
  };
}

function unavailable(reply: { code: (n: number) => { send: (b: unknown) => unknown } }, err: unknown) {
  return reply.code(503).send({ error: 'database_unavailable', message: (err as Error).message });
}
