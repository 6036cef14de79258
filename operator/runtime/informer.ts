import {
  ADD,
  CONNECT,
  CoreV1Api,
  CustomObjectsApi,
  DELETE,
  ERROR,
  ListWatch,
  UPDATE,
  Watch,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  type ObjectCache,
  type V1Secret,
} from '@kubernetes/client-node';
import { describeError } from './errors.js';
import { silentLogger, type Logger } from './logger.js';

/** What an informer lists and watches: one resource path, and the list call for the same collection. */
export interface InformerSource<T extends KubernetesObject> {
  /** Watch path, e.g. `/apis/tally.dev/v1alpha1/namespaces/growth/stripeintegrations` or `/api/v1/secrets`. */
  path: string;
  /** Lists the same collection with the same selector: the initial fill and every relist after a 410. */
  list: () => Promise<KubernetesListObject<T>>;
  labelSelector?: string;
}

export interface CustomResource {
  group: string;
  version: string;
  plural: string;
  /** Omit to watch every namespace. */
  namespace?: string;
  labelSelector?: string;
}

/** Custom resources through CustomObjectsApi, which keeps every field (spec, status) as the server sent it. */
export function customObjectSource<T extends KubernetesObject = KubernetesObject>(
  kc: KubeConfig,
  r: CustomResource,
): InformerSource<T> {
  const api = kc.makeApiClient(CustomObjectsApi);
  const { group, version, plural, namespace, labelSelector } = r;
  const base = `/apis/${group}/${version}`;
  return {
    path: namespace ? `${base}/namespaces/${namespace}/${plural}` : `${base}/${plural}`,
    list: namespace
      ? () =>
          api.listNamespacedCustomObject({ group, version, namespace, plural, labelSelector }) as Promise<
            KubernetesListObject<T>
          >
      : () =>
          api.listClusterCustomObject({ group, version, plural, labelSelector }) as Promise<
            KubernetesListObject<T>
          >,
    labelSelector,
  };
}

/** Secrets, e.g. the ones Tally provisions (mapped back to their owner) or the ones a resource references. */
export function secretSource(
  kc: KubeConfig,
  opts: { namespace?: string; labelSelector?: string } = {},
): InformerSource<V1Secret> {
  const core = kc.makeApiClient(CoreV1Api);
  const { namespace, labelSelector } = opts;
  return typedSource<V1Secret>({
    path: namespace ? `/api/v1/namespaces/${namespace}/secrets` : '/api/v1/secrets',
    apiVersion: 'v1',
    kind: 'Secret',
    labelSelector,
    list: () =>
      namespace
        ? core.listNamespacedSecret({ namespace, labelSelector })
        : core.listSecretForAllNamespaces({ labelSelector }),
  });
}

/**
 * A built-in type listed through its typed client. The typed list holds model instances (Date
 * timestamps, no apiVersion/kind on items) while watch events are plain JSON; normalising the list to
 * JSON keeps one shape in the cache whichever way an object arrived. (The round trip relies on the
 * models using the wire names, which holds for Secrets, Deployments and Services.)
 */
export function typedSource<T extends KubernetesObject>(opts: {
  path: string;
  apiVersion: string;
  kind: string;
  labelSelector?: string;
  list: () => Promise<KubernetesListObject<T>>;
}): InformerSource<T> {
  return {
    path: opts.path,
    labelSelector: opts.labelSelector,
    list: async () => {
      const list = await opts.list();
      const items = list.items.map((item) => ({
        ...(JSON.parse(JSON.stringify(item)) as T),
        apiVersion: opts.apiVersion,
        kind: opts.kind,
      }));
      return { ...list, items };
    },
  };
}

/**
 * Why a handler is called. `resync` is the periodic pass over the cache; `replay` re-emits the cache when
 * the watch connects after a restart, because client-node then only reports objects it has not seen
 * (kubernetes-client/javascript#795).
 */
export type InformerEvent = 'add' | 'update' | 'delete' | 'resync' | 'replay';
export type InformerHandler<T> = (obj: T, event: InformerEvent) => void;

