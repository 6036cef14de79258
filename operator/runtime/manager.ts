import type { KubeConfig, KubernetesObject } from '@kubernetes/client-node';
import type { Controller } from './controller.js';
import type { Informer } from './informer.js';
import { LeaderElector, type LeaderElectionOptions, type LeadershipEnd } from './leader-election.js';
import { silentLogger, type Logger } from './logger.js';

/** How a manager ended. `leadership-lost`: another replica may be reconciling now, so exit the process. */
export type ManagerExit = 'stopped' | 'leadership-lost';

export interface ManagerOptions {
  /** Leader election on a Lease; omit to reconcile unconditionally (a single replica, tests). */
  leaderElection?: { kubeConfig: KubeConfig } & Omit<
    LeaderElectionOptions,
    'onStartedLeading' | 'onStoppedLeading'
  >;
  /** start() fails when the caches have not synced by then (controller-runtime's CacheSyncTimeout). Default 2 min. */
  syncTimeoutMs?: number;
  log?: Logger;
}

/**
 * The process lifecycle of the operator's controllers, in controller-runtime's order: informers start
 * and fill their caches first (every replica keeps a warm cache), then leader election, and workers
 * reconcile only while this replica leads. Losing the lease stops everything and resolves `done`.
 */
export class Manager {
  readonly done: Promise<ManagerExit>;
  private readonly controllers: Controller[] = [];
  private readonly informers = new Set<Informer<KubernetesObject>>();
  private readonly elector: LeaderElector | undefined;
  private readonly log: Logger;
  private resolveDone!: (exit: ManagerExit) => void;
  private state: 'new' | 'starting' | 'running' | 'stopping' | 'stopped' = 'new';
  private stopping: Promise<void> | undefined;

  constructor(private readonly opts: ManagerOptions = {}) {
    this.log = opts.log ?? silentLogger;
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
    const election = opts.leaderElection;
    if (election) {
      const { kubeConfig, ...rest } = election;
      this.elector = new LeaderElector(kubeConfig, {
        log: this.log,
        ...rest,
        onStartedLeading: () => this.startedLeading(),
        onStoppedLeading: (reason) => this.stoppedLeading(reason),
      });
    }
  }

  /** Adds a controller; its watched informers are started with the manager. */
  addController(controller: Controller): Controller {
    this.assertNotStarted();
    this.controllers.push(controller);
    return controller;
  }

  /** Adds an informer no controller watches, e.g. a cache of referenced Secrets that reconciles read. */
  addInformer<T extends KubernetesObject>(informer: Informer<T>): Informer<T> {
    this.assertNotStarted();
    this.informers.add(informer as unknown as Informer<KubernetesObject>);
    return informer;
  }

  get isLeader(): boolean {
    return this.elector ? this.elector.isLeader : this.state === 'running';
  }

  /**
   * Starts the informers, waits for their caches, then joins leader election (or starts the workers at
   * once without it). Resolves before leadership is won: a standby replica waits on `done`.
   */
  async start(): Promise<void> {
    this.assertNotStarted();
    this.state = 'starting';
    const informers = this.allInformers();
    for (const informer of informers) informer.start();
    const timeoutMs = this.opts.syncTimeoutMs ?? 120_000;
    try {
      await Promise.all(informers.map((i) => i.waitForSync(timeoutMs)));
    } catch (err) {
      if (this.state === 'starting') await this.stop();
      throw err;
    }
    if (this.state !== 'starting') return; // stop() was called meanwhile
    this.state = 'running';
    this.log.info({ informers: informers.map((i) => i.name) }, 'caches synced');
    if (this.elector) this.elector.start();
    else this.startWorkers();
  }

  /**
   * Graceful shutdown: workers finish the reconciles in flight, then the lease is released (so a
   * standby takes over at once, and never while we still reconcile), then the informers stop.
   */
  stop(): Promise<void> {
    this.stopping ??= this.shutDown('stopped');
    return this.stopping;
  }

  private async shutDown(exit: ManagerExit): Promise<void> {
    this.state = 'stopping';
    await Promise.all(this.controllers.map((c) => c.stopWorkers()));
    if (exit === 'stopped') await this.elector?.release();
    await Promise.all(this.allInformers().map((i) => i.stop()));
    this.state = 'stopped';
    this.resolveDone(exit);
  }

  private startedLeading(): void {
    if (this.state !== 'running') return;
    this.startWorkers();
  }

  private stoppedLeading(reason: LeadershipEnd): void {
    if (reason !== 'lost') return;
    this.log.error({}, 'leadership lost; stopping every controller');
    this.stopping ??= this.shutDown('leadership-lost');
  }

  private startWorkers(): void {
    for (const controller of this.controllers) controller.startWorkers();
  }

  private allInformers(): Informer<KubernetesObject>[] {
    return [...new Set([...this.informers, ...this.controllers.flatMap((c) => c.informers)])];
  }

  private assertNotStarted(): void {
    if (this.state !== 'new') throw new Error('the manager has already been started');
  }
}
