import {
  controllerRateLimiter,
  type ControllerRateLimiterOptions,
  type RateLimiter,
} from './rate-limiter.js';

export interface WorkQueueOptions extends ControllerRateLimiterOptions {
  /** Called whenever the number of keys ready for a worker changes (a gauge for metrics). */
  onDepthChange?: (depth: number) => void;
}

/**
 * A keyed work queue with client-go workqueue semantics, the contract controllers are written against:
 * - a key waiting in the queue is stored once, however often it is added;
 * - a key is never handed to two workers at once: an add while it is processing marks it dirty, and it
 *   is queued again when the worker calls done();
 * - addRateLimited() retries with per-key exponential backoff under an overall token bucket, forget()
 *   resets the backoff; addAfter() schedules a key, the earliest pending time winning;
 * - shutDown() stops accepting keys, drops those still waiting (they are level-triggered and come back
 *   from the next full resync) and resolves once the in-flight ones are done.
 */
export class WorkQueue {
  /** Keys ready for a worker, in FIFO order, each at most once. */
  private readonly ready: string[] = [];
  /** Keys that need processing: queued, or added again while a worker has them. */
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly waiting = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly idleGetters: (() => void)[] = [];
  private readonly rateLimiter: RateLimiter;
  private readonly now: () => number;
  private shuttingDown = false;
  private drained: (() => void) | undefined;
  private readonly drainedPromise: Promise<void>;

  constructor(private readonly opts: WorkQueueOptions = {}) {
    // A monotonic clock: a wall-clock step must not stall or rush requeueAfter.
    this.now = opts.now ?? (() => performance.now());
    this.rateLimiter = controllerRateLimiter({ ...opts, now: this.now });
    this.drainedPromise = new Promise((resolve) => (this.drained = resolve));
  }

  /** Keys ready for a worker now (client-go's workqueue_depth). */
  get depth(): number {
    return this.ready.length;
  }

  /** Keys scheduled for later by addAfter / addRateLimited. */
  get waitingCount(): number {
    return this.waiting.size;
  }

  get processingCount(): number {
    return this.processing.size;
  }

  get isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  add(key: string): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.dirty.add(key);
    // A worker has it: done() queues it again, so no second worker ever sees it concurrently.
    if (this.processing.has(key)) return;
    this.push(key);
  }

  /** Adds `key` after `delayMs`; when it is already waiting, the earlier time wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.shuttingDown) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const at = this.now() + delayMs;
    const pending = this.waiting.get(key);
    if (pending && pending.at <= at) return;
    if (pending) clearTimeout(pending.timer);
    const timer = setTimeout(() => {
      this.waiting.delete(key);
      this.add(key);
    }, delayMs);
    this.waiting.set(key, { at, timer });
  }

  /** Requeues a failed key after its backoff (and the token bucket) allow. */
  addRateLimited(key: string): void {
    if (this.shuttingDown) return;
    this.addAfter(key, this.rateLimiter.when(key));
  }

  /** The key succeeded: its next failure starts from the base delay again. */
  forget(key: string): void {
    this.rateLimiter.forget(key);
  }

  numRequeues(key: string): number {
    return this.rateLimiter.numRequeues(key);
  }

  /** The next key to process, or undefined once the queue shuts down. Call done(key) when finished. */
  async get(): Promise<string | undefined> {
    while (this.ready.length === 0 && !this.shuttingDown) {
      await new Promise<void>((resolve) => this.idleGetters.push(resolve));
    }
    const key = this.shuttingDown ? undefined : this.ready.shift();
    if (key === undefined) return undefined;
    this.processing.add(key);
    this.dirty.delete(key);
    this.opts.onDepthChange?.(this.ready.length);
    return key;
  }

  done(key: string): void {
    if (!this.processing.delete(key)) return;
    if (this.shuttingDown) {
      if (this.processing.size === 0) this.drained?.();
      return;
    }
    if (this.dirty.has(key)) this.push(key);
  }

  /**
   * Runs `workers` loops that take keys and call `handler`, until shutDown(). A handler that throws is
   * retried with backoff, like a failed reconcile; controllers handle their own errors.
   */
  async run(workers: number, handler: (key: string) => Promise<void>): Promise<void> {
    if (!Number.isInteger(workers) || workers < 1)
      throw new Error(`workers must be a positive integer, got ${workers}`);
    const loop = async (): Promise<void> => {
      for (;;) {
        const key = await this.get();
        if (key === undefined) return;
        try {
          await handler(key);
        } catch {
          this.addRateLimited(key);
        } finally {
          this.done(key);
        }
      }
    };
    await Promise.all(Array.from({ length: workers }, loop));
  }

  /** Stops accepting keys and resolves when every key being processed is done. */
  shutDown(): Promise<void> {
    if (!this.shuttingDown) {
      this.shuttingDown = true;
      for (const { timer } of this.waiting.values()) clearTimeout(timer);
      this.waiting.clear();
      this.ready.length = 0;
      this.dirty.clear();
      this.opts.onDepthChange?.(0);
      for (const wake of this.idleGetters.splice(0)) wake();
      if (this.processing.size === 0) this.drained?.();
    }
    return this.drainedPromise;
  }

  private push(key: string): void {
    this.ready.push(key);
    this.opts.onDepthChange?.(this.ready.length);
    this.idleGetters.shift()?.();
  }
}
