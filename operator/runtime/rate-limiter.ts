/**
 * The rate limiters behind WorkQueue.addRateLimited, after client-go's workqueue: a per-key exponential
 * backoff combined with an overall token bucket, the larger delay winning (DefaultControllerRateLimiter).
 */
export interface RateLimiter {
  /** How long to wait before `key` is processed again after one more failure. */
  when(key: string): number;
  /** The key succeeded: its backoff starts again from the base delay. */
  forget(key: string): void;
  /** Failures recorded for `key` since it was last forgotten. */
  numRequeues(key: string): number;
}

/** base × 2^failures, capped: 5 ms, 10 ms, 20 ms … 1000 s with client-go's defaults. */
export class ItemExponentialRateLimiter implements RateLimiter {
  private readonly failures = new Map<string, number>();

  constructor(
    private readonly baseDelayMs: number,
    private readonly maxDelayMs: number,
  ) {
    if (!(baseDelayMs > 0) || !(maxDelayMs >= baseDelayMs)) {
      throw new Error(`invalid backoff: base ${baseDelayMs} ms, max ${maxDelayMs} ms (need 0 < base <= max)`);
    }
  }

  when(key: string): number {
    const exp = this.failures.get(key) ?? 0;
    this.failures.set(key, exp + 1);
    // 2^exp overflows to Infinity after ~1000 failures; min() still yields the cap.
    return Math.min(this.baseDelayMs * 2 ** exp, this.maxDelayMs);
  }

  forget(key: string): void {
    this.failures.delete(key);
  }

  numRequeues(key: string): number {
    return this.failures.get(key) ?? 0;
  }
}

/**
 * A token bucket of `burst` tokens refilled at `qps` per second. Like golang.org/x/time/rate's Reserve(),
 * a request always gets a slot: the bucket goes into debt and the answer is how long to wait for it.
 * It caps the overall retry rate, so a storm of failing keys cannot hammer the API server.
 */
export class TokenBucketRateLimiter implements RateLimiter {
  private tokens: number;
  private last: number;

  constructor(
    private readonly qps: number,
    private readonly burst: number,
    private readonly now: () => number = Date.now,
  ) {
    if (!(qps > 0) || !(burst >= 1)) throw new Error(`invalid token bucket: ${qps} qps, burst ${burst}`);
    this.tokens = burst;
    this.last = now();
  }

  when(): number {
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.qps) / 1000);
    this.last = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens * 1000) / this.qps);
  }

  forget(): void {}

  numRequeues(): number {
    return 0;
  }
}

/** Asks every limiter (each records the failure) and waits for the slowest. */
export class MaxOfRateLimiter implements RateLimiter {
  private readonly limiters: RateLimiter[];

  constructor(...limiters: RateLimiter[]) {
    this.limiters = limiters;
  }

  when(key: string): number {
    return Math.max(0, ...this.limiters.map((l) => l.when(key)));
  }

  forget(key: string): void {
    for (const l of this.limiters) l.forget(key);
  }

  numRequeues(key: string): number {
    return Math.max(0, ...this.limiters.map((l) => l.numRequeues(key)));
  }
}

export interface ControllerRateLimiterOptions {
  /** First retry delay of a failing key; doubles per failure. Default 5 ms. */
  baseDelayMs?: number;
  /** Cap of the per-key delay. Default 1000 s. */
  maxDelayMs?: number;
  /** Overall retries per second across all keys. Default 10. */
  qps?: number;
  /** Retries allowed at once before `qps` applies. Default 100. */
  burst?: number;
  now?: () => number;
}

/** client-go's DefaultControllerRateLimiter with its defaults, each of them overridable. */
export function controllerRateLimiter(opts: ControllerRateLimiterOptions = {}): RateLimiter {
  return new MaxOfRateLimiter(
    new ItemExponentialRateLimiter(opts.baseDelayMs ?? 5, opts.maxDelayMs ?? 1_000_000),
    new TokenBucketRateLimiter(opts.qps ?? 10, opts.burst ?? 100, opts.now),
  );
}