export interface InformerOptions {
  /** Names the informer in logs. Default: the source path. */
  name?: string;
  /** First delay before restarting after an error; doubles per consecutive failure. Default 1 s. */
  restartInitialDelayMs?: number;
  /** Cap of the restart delay. Default 30 s. */
  restartMaxDelayMs?: number;
  /** A failure after this long without one starts the delay from the beginning again. Default 2 min. */
  restartResetMs?: number;
  /**
   * Restart when no watch event, bookmark or (re)connect arrived for this long: client-node 1.4.0 has no
   * effective client-side watch timeout, so a half-open connection would stall silently. Default 10 min;
   * 0 turns it off. Must exceed twice `watchTimeoutSeconds`, the longest a healthy quiet watch lasts.
   */
  watchdogMs?: number;
  /**
   * The API server ends each watch after this many seconds × a random factor in [1, 2) (client-go's
   * reflector does the same) and the informer reconnects, so a quiet but healthy watch still shows
   * life to the watchdog. Default 240.
   */
  watchTimeoutSeconds?: number;
  /** Calls the handlers with every cached object this often. Default 10 min; 0 turns it off. */
  resyncMs?: number;
  log?: Logger;
}

/** Thrown into ListWatch by a list call that a restart or stop() has overtaken, so its result is dropped. */
class StaleAttempt extends Error {
  constructor() {
    super('superseded by an informer restart');
  }
}

/**
 * An informer on client-node 1.4.0's ListWatch that stays up: ListWatch gives the list+watch loop, the
 * 410 relist and the cache; this class adds what 1.4.0 lacks (restart after any error with backoff, a
 * watchdog for silent stalls, periodic resync, replay after restart) and guards against ListWatch's
 * habit of reporting its own aborts as errors.
 */
export class Informer<T extends KubernetesObject> implements ObjectCache<T> {
  readonly name: string;
  private readonly lw: ListWatch<T>;
  private readonly watch: GuardedWatch;
  private readonly handlers: InformerHandler<T>[] = [];
  private readonly log: Logger;
  private readonly restartInitialDelayMs: number;
  private readonly restartMaxDelayMs: number;
  private readonly restartResetMs: number;
  private readonly watchdogMs: number;
  private readonly watchTimeoutSeconds: number;
  private readonly resyncMs: number;
  /** Bumped on every restart and on stop(); work started under an older generation is discarded. */
  private generation = 0;
  private state: 'new' | 'running' | 'backoff' | 'stopped' = 'new';
  private synced = false;
  private syncWaiters: { resolve: () => void; reject: (err: Error) => void }[] = [];
  private lastActivity = 0;
  private replayOnConnect = false;
  private consecutiveFailures = 0;
  private lastFailureAt = -Infinity;
  private restartTimer: NodeJS.Timeout | undefined;
  private watchdogTimer: NodeJS.Timeout | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private restartCount = 0;
  private lastErrorText: string | undefined;

  constructor(
    kc: KubeConfig,
    private readonly source: InformerSource<T>,
    opts: InformerOptions = {},
  ) {
    this.name = opts.name ?? source.path;
    this.log = opts.log ?? silentLogger;
    this.restartInitialDelayMs = opts.restartInitialDelayMs ?? 1_000;
    this.restartMaxDelayMs = opts.restartMaxDelayMs ?? 30_000;
    this.restartResetMs = opts.restartResetMs ?? 120_000;
    this.watchdogMs = opts.watchdogMs ?? 600_000;
    this.watchTimeoutSeconds = opts.watchTimeoutSeconds ?? 240;
    this.resyncMs = opts.resyncMs ?? 600_000;
    if (this.watchdogMs > 0 && this.watchdogMs <= 2 * this.watchTimeoutSeconds * 1000) {
      throw new Error(
        `informer ${this.name}: watchdogMs (${this.watchdogMs}) must exceed twice watchTimeoutSeconds ` +
          `(${this.watchTimeoutSeconds} s), or healthy quiet watches would be restarted`,
      );
    }
    this.watch = new GuardedWatch(kc, {
      current: (generation) => generation === this.generation && this.state === 'running',
      generation: () => this.generation,
      timeoutSeconds: () => Math.floor(this.watchTimeoutSeconds * (1 + Math.random())),
      watching: () => this.markSynced(),
      activity: () => (this.lastActivity = performance.now()),
      failed: (err) => this.failed(err),
    });
    this.lw = new ListWatch<T>(source.path, this.watch, () => this.listOnce(), false, source.labelSelector);
    this.lw.on(ADD, (obj: T) => this.dispatch(obj, 'add'));
    this.lw.on(UPDATE, (obj: T) => this.dispatch(obj, 'update'));
    this.lw.on(DELETE, (obj: T) => this.dispatch(obj, 'delete'));
    this.lw.on(CONNECT, () => this.connected());
    this.lw.on(ERROR, (err: unknown) => this.failed(err));
  }

