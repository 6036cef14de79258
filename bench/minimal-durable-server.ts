import Fastify from 'fastify';
import pg from 'pg';
import Stripe from 'stripe';

/**
 * Baseline (d), the minimal durable route of ../shared/notes/performance.md §1 (mode d′), on which the
 * project's ingest targets were measured: raw body, Stripe signature check, and natural group commit
 * (no timer, at most two INSERTs in flight) into a two-column-key table with
 * `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING`, 2xx after COMMIT. No normalising, no money
 * movements, no outbox. Measured in the same run, it shows how much of the gap to the bare route the
 * machine itself leaves, and how much is Tally's write path.
 * Usage: node minimal-durable-server.js PORT DATABASE_URL SIGNING_SECRET
 */
const [port, url, secret] = process.argv.slice(2);
const pool = new pg.Pool({ connectionString: url, max: 4 });
pool.on('error', () => {});
await pool.query(`CREATE TABLE IF NOT EXISTS bench_events (
  event_id text PRIMARY KEY, payload jsonb NOT NULL, received_at timestamptz NOT NULL DEFAULT now(),
  status smallint NOT NULL DEFAULT 0, attempts integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now())`);

interface Waiter {
  id: string;
  payload: string;
  done: (err?: Error) => void;
}
let queue: Waiter[] = [];
let inFlight = 0;

function pump(): void {
  while (inFlight < 2 && queue.length > 0) {
    const batch = queue;
    queue = [];
    inFlight++;
    pool
      .query(
        'INSERT INTO bench_events (event_id, payload) SELECT * FROM unnest($1::text[], $2::jsonb[]) ON CONFLICT (event_id) DO NOTHING',
        [batch.map((w) => w.id), batch.map((w) => w.payload)],
      )
      .then(
        () => batch.forEach((w) => w.done()),
        (err: Error) => batch.forEach((w) => w.done(err)),
      )
      .finally(() => {
        inFlight--;
        pump();
      });
  }
}

const app = Fastify({ logger: false });
app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
app.post('/webhooks/stripe/:namespace/:name', async (req, reply) => {
  const raw = req.body as Buffer;
  let event: { id: string };
  try {
    event = Stripe.webhooks.constructEvent(raw, req.headers['stripe-signature'] as string, secret!);
  } catch {
    return reply.code(400).send({ error: 'bad_signature' });
  }
  await new Promise<void>((resolve, reject) => {
    queue.push({
      id: event.id,
      payload: raw.toString('utf8'),
      done: (err) => (err ? reject(err) : resolve()),
    });
    pump();
  });
  return { received: true };
});
const address = await app.listen({ host: '127.0.0.1', port: Number(port ?? 0) });
console.log(address);
process.on('SIGTERM', () => void app.close().then(() => pool.end().then(() => process.exit(0))));
