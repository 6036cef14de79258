import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A local Stripe API for the webhook endpoints resource (https://docs.stripe.com/api/webhook_endpoints),
 * behaving as documented: Bearer auth per key, form-encoded bodies (`enabled_events[0]=…`,
 * `metadata[k]=v`), the `secret` only in the create response, at most 16 endpoints per account,
 * list pagination, and Stripe's error shapes `{error: {type, code, message}}` with 400/401/403/404/429.
 * Tests register keys with permissions and inject faults.
 */

export type Permission = 'write' | 'read' | 'none';

export interface FakeEndpoint {
  id: string;
  object: 'webhook_endpoint';
  api_version: string | null;
  application: null;
  created: number;
  description: string | null;
  enabled_events: string[];
  livemode: boolean;
  metadata: Record<string, string>;
  status: 'enabled' | 'disabled';
  url: string;
  /** Kept server-side; sent only in the create response. */
  secret: string;
  /** Not part of Stripe's object: recorded so tests can assert what was asked. */
  connect: boolean;
}

export interface RequestRecord {
  method: string;
  path: string;
  account: string | undefined;
  status: number;
  stripeVersion: string | undefined;
}

const MAX_ENDPOINTS = 16;

interface Account {
  endpoints: Map<string, FakeEndpoint>;
}

export class FakeStripeApi {
  readonly requests: RequestRecord[] = [];
  private readonly keys = new Map<string, { account: string; permission: Permission }>();
  private readonly accounts = new Map<string, Account>();
  private faults: { status: number | 'drop'; remaining: number }[] = [];
  private server: http.Server | undefined;
  private port = 0;

  /** Registers a restricted key on an account: `write` may manage webhook endpoints, `read` only list them. */
  addKey(key: string, account = 'acct_1Tally', permission: Permission = 'write'): this {
    this.keys.set(key, { account, permission });
    if (!this.accounts.has(account)) this.accounts.set(account, { endpoints: new Map() });
    return this;
  }

  /** The next `count` requests fail with this HTTP status (429, 500…) or a dropped connection. */
  failNext(status: number | 'drop', count = 1): this {
    this.faults.push({ status, remaining: count });
    return this;
  }

  clearFaults(): void {
    this.faults = [];
  }

  endpoints(account = 'acct_1Tally'): FakeEndpoint[] {
    return [...(this.accounts.get(account)?.endpoints.values() ?? [])];
  }

  /** Adds an endpoint someone else created (the dashboard), e.g. to fill the account to its limit. */
  seedEndpoint(account: string, url: string, metadata: Record<string, string> = {}): FakeEndpoint {
    const a = this.accounts.get(account) ?? { endpoints: new Map<string, FakeEndpoint>() };
    this.accounts.set(account, a);
    const e = newEndpoint({ url, enabled_events: ['*'], metadata }, null);
    a.endpoints.set(e.id, e);
    return e;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Writes (POST, DELETE) the fake answered, for asserting that a steady state calls nothing. */
  get writes(): number {
    return this.requests.filter((r) => r.method !== 'GET').length;
  }

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  /** Stops answering (connections refused) until start() again on the same port. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  async restart(): Promise<void> {
    this.server = http.createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(this.port, '127.0.0.1', resolve));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const url = new URL(req.url ?? '/', 'http://stripe.local');
    const record: RequestRecord = {
      method: req.method ?? 'GET',
      path: url.pathname,
      account: undefined,
      status: 0,
      stripeVersion: header(req, 'stripe-version'),
    };
    this.requests.push(record);
    const send = (status: number, body: unknown) => {
      record.status = status;
      res.writeHead(status, {
        'Content-Type': 'application/json',
        'Request-Id': `req_${randomBytes(7).toString('hex')}`,
      });
      res.end(JSON.stringify(body));
    };
    const fail = (status: number, type: string, message: string, code?: string, param?: string) =>
      send(status, { error: { type, message, ...(code ? { code } : {}), ...(param ? { param } : {}) } });

    const fault = this.faults[0];
    if (fault) {
      if (--fault.remaining <= 0) this.faults.shift();
      if (fault.status === 'drop') {
        record.status = -1;
        req.socket.destroy();
        return;
      }
      if (fault.status === 429)
        return fail(
          429,
          'invalid_request_error',
          'Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.',
          'rate_limit',
        );
      return fail(fault.status, 'api_error', 'Something went wrong on our end.');
    }

    const auth = header(req, 'authorization');
    const key = auth?.startsWith('Bearer ') ? auth.slice(7) : undefined;
    const who = key ? this.keys.get(key) : undefined;
    if (!who) {
      // Stripe shows the key redacted in this message: never the full key.
      return fail(
        401,
        'invalid_request_error',
        `Invalid API Key provided: ${key ? `${key.slice(0, 8)}${'*'.repeat(8)}${key.slice(-4)}` : '(none)'}`,
      );
    }
    record.account = who.account;
    const account = this.accounts.get(who.account)!;
    const write = record.method !== 'GET';
    if (who.permission === 'none' || (write && who.permission !== 'write')) {
      return fail(
        403,
        'invalid_request_error',
        `The provided key '${key!.slice(0, 8)}********${key!.slice(-4)}' does not have the required permissions for this endpoint on account '${who.account}'. Having the 'rak_webhook_${write ? 'write' : 'read'}' permission would allow this request to continue.`,
      );
    }
    const contentType = header(req, 'content-type') ?? '';
    const body = chunks.length > 0 ? Buffer.concat(chunks).toString('utf8') : '';
    if (body && !contentType.startsWith('application/x-www-form-urlencoded')) {
      return fail(
        400,
        'invalid_request_error',
        'Invalid request: the body must be application/x-www-form-urlencoded.',
      );
    }
    const params = parseForm(body);

    const parts = url.pathname.split('/').filter(Boolean);
    if (parts[0] !== 'v1' || parts[1] !== 'webhook_endpoints' || parts.length > 3) {
      return fail(
        404,
        'invalid_request_error',
        `Unrecognized request URL (${record.method}: ${url.pathname}).`,
      );
    }
    const id = parts[2];
    if (!id && record.method === 'GET') {
      const limit = Math.min(Number(url.searchParams.get('limit') ?? 10), 100);
      const after = url.searchParams.get('starting_after');
      const all = [...account.endpoints.values()].sort(
        (a, b) => b.created - a.created || b.id.localeCompare(a.id),
      );
      const start = after ? all.findIndex((e) => e.id === after) + 1 : 0;
      const page = all.slice(start, start + limit);
      return send(200, {
        object: 'list',
        data: page.map(visible),
        has_more: start + limit < all.length,
        url: '/v1/webhook_endpoints',
      });
    }
    if (!id && record.method === 'POST') {
      const url = params.url;
      const events = params.enabled_events;
      if (typeof url !== 'string' || !/^https?:\/\//.test(url))
        return fail(400, 'invalid_request_error', 'Invalid URL: must be a valid URL.', 'url_invalid', 'url');
      if (!Array.isArray(events) || events.length === 0)
        return fail(
          400,
          'invalid_request_error',
          'Missing required param: enabled_events.',
          'parameter_missing',
          'enabled_events',
        );
      if (account.endpoints.size >= MAX_ENDPOINTS) {
        return fail(
          400,
          'invalid_request_error',
          `You have reached the maximum of ${MAX_ENDPOINTS} test webhook endpoints.`,
        );
      }
      const endpoint = newEndpoint(
        params,
        typeof params.api_version === 'string' ? params.api_version : null,
      );
      account.endpoints.set(endpoint.id, endpoint);
      return send(200, { ...visible(endpoint), secret: endpoint.secret });
    }
    const endpoint = id ? account.endpoints.get(id) : undefined;
    if (!endpoint) {
      return fail(
        404,
        'invalid_request_error',
        `No such webhook endpoint: '${id}'`,
        'resource_missing',
        'id',
      );
    }
    if (record.method === 'GET') return send(200, visible(endpoint));
    if (record.method === 'DELETE') {
      account.endpoints.delete(endpoint.id);
      return send(200, { id: endpoint.id, object: 'webhook_endpoint', deleted: true });
    }
    if (record.method === 'POST') {
      for (const forbidden of ['api_version', 'connect']) {
        if (forbidden in params)
          return fail(
            400,
            'invalid_request_error',
            `Received unknown parameter: ${forbidden}`,
            'parameter_unknown',
            forbidden,
          );
      }
      if (typeof params.url === 'string') endpoint.url = params.url;
      if (Array.isArray(params.enabled_events)) endpoint.enabled_events = params.enabled_events.map(String);
      if (typeof params.description === 'string') endpoint.description = params.description;
      if (params.disabled !== undefined)
        endpoint.status = params.disabled === 'true' ? 'disabled' : 'enabled';
      if (params.metadata && typeof params.metadata === 'object' && !Array.isArray(params.metadata))
        endpoint.metadata = { ...endpoint.metadata, ...(params.metadata as Record<string, string>) };
      return send(200, visible(endpoint));
    }
    return fail(405, 'invalid_request_error', `Method ${record.method} is not allowed here.`);
  }
}

function newEndpoint(params: Record<string, unknown>, apiVersion: string | null): FakeEndpoint {
  return {
    id: `we_${randomBytes(12).toString('base64url').replace(/[-_]/g, 'x')}`,
    object: 'webhook_endpoint',
    api_version: apiVersion,
    application: null,
    created: Math.floor(Date.now() / 1000),
    description: typeof params.description === 'string' ? params.description : null,
    enabled_events: (params.enabled_events as unknown[]).map(String),
    livemode: false,
    metadata: (params.metadata as Record<string, string> | undefined) ?? {},
    status: 'enabled',
    url: String(params.url),
    secret: `whsec_${randomBytes(24).toString('hex')}`,
    connect: params.connect === 'true',
  };
}

function visible(e: FakeEndpoint) {
  const { secret: _secret, connect: _connect, ...rest } = e;
  return rest;
}

function header(req: http.IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Stripe's form encoding: `a=1`, `list[0]=x` / `list[]=x`, `map[key]=v`. */
export function parseForm(body: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [rawKey, value] of new URLSearchParams(body)) {
    const m = /^([^[]+)\[([^\]]*)\]$/.exec(rawKey);
    if (!m) {
      out[rawKey] = value;
      continue;
    }
    const [, name, sub] = m as unknown as [string, string, string];
    if (sub === '' || /^\d+$/.test(sub)) {
      const list = (Array.isArray(out[name]) ? out[name] : (out[name] = [])) as string[];
      if (sub === '') list.push(value);
      else list[Number(sub)] = value;
    } else {
      const map = (
        typeof out[name] === 'object' && out[name] !== null ? out[name] : (out[name] = {})
      ) as Record<string, string>;
      map[sub] = value;
    }
  }
  return out;
}
