import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Stripe customers, for what no event payload carries: the fbc/fbp/client_ip/client_user_agent Tally
 * keeps in Customer.metadata, and the e-mail of subscription events (providers.md §1.6).
 * `GET /v1/customers/{id}` with the integration's restricted key as Bearer and `Stripe-Account` for
 * Connect events; answers are cached (bounded, with a TTL), concurrent look-ups of one customer share one
 * request, and a 429 blocks that key until Retry-After has passed.
 */

export interface CustomerFacts {
  deleted?: boolean;
  email?: string;
  phone?: string;
  name?: string;
  address?: Record<string, unknown>;
  metadata: Record<string, string>;
}

export type LookupOutcome =
  | { kind: 'found'; customer: CustomerFacts }
  /** No key, unknown or deleted customer, or a key Stripe refuses: send what the event has. */
  | { kind: 'none'; reason: 'no_key' | 'not_found' | 'deleted' | 'unauthorized' | 'invalid_response' }
  /** Stripe asked us to slow down (or failed) longer than we wait inline: try the event later. */
  | { kind: 'retry_later'; afterMs: number; reason: 'rate_limited' | 'unavailable' };

export interface StripeCustomersOptions {
  /** https://api.stripe.com; tests point it at a local fake. */
  baseUrl: string;
  /** The restricted key (rk_…) of a StripeIntegration (namespace/name), if configured. */
  keyFor: (integration: string) => string | undefined;
  ttlMs?: number;
  maxEntries?: number;
  /** Retry-After waits taken inline before the event is deferred instead. */
  maxInlineRetries?: number;
  /** The longest Retry-After waited inline. */
  maxInlineWaitMs?: number;
  timeoutMs?: number;
  /** Look-ups in flight at once (Stripe allows 100 read requests/s live, 25 in test mode). */
  concurrency?: number;
  onLookup?: (integration: string, result: string) => void;
}

interface Entry {
  outcome: LookupOutcome;
  expires: number;
}

export class StripeCustomers {
  private readonly cache = new Map<string, Entry>();
  private readonly inFlight = new Map<string, Promise<LookupOutcome>>();
  private readonly blockedUntil = new Map<string, number>();
  private active = 0;
  private readonly waiters: (() => void)[] = [];
  private readonly ttlMs: number;
  private readonly maxEntries: number;

  constructor(private readonly opts: StripeCustomersOptions) {
    this.ttlMs = opts.ttlMs ?? 10 * 60_000;
    this.maxEntries = opts.maxEntries ?? 10_000;
  }

  /** Requests sent to Stripe (not answered from the cache), for tests and metrics. */
  requests = 0;

  async lookup(integration: string, customerId: string, account: string | null): Promise<LookupOutcome> {
    const key = this.opts.keyFor(integration);
    if (!key) return { kind: 'none', reason: 'no_key' };
    const cacheKey = `${integration}\u0000${account ?? ''}\u0000${customerId}`;
    const hit = this.cache.get(cacheKey);
    if (hit && hit.expires > Date.now()) {
      // Re-insert: Map order is the LRU order.
      this.cache.delete(cacheKey);
      this.cache.set(cacheKey, hit);
      this.opts.onLookup?.(integration, 'cache_hit');
      return hit.outcome;
    }
    const running = this.inFlight.get(cacheKey);
    if (running) return running;
    const promise = this.fetchCustomer(integration, key, customerId, account).finally(() =>
      this.inFlight.delete(cacheKey),
    );
    this.inFlight.set(cacheKey, promise);
    const outcome = await promise;
    if (outcome.kind !== 'retry_later') {
      this.cache.delete(cacheKey);
      this.cache.set(cacheKey, { outcome, expires: Date.now() + this.ttlMs });
      while (this.cache.size > this.maxEntries) this.cache.delete(this.cache.keys().next().value!);
    }
    return outcome;
  }

