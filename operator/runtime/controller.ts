import type { KubernetesObject } from '@kubernetes/client-node';
import { describeError, isConflict } from './errors.js';
import type { Informer, InformerEvent } from './informer.js';
import { controllerOwnerKey, objectKey, type OwnerType } from './keys.js';
import { silentLogger, type Logger } from './logger.js';
import { WorkQueue, type WorkQueueOptions } from './work-queue.js';

/** What a reconcile may ask for on success: run again after a while (periodic work such as a revenue refresh). */
export type ReconcileResult = { requeueAfter?: number } | void;

/**
 * Level-triggered: it gets a `namespace/name` key, reads the current object from an informer cache (it
 * may be gone) and drives the world towards it. Throwing requeues the key with backoff.
 */
export type Reconciler = (key: string) => Promise<ReconcileResult>;

/** controller-runtime's result labels, plus `conflict` for a 409 (a stale cache, retried without an error log). */
export type ReconcileOutcome = 'success' | 'requeue_after' | 'conflict' | 'error';

export interface ReconcileObservation {
  controller: string;
  key: string;
  outcome: ReconcileOutcome;
  durationMs: number;
  /** A one-line description of the failure for `conflict` and `error`. */
  error?: string;
}

/** Hooks for metrics (prom-client lives with the operator, not here); every method is optional. */
export interface ControllerMetrics {
  reconciled?(observation: ReconcileObservation): void;
  queueDepth?(controller: string, depth: number): void;
}

export interface ControllerOptions {
  /** Names the controller in logs and metrics, e.g. `stripeintegration`. */
  name: string;
  reconcile: Reconciler;
  /** Keys reconciled in parallel (never the same key twice at once). Default 1. */
  workers?: number;
  /** Backoff and rate limit of the queue: client-go's defaults unless set. */
  queue?: Omit<WorkQueueOptions, 'onDepthChange'>;
  metrics?: ControllerMetrics;
  log?: Logger;
}

/**
 * One reconcile loop: informer events become keys in a work queue and workers hand them to `reconcile`.
 * Keys collect from the moment the informers start; workers run only between startWorkers() and
 * stopWorkers(), which the Manager ties to leadership.
 */
export class Controller {
  readonly name: string;
  private readonly queue: WorkQueue;
  private readonly watched = new Set<Informer<KubernetesObject>>();
  private readonly log: Logger;
  private workers: Promise<void> | undefined;

  constructor(private readonly opts: ControllerOptions) {
    this.name = opts.name;
    this.log = opts.log ?? silentLogger;
    this.queue = new WorkQueue({
      ...opts.queue,
      onDepthChange: (depth) => opts.metrics?.queueDepth?.(this.name, depth),
    });
  }

  /**
   * Enqueues the keys `map` returns for every event of `informer` (by default the object's own key).
   * Deletes count too: the reconcile sees the object gone from the cache and cleans up.
   */
  watch<T extends KubernetesObject>(
    informer: Informer<T>,
    map: (obj: T, event: InformerEvent) => string | readonly string[] | undefined = objectKey,
  ): this {
    this.watched.add(informer as unknown as Informer<KubernetesObject>);
    informer.addHandler((obj, event) => {
      const keys = map(obj, event);
      if (typeof keys === 'string') this.queue.add(keys);
      else for (const key of keys ?? []) this.queue.add(key);
    });
    return this;
  }

  /** Maps children (Secrets, Deployments…) to the key of the `owner`-typed object that controls them. */
  watchOwned<T extends KubernetesObject>(informer: Informer<T>, owner: OwnerType): this {
    return this.watch(informer, (obj) => controllerOwnerKey(obj, owner));
  }

  /** The informers this controller listens to; the Manager starts them and waits for their caches. */
  get informers(): readonly Informer<KubernetesObject>[] {
    return [...this.watched];
  }

  enqueue(key: string): void {
    this.queue.add(key);
  }

  get queueDepth(): number {
    return this.queue.depth;
  }

  startWorkers(): void {
    if (this.workers || this.queue.isShuttingDown) return;
    const count = this.opts.workers ?? 1;
    this.log.info({ controller: this.name, workers: count }, 'starting workers');
    this.workers = this.queue.run(count, (key) => this.process(key));
  }

  /** Stops taking keys and waits for the reconciles in flight. The queue cannot be restarted. */
  async stopWorkers(): Promise<void> {
    await this.queue.shutDown();
    await this.workers;
  }

  private async process(key: string): Promise<void> {
    const started = performance.now();
    let outcome: ReconcileOutcome;
    let error: string | undefined;
    try {
      const result = await this.opts.reconcile(key);
      this.queue.forget(key);
      const after = result?.requeueAfter;
      if (after !== undefined && after > 0) {
        this.queue.addAfter(key, after);
        outcome = 'requeue_after';
      } else {
        outcome = 'success';
      }
    } catch (err) {
      error = describeError(err);
      if (isConflict(err)) {
        // Someone wrote the object after our cache saw it: retry once the cache has caught up.
        outcome = 'conflict';
        this.log.debug({ controller: this.name, key, error }, 'conflict; requeueing');
      } else {
        outcome = 'error';
        this.log.error(
          { controller: this.name, key, error, retries: this.queue.numRequeues(key) },
          'reconcile failed; retrying with backoff',
        );
      }
      this.queue.addRateLimited(key);
    }
    try {
      this.opts.metrics?.reconciled?.({
        controller: this.name,
        key,
        outcome,
        durationMs: performance.now() - started,
        ...(error === undefined ? {} : { error }),
      });
    } catch (err) {
      // A broken metrics hook must not turn a finished reconcile into a retry.
      this.log.warn({ controller: this.name, error: describeError(err) }, 'metrics hook failed');
    }
  }
}
