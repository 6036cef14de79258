import Fastify from 'fastify';
import type Stripe from 'stripe';
import { rid } from '../../../core/samples/stripe.js';

/**
 * A local Stripe API for `GET /v1/customers/{id}`, behaving as Stripe documents it
 * (https://docs.stripe.com/api/customers/retrieve, https://docs.stripe.com/api/errors,
 * https://docs.stripe.com/rate-limits): Bearer authentication with secret or restricted keys, the
 * `Stripe-Account` header for connected accounts, `{error: {type, code, message}}` bodies, 404
 * resource_missing, deleted customers as `{id, object, deleted: true}`, and injected 429s with Retry-After.
 */

type Shape<T> = T extends (infer U)[] ? Shape<U>[] : T extends object ? { [K in keyof T]?: Shape<T[K]> } : T;

/** A customer as the API returns it, checked against the stripe package's types. */
export function customer(o: Shape<Stripe.Customer> = {}) {
  return {
    id: rid('cus'),
    object: 'customer',
    address: null,
    balance: 0,
    created: Math.floor(Date.now() / 1000) - 3600,
    currency: 'usd',
    default_source: null,
    delinquent: false,
    description: null,
    email: 'jenny.rosen@example.com',
    invoice_prefix: 'ACME0001',
    invoice_settings: {
      custom_fields: null,
      default_payment_method: null,
      footer: null,
      rendering_options: null,
    },
    livemode: false,
    metadata: {},
    name: 'Jenny Rosen',
    phone: null,
    preferred_locales: [],
    shipping: null,
    tax_exempt: 'none',
    test_clock: null,
    ...o,
  } satisfies Shape<Stripe.Customer>;
}

export interface KeyGrant {
  /** Whether the (restricted) key may read customers; false answers 403. */
  customersRead: boolean;
}

export interface CustomerRequest {
  customerId: string;
  account: string | undefined;
  key: string | undefined;
  status: number;
}

export class FakeStripeState {
  /** Customers by account ('' = the platform account itself). */
  readonly customers = new Map<string, Map<string, Record<string, unknown>>>();
  readonly keys = new Map<string, KeyGrant>();
  readonly requests: CustomerRequest[] = [];
  private rateLimited: { remaining: number; retryAfterSeconds: number }[] = [];

  addKey(key: string, grant: KeyGrant = { customersRead: true }): void {
    this.keys.set(key, grant);
  }

  addCustomer(c: { id: string } & Record<string, unknown>, account = ''): void {
    if (!this.customers.has(account)) this.customers.set(account, new Map());
    this.customers.get(account)!.set(c.id, c);
  }

  deleteCustomer(id: string, account = ''): void {
    this.customers.get(account)?.set(id, { id, object: 'customer', deleted: true });
  }

  /** The next `count` requests are answered 429 rate_limit with `Retry-After: retryAfterSeconds`. */
  rateLimitNext(count: number, retryAfterSeconds = 1): void {
    this.rateLimited.push({ remaining: count, retryAfterSeconds });
  }

  /** @internal */
  takeRateLimit(): number | undefined {
    const next = this.rateLimited[0];
    if (!next) return undefined;
    next.remaining -= 1;
    if (next.remaining <= 0) this.rateLimited.shift();
    return next.retryAfterSeconds;
  }

  requestsFor(customerId: string): CustomerRequest[] {
    return this.requests.filter((r) => r.customerId === customerId);
  }
}

const requestId = () => `req_${rid('x').slice(2, 16)}`;
const mask = (key: string) => `${key.slice(0, key.indexOf('_', 3) + 1)}*********${key.slice(-4)}`;

export interface FakeStripe {
  url: string;
  state: FakeStripeState;
  close(): Promise<void>;
}

export async function startFakeStripe(): Promise<FakeStripe> {
  const state = new FakeStripeState();
  const app = Fastify({ logger: false, forceCloseConnections: true });
  const error = (status: number, e: { type: string; code?: string; message: string; param?: string }) => ({
    status,
    body: {
      error: {
        ...e,
        ...(e.code ? { doc_url: `https://stripe.com/docs/error-codes/${e.code.replace(/_/g, '-')}` } : {}),
        request_log_url: `https://dashboard.stripe.com/test/logs/${requestId()}`,
      },
    },
  });

  app.get<{ Params: { id: string } }>('/v1/customers/:id', async (request, reply) => {
    const { id } = request.params;
    const auth = request.headers.authorization;
    const account =
      typeof request.headers['stripe-account'] === 'string' ? request.headers['stripe-account'] : undefined;
    const key = auth?.startsWith('Bearer ') ? auth.slice(7).trim() : undefined;
    const answer = (() => {
      if (!key) {
        return error(401, {
          type: 'invalid_request_error',
          message:
            "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
        });
      }
      const grant = state.keys.get(key);
      if (!grant) {
        return error(401, {
          type: 'invalid_request_error',
          code: 'api_key_expired',
          message: `Invalid API Key provided: ${mask(key)}`,
        });
      }
      const retryAfter = state.takeRateLimit();
      if (retryAfter !== undefined) {
        void reply.header('Retry-After', String(retryAfter));
        return error(429, {
          type: 'invalid_request_error',
          code: 'rate_limit',
          message:
            'Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.',
        });
      }
      if (!grant.customersRead) {
        return error(403, {
          type: 'invalid_request_error',
          code: 'secret_key_required',
          message: `The provided key '${mask(key)}' does not have the required permissions for this endpoint${account ? ` on account '${account}'` : ''}. Having the 'rak_customer_read' permission would allow this request to continue.`,
        });
      }
      const found = state.customers.get(account ?? '')?.get(id);
      if (!found) {
        return error(404, {
          type: 'invalid_request_error',
          code: 'resource_missing',
          param: 'id',
          message: `No such customer: '${id}'`,
        });
      }
      return { status: 200, body: found };
    })();
    state.requests.push({ customerId: id, account, key, status: answer.status });
    return reply.status(answer.status).header('Request-Id', requestId()).send(answer.body);
  });

  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('fake Stripe: no TCP address');
  return { url: `http://127.0.0.1:${address.port}`, state, close: () => app.close() };
}
