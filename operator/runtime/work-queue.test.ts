import { afterEach, describe, expect, it, vi } from 'vitest';
import { WorkQueue } from './work-queue.js';

/** Lets every pending promise continuation run, without moving any clock. */
const settle = async () => {
  for (let i = 0; i < 10; i++) await Promise.resolve();
};

function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('WorkQueue', () => {
  it('stores a waiting key once however often it is added, in FIFO order', async () => {
    const depths: number[] = [];
    const q = new WorkQueue({ onDepthChange: (d) => depths.push(d) });
    for (const key of ['a', 'b', 'a', 'a', 'c', 'b']) q.add(key);
    expect(q.depth).toBe(3);
    expect([await q.get(), await q.get(), await q.get()]).toEqual(['a', 'b', 'c']);
    expect(q.depth).toBe(0);
    expect(depths).toEqual([1, 2, 3, 2, 1, 0]);
  });

  it('never hands a key being processed to another worker; an add meanwhile runs it once more after done()', async () => {
    const q = new WorkQueue();
    q.add('a');
    expect(await q.get()).toBe('a');
    q.add('a');
    q.add('a');
    expect(q.depth).toBe(0);
    let second: string | undefined;
    void q.get().then((key) => (second = key));
    await settle();
    expect(second).toBeUndefined();
    q.done('a');
    await settle();
    expect(second).toBe('a');
    q.done('a');
    expect(q.depth).toBe(0);
  });

  it('runs workers in parallel but one key at a time, coalescing adds made while it ran', async () => {
    const q = new WorkQueue();
    const firstRun = gate();
    const runs: string[] = [];
    const active = new Map<string, number>();
    let maxHotConcurrency = 0;
    let othersDone = 0;
    const othersFinished = gate();
    const running = q.run(4, async (key) => {
      runs.push(key);
      active.set(key, (active.get(key) ?? 0) + 1);
      if (key === 'hot') maxHotConcurrency = Math.max(maxHotConcurrency, active.get(key) ?? 0);
      if (key === 'hot' && runs.filter((k) => k === 'hot').length === 1) await firstRun.promise;
      active.set(key, (active.get(key) ?? 1) - 1);
      if (key !== 'hot' && ++othersDone === 2) othersFinished.open();
    });
    q.add('hot');
    await settle();
    q.add('hot');
    q.add('hot');
    q.add('hot');
    q.add('x');
    q.add('y');
    // Idle workers take x and y while hot is still in its first run: workers are parallel.
    await othersFinished.promise;
    expect(runs).toEqual(['hot', 'x', 'y']);
    firstRun.open();
    await vi.waitFor(() => expect(runs.filter((k) => k === 'hot')).toHaveLength(2));
    await q.shutDown();
    await running;
    expect(maxHotConcurrency).toBe(1);
    expect(runs).toEqual(['hot', 'x', 'y', 'hot']);
  });

  it('backs a failing key off exponentially up to the cap, and forget() starts it over', async () => {
    vi.useFakeTimers();
    const q = new WorkQueue({ baseDelayMs: 10, maxDelayMs: 80 });
    const readyAfter = async (): Promise<number> => {
      q.addRateLimited('a');
      let waited = 0;
      while (q.depth === 0) {
        await vi.advanceTimersByTimeAsync(1);
        waited++;
      }
      expect(await q.get()).toBe('a');
      q.done('a');
      return waited;
    };
    const delays = [];
    for (let i = 0; i < 5; i++) delays.push(await readyAfter());
    expect(delays).toEqual([10, 20, 40, 80, 80]);
    expect(q.numRequeues('a')).toBe(5);
    q.forget('a');
    expect(q.numRequeues('a')).toBe(0);
    expect(await readyAfter()).toBe(10);
  });

  it('defaults to 5 ms doubling (client-go) per key', async () => {
    vi.useFakeTimers();
    const q = new WorkQueue();
    q.addRateLimited('a');
    await vi.advanceTimersByTimeAsync(4);
    expect(q.depth).toBe(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(q.depth).toBe(1);
    await q.get();
    q.done('a');
    q.addRateLimited('a');
    await vi.advanceTimersByTimeAsync(9);
    expect(q.depth).toBe(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(q.depth).toBe(1);
  });

  it('addAfter: the earliest pending time wins', async () => {
    vi.useFakeTimers();
    const q = new WorkQueue();
    q.addAfter('a', 100);
    q.addAfter('a', 50);
    q.addAfter('b', 30);
    q.addAfter('b', 100);
    expect(q.waitingCount).toBe(2);
    await vi.advanceTimersByTimeAsync(29);
    expect(q.depth).toBe(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(q.depth).toBe(1);
    expect(await q.get()).toBe('b');
    q.done('b');
    await vi.advanceTimersByTimeAsync(20);
    expect(await q.get()).toBe('a');
    q.done('a');
    // The later times were dropped, not kept as second entries.
    expect(q.waitingCount).toBe(0);
    await vi.advanceTimersByTimeAsync(200);
    expect(q.depth).toBe(0);
  });

  it('rate-limits retries overall with a token bucket (qps, burst)', async () => {
    vi.useFakeTimers();
    const q = new WorkQueue({ baseDelayMs: 1, qps: 10, burst: 2 });
    for (const key of ['k1', 'k2', 'k3', 'k4']) q.addRateLimited(key);
    await vi.advanceTimersByTimeAsync(1);
    expect(q.depth).toBe(2); // the burst
    await vi.advanceTimersByTimeAsync(98);
    expect(q.depth).toBe(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(q.depth).toBe(3); // one token per 100 ms at 10 qps
    await vi.advanceTimersByTimeAsync(100);
    expect(q.depth).toBe(4);
    expect([await q.get(), await q.get(), await q.get(), await q.get()]).toEqual(['k1', 'k2', 'k3', 'k4']);
  });

  it('shutDown() stops accepting, drops waiting keys and resolves when in-flight work is done', async () => {
    const q = new WorkQueue();
    const release = gate();
    const processed: string[] = [];
    const running = q.run(1, async (key) => {
      processed.push(`start ${key}`);
      if (key === 'slow') await release.promise;
      processed.push(`end ${key}`);
    });
    q.add('slow');
    q.add('queued');
    await settle();
    expect(processed).toEqual(['start slow']);
    q.addAfter('later', 10);

    let drained = false;
    const shutDown = q.shutDown().then(() => (drained = true));
    q.add('late');
    q.addAfter('late', 1);
    q.addRateLimited('late');
    expect([q.depth, q.waitingCount, q.isShuttingDown]).toEqual([0, 0, true]);
    await settle();
    expect(drained).toBe(false);

    release.open();
    await shutDown;
    await running;
    expect(processed).toEqual(['start slow', 'end slow']);
    expect(await q.get()).toBeUndefined();
  });

  it('retries a handler that throws, with backoff', async () => {
    const q = new WorkQueue({ baseDelayMs: 1, maxDelayMs: 4 });
    let calls = 0;
    const running = q.run(1, () => {
      calls++;
      return calls < 3 ? Promise.reject(new Error('boom')) : Promise.resolve();
    });
    q.add('a');
    await vi.waitFor(() => expect(calls).toBe(3));
    expect(q.numRequeues('a')).toBe(2);
    await q.shutDown();
    await running;
  });

  it('rejects a worker count that is not a positive integer', async () => {
    await expect(new WorkQueue().run(0, async () => {})).rejects.toThrow(/positive integer/);
  });
});