  /** Handlers run synchronously in the informer's callbacks: map the object to queue keys and return. */
  addHandler(handler: InformerHandler<T>): this {
    this.handlers.push(handler);
    return this;
  }

  /** Starts listing and watching; idempotent. Restarts itself after errors until stop(). */
  start(): void {
    if (this.state !== 'new') return;
    if (this.watchdogMs > 0) {
      this.watchdogTimer = setInterval(() => this.checkWatchdog(), Math.min(this.watchdogMs / 4, 30_000));
    }
    if (this.resyncMs > 0) this.resyncTimer = setInterval(() => this.resync(), this.resyncMs);
    this.launch();
  }

  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    clearTimeout(this.restartTimer);
    clearInterval(this.watchdogTimer);
    clearInterval(this.resyncTimer);
    await this.halt();
    for (const waiter of this.syncWaiters.splice(0)) {
      waiter.reject(new Error(`informer ${this.name} stopped before its cache synced`));
    }
  }

  /** True once the first list is in the cache (client-go's HasSynced); stays true across restarts. */
  hasSynced(): boolean {
    return this.synced;
  }

  waitForSync(timeoutMs = Infinity): Promise<void> {
    if (this.synced) return Promise.resolve();
    if (this.state === 'stopped') return Promise.reject(new Error(`informer ${this.name} is stopped`));
    return new Promise<void>((resolve, reject) => {
      const timer = Number.isFinite(timeoutMs)
        ? setTimeout(() => {
            this.syncWaiters = this.syncWaiters.filter((w) => w !== waiter);
            const last = this.lastErrorText ? ` (last error: ${this.lastErrorText})` : '';
            reject(new Error(`informer ${this.name} did not sync within ${timeoutMs} ms${last}`));
          }, timeoutMs)
        : undefined;
      const waiter = {
        resolve: () => (clearTimeout(timer), resolve()),
        reject: (err: Error) => (clearTimeout(timer), reject(err)),
      };
      this.syncWaiters.push(waiter);
    });
  }

  get(name: string, namespace?: string): T | undefined {
    return this.lw.get(name, namespace);
  }

  list(namespace?: string): readonly T[] {
    return this.lw.list(namespace);
  }

  /** Restarts so far and the last error, for status pages and tests. */
  get stats(): { restarts: number; lastError: string | undefined; state: string } {
    return { restarts: this.restartCount, lastError: this.lastErrorText, state: this.state };
  }

  private launch(): void {
    this.state = 'running';
    this.lastActivity = performance.now();
    const generation = this.generation;
    // ListWatch resumes from its last resourceVersion (a 410 makes it relist) and keeps its cache.
    this.lw.start().catch((err: unknown) => {
      if (generation === this.generation) this.failed(err);
    });
  }

  /** Ends the current attempt: ListWatch's own request and any watch it lost track of. */
  private async halt(): Promise<void> {
    this.generation++;
    this.watch.abortAll();
    await this.lw.stop();
  }

  private async listOnce(): Promise<KubernetesListObject<T>> {
    const generation = this.generation;
    let list: KubernetesListObject<T>;
    try {
      list = await this.source.list();
    } catch (err) {
      throw generation === this.generation ? err : new StaleAttempt();
    }
    if (generation !== this.generation) throw new StaleAttempt();
    this.lastActivity = performance.now();
    return list;
  }

  private failed(err: unknown): void {
    if (err instanceof StaleAttempt || this.state !== 'running') return;
    this.restart(describeError(err));
  }

  private restart(reason: string): void {
    if (this.state !== 'running') return;
    this.state = 'backoff';
    void this.halt();
    const now = performance.now();
    if (now - this.lastFailureAt > this.restartResetMs) this.consecutiveFailures = 0;
    const delay = Math.min(
      this.restartInitialDelayMs * 2 ** this.consecutiveFailures,
      this.restartMaxDelayMs,
    );
    this.consecutiveFailures++;
    this.lastFailureAt = now;
    this.restartCount++;
    this.lastErrorText = reason;
    this.replayOnConnect = true;
    this.log.warn(
      { informer: this.name, reason, retryInMs: delay },
      'informer failed; restarting after a delay',
    );
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.state === 'backoff') this.launch();
    }, delay);
  }

  private connected(): void {
    if (this.state !== 'running') return;
    this.lastActivity = performance.now();
    if (this.replayOnConnect) {
      this.replayOnConnect = false;
      this.log.info({ informer: this.name }, 'informer reconnected; re-queueing every cached object');
      for (const obj of this.lw.list()) this.dispatch(obj, 'replay');
    }
  }

  private checkWatchdog(): void {
    if (this.state !== 'running') return;
    const silentMs = performance.now() - this.lastActivity;
    if (silentMs > this.watchdogMs) {
      this.restart(`no watch event or reconnect for ${Math.round(silentMs / 1000)} s`);
    }
  }

  private resync(): void {
    if (!this.synced || this.state === 'stopped') return;
    for (const obj of this.lw.list()) this.dispatch(obj, 'resync');
  }

  private markSynced(): void {
    this.lastActivity = performance.now();
    if (this.synced) return;
    this.synced = true;
    for (const waiter of this.syncWaiters.splice(0)) waiter.resolve();
  }

  private dispatch(obj: T, event: InformerEvent): void {
    for (const handler of this.handlers) {
      try {
        handler(obj, event);
      } catch (err) {
        // A throwing handler must not break ListWatch's loop (it would skip the resourceVersion update).
        this.log.error({ informer: this.name, event, error: describeError(err) }, 'informer handler failed');
      }
    }
  }
}

