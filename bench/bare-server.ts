import Fastify from 'fastify';

/** Baseline (a): a bare fastify POST route with the default JSON parser, no verification, no storage. */
const app = Fastify({ logger: false });
app.post('/webhooks/stripe/:namespace/:name', () => ({ ok: true }));
const address = await app.listen({ host: '127.0.0.1', port: Number(process.argv[2] ?? 0) });
console.log(address);
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
