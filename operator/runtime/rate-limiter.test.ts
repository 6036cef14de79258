import { describe, expect, it } from 'vitest';
import {
  controllerRateLimiter,
  ItemExponentialRateLimiter,
  MaxOfRateLimiter,
  TokenBucketRateLimiter,
} from './rate-limiter.js';

describe('rate limiters', () => {
  it('per key: 5 ms doubling up to 1000 s by default, independent per key', () => {
    const limiter = new ItemExponentialRateLimiter(5, 1_000_000);
    const delays = Array.from({ length: 20 }, () => limiter.when('a'));
    expect(delays.slice(0, 5)).toEqual([5, 10, 20, 40, 80]);
    expect(delays[17]).toBe(655_360);
    expect(delays[18]).toBe(1_000_000);
    expect(delays[19]).toBe(1_000_000);
    expect(limiter.when('b')).toBe(5);
    expect(limiter.numRequeues('a')).toBe(20);
    limiter.forget('a');
    expect(limiter.when('a')).toBe(5);
  });

  it('still yields the cap after so many failures that 2^n overflows', () => {
    const limiter = new ItemExponentialRateLimiter(5, 1000);
    for (let i = 0; i < 1100; i++) limiter.when('a');
    expect(limiter.when('a')).toBe(1000);
  });

  it('token bucket: a burst at once, then one slot per 1/qps, refilling with time', () => {
    let now = 0;
    const bucket = new TokenBucketRateLimiter(10, 3, () => now);
    expect([bucket.when(), bucket.when(), bucket.when(), bucket.when(), bucket.when()]).toEqual([
      0, 0, 0, 100, 200,
    ]);
    now = 1_000; // 10 tokens refilled, but the bucket holds only 3 and 2 were owed
    expect([bucket.when(), bucket.when()]).toEqual([0, 0]);
  });

  it("client-go's defaults: 100 retries pass at once, the 101st waits 100 ms", () => {
    const now = 0;
    const limiter = controllerRateLimiter({ now: () => now });
    const delays = Array.from({ length: 101 }, (_, i) => limiter.when(`k${i}`));
    expect(delays.slice(0, 100).every((d) => d === 5)).toBe(true);
    expect(delays[100]).toBe(100);
  });

  it('the combination takes the slower limiter and forgets in every one', () => {
    let now = 0;
    const limiter = new MaxOfRateLimiter(
      new ItemExponentialRateLimiter(50, 1000),
      new TokenBucketRateLimiter(1, 1, () => now),
    );
    expect(limiter.when('a')).toBe(50);
    expect(limiter.when('a')).toBe(1000); // bucket owes a token: one second
    now = 5_000;
    limiter.forget('a');
    expect(limiter.numRequeues('a')).toBe(0);
    expect(limiter.when('a')).toBe(50);
  });

  it('refuses nonsense settings with a clear error', () => {
    expect(() => new ItemExponentialRateLimiter(0, 10)).toThrow(/invalid backoff/);
    expect(() => new ItemExponentialRateLimiter(10, 5)).toThrow(/invalid backoff/);
    expect(() => new TokenBucketRateLimiter(0, 10)).toThrow(/invalid token bucket/);
  });
});