interface WatchHooks {
  generation(): number;
  current(generation: number): boolean;
  timeoutSeconds(): number;
  /** ListWatch only watches once the list is in its cache. */
  watching(): void;
  activity(): void;
  failed(err: unknown): void;
}

/**
 * The Watch that ListWatch calls. It hands ListWatch a controller of its own, so that:
 * - done() of a watch that was aborted (by stop(), a restart or ListWatch itself) is swallowed: 1.4.0
 *   would report the AbortError as an error and abort whatever request is current;
 * - events of a superseded watch are dropped and the watch is aborted, even when ListWatch lost track
 *   of it (its `request` field is only set after the connection is up);
 * - every watch carries `timeoutSeconds` and bookmarks, and reports activity for the watchdog.
 */
class GuardedWatch extends Watch {
  private readonly live = new Set<AbortController>();

  constructor(
    kc: KubeConfig,
    private readonly hooks: WatchHooks,
  ) {
    super(kc);
  }

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    const generation = this.hooks.generation();
    const outer = new AbortController();
    const current = () => !outer.signal.aborted && this.hooks.current(generation);
    if (current()) this.hooks.watching();
    let finished = false;
    const finish = (err: unknown) => {
      if (finished) return;
      finished = true;
      this.live.delete(outer);
      if (current()) done(err);
    };
    let inner: AbortController;
    try {
      inner = await super.watch(
        path,
        { ...queryParams, allowWatchBookmarks: true, timeoutSeconds: this.hooks.timeoutSeconds() },
        (phase: string, obj: unknown, raw?: unknown) => {
          if (!current()) return;
          this.hooks.activity();
          callback(phase, obj, raw);
        },
        finish,
      );
    } catch (err) {
      // e.g. credentials that cannot be loaded: report it like a failed connection, never as a rejection.
      if (!finished && current()) {
        finished = true;
        this.hooks.failed(err);
      }
      outer.abort();
      return outer;
    }
    outer.signal.addEventListener('abort', () => inner.abort(), { once: true });
    if (finished || !current()) {
      inner.abort();
    } else {
      this.live.add(outer);
      this.hooks.activity();
    }
    return outer;
  }

  abortAll(): void {
    for (const controller of this.live) controller.abort();
    this.live.clear();
  }
}