  private async fetchCustomer(
    integration: string,
    key: string,
    customerId: string,
    account: string | null,
  ): Promise<LookupOutcome> {
    const gate = `${integration}\u0000${account ?? ''}`;
    const maxRetries = this.opts.maxInlineRetries ?? 2;
    const maxWait = this.opts.maxInlineWaitMs ?? 5_000;
    for (let attempt = 0; ; attempt++) {
      const blocked = (this.blockedUntil.get(gate) ?? 0) - Date.now();
      if (blocked > 0) {
        if (blocked > maxWait || attempt > maxRetries) {
          this.opts.onLookup?.(integration, 'rate_limited');
          return { kind: 'retry_later', afterMs: blocked, reason: 'rate_limited' };
        }
        await sleep(blocked);
      }
      const answer = await this.limited(() => this.get(key, customerId, account));
      if (answer.status === 429 || answer.status >= 500 || answer.status === 0) {
        const retryAfter = retryAfterMs(answer.retryAfter) ?? Math.min(1000 * 2 ** attempt, 30_000);
        if (answer.status === 429) this.blockedUntil.set(gate, Date.now() + retryAfter);
        if (attempt >= maxRetries || retryAfter > maxWait) {
          const reason = answer.status === 429 ? 'rate_limited' : 'unavailable';
          this.opts.onLookup?.(integration, reason);
          return { kind: 'retry_later', afterMs: retryAfter, reason };
        }
        if (answer.status !== 429) await sleep(retryAfter);
        continue;
      }
      const outcome = toOutcome(answer.status, answer.body);
      this.opts.onLookup?.(integration, outcome.kind === 'found' ? 'found' : outcome.reason);
      return outcome;
    }
  }

  private async limited<T>(fn: () => Promise<T>): Promise<T> {
    const max = this.opts.concurrency ?? 8;
    while (this.active >= max) await new Promise<void>((resolve) => this.waiters.push(resolve));
    this.active++;
    try {
      return await fn();
    } finally {
      this.active--;
      this.waiters.shift()?.();
    }
  }

  private async get(
    key: string,
    customerId: string,
    account: string | null,
  ): Promise<{ status: number; body: unknown; retryAfter: string | null }> {
    this.requests++;
    const url = `${this.opts.baseUrl.replace(/\/$/, '')}/v1/customers/${encodeURIComponent(customerId)}`;
    const headers: Record<string, string> = { authorization: `Bearer ${key}` };
    if (account) headers['stripe-account'] = account;
    try {
      const res = await fetch(url, { headers, signal: AbortSignal.timeout(this.opts.timeoutMs ?? 10_000) });
      const text = await res.text();
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        body = undefined;
      }
      return { status: res.status, body, retryAfter: res.headers.get('retry-after') };
    } catch {
      return { status: 0, body: undefined, retryAfter: null };
    }
  }
}

function toOutcome(status: number, body: unknown): LookupOutcome {
  const o = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : undefined;
  if (status === 401 || status === 403) return { kind: 'none', reason: 'unauthorized' };
  if (status === 404) return { kind: 'none', reason: 'not_found' };
  if (status !== 200 || !o || typeof o.id !== 'string') return { kind: 'none', reason: 'invalid_response' };
  if (o.deleted === true) return { kind: 'none', reason: 'deleted' };
  const s = (v: unknown) => (typeof v === 'string' && v.trim() !== '' ? v : undefined);
  const metadata: Record<string, string> = {};
  if (typeof o.metadata === 'object' && o.metadata !== null) {
    for (const [k, v] of Object.entries(o.metadata as Record<string, unknown>)) {
      if (typeof v === 'string' && v.trim() !== '') metadata[k] = v.trim();
    }
  }
  const address =
    typeof o.address === 'object' && o.address !== null ? (o.address as Record<string, unknown>) : undefined;
  return {
    kind: 'found',
    customer: {
      email: s(o.email),
      phone: s(o.phone),
      name: s(o.name),
      ...(address ? { address } : {}),
      metadata,
    },
  };
}

/** Retry-After in seconds (what Stripe sends) or an HTTP date. */
function retryAfterMs(header: string | null): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}
