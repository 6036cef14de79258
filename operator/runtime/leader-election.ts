import { setTimeout as sleep } from 'node:timers/promises';
import {
  CoordinationV1Api,
  V1MicroTime,
  type KubeConfig,
  type V1Lease,
  type V1LeaseSpec,
} from '@kubernetes/client-node';
import { describeError, isConflict, isNotFound } from './errors.js';
import { silentLogger, type Logger } from './logger.js';

/** Why leadership (or the attempt to get it) ended. `lost` means another replica may be leading: exit. */
export type LeadershipEnd = 'lost' | 'released' | 'stopped';

export interface LeaderElectionOptions {
  /** Namespace of the Lease: the operator's own. */
  namespace: string;
  /** Lease name, shared by every replica, e.g. `tally-operator`. */
  name: string;
  /** This replica: the pod name. */
  identity: string;
  /** How long a holder's lease lasts without renewal before others may take it. Default 15 s. */
  leaseDurationMs?: number;
  /** How long the leader keeps retrying a failed renewal before it gives leadership up. Default 10 s. */
  renewDeadlineMs?: number;
  /** Pause between attempts to acquire or renew. Default 2 s. */
  retryPeriodMs?: number;
  onStartedLeading?: () => void;
  onStoppedLeading?: (reason: LeadershipEnd) => void;
  /** Called when this replica sees a different holder, itself included. */
  onNewLeader?: (identity: string) => void;
  log?: Logger;
}

/** client-go's wait.JitterUntil factor for the acquire loop: replicas do not retry in lock-step. */
const ACQUIRE_JITTER = 1.2;

/**
 * Leader election on a coordination.k8s.io/v1 Lease, after client-go's tools/leaderelection (client-node
 * has no helper). Optimistic concurrency does the locking: every write replaces the Lease with the
 * resourceVersion just read, so of two replicas writing at once one gets 409 Conflict and stays a follower.
 * Expiry is judged by when this replica last saw the Lease change, on its own monotonic clock, so clock
 * skew between nodes does not matter.
 */
export class LeaderElector {
  readonly done: Promise<LeadershipEnd>;
  private readonly api: CoordinationV1Api;
  private readonly log: Logger;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly halt = new AbortController();
  private resolveDone!: (reason: LeadershipEnd) => void;
  private loop: Promise<'lost' | 'stopped'> | undefined;
  private leading = false;
  private ended = false;
  private observedRecord = '';
  private observedAt = 0;
  private observedHolder = '';

  constructor(
    kc: KubeConfig,
    private readonly opts: LeaderElectionOptions,
  ) {
    this.api = kc.makeApiClient(CoordinationV1Api);
    this.log = opts.log ?? silentLogger;
    this.leaseDurationMs = opts.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = opts.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = opts.retryPeriodMs ?? 2_000;
    // client-go's checks: a leader must give up before its lease can expire under it.
    if (!(
      this.leaseDurationMs > this.renewDeadlineMs &&
      this.renewDeadlineMs > ACQUIRE_JITTER * this.retryPeriodMs
    )) {
      throw new Error(
        `leader election needs leaseDuration > renewDeadline > ${ACQUIRE_JITTER} × retryPeriod ` +
          `(got ${this.leaseDurationMs}, ${this.renewDeadlineMs}, ${this.retryPeriodMs} ms)`,
      );
    }
    if (this.leaseDurationMs < 1000)
      throw new Error('leaseDurationMs must be at least 1000 (the Lease counts seconds)');
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  get isLeader(): boolean {
    return this.leading;
  }

  /** The holder this replica last saw on the Lease ('' when nobody holds it). */
  get leader(): string {
    return this.observedHolder;
  }

  /** Starts trying to acquire the Lease, then renews it while leading; idempotent. */
  start(): void {
    if (this.loop || this.ended) return;
    this.loop = this.run();
    void this.loop.then((reason) => {
      if (reason === 'lost') this.end('lost');
    });
  }

  /**
   * Graceful shutdown: stop renewing and clear holderIdentity, so another replica takes over at once
   * instead of waiting for the lease to expire.
   */
  async release(): Promise<void> {
    if (this.ended) return;
    this.halt.abort();
    await this.loop;
    if (this.ended) return;
    if (this.leading) {
      try {
        await withTimeout(this.clearHolder(), this.renewDeadlineMs);
      } catch (err) {
        // Not fatal: the others take over when the lease expires.
        this.log.warn(
          { lease: this.leaseName(), error: describeError(err) },
          'could not release the leader lease',
        );
      }
    }
    this.end('released');
  }

  /** Stops without touching the Lease, as a crashed replica would: the others wait for it to expire. */
  async stop(): Promise<void> {
    if (this.ended) return;
    this.halt.abort();
    await this.loop;
    this.end('stopped');
  }

  private async run(): Promise<'lost' | 'stopped'> {
    const signal = this.halt.signal;
    while (!signal.aborted && !(await this.bounded(this.attempt(), this.renewDeadlineMs))) {
      await this.pause(this.retryPeriodMs * (1 + Math.random() * ACQUIRE_JITTER));
    }
    if (signal.aborted) return 'stopped';
    this.leading = true;
    this.log.info({ lease: this.leaseName(), identity: this.opts.identity }, 'became the leader');
    this.opts.onStartedLeading?.();

    let renewedAt = performance.now();
    for (;;) {
      await this.pause(this.retryPeriodMs);
      if (signal.aborted) return 'stopped';
      // A renewal that hangs must not outlive the deadline.
      const remaining = renewedAt + this.renewDeadlineMs - performance.now();
      const renewed = await this.bounded(this.attempt(), remaining);
      if (signal.aborted) return 'stopped';
      if (renewed) {
        renewedAt = performance.now();
      } else if (performance.now() - renewedAt >= this.renewDeadlineMs) {
        this.log.error(
          { lease: this.leaseName(), identity: this.opts.identity, holder: this.observedHolder },
          'lost the leader lease: could not renew it within the renew deadline',
        );
        return 'lost';
      }
    }
  }

  /** client-go's release: an empty holder and a 1 s lease, written only while the Lease still names us. */
  private async clearHolder(): Promise<void> {
    const { name, namespace, identity } = this.opts;
    const lease = await this.api.readNamespacedLease({ name, namespace });
    if (lease.spec?.holderIdentity !== identity) return;
    const now = new V1MicroTime();
    const spec = {
      ...lease.spec,
      holderIdentity: '',
      leaseDurationSeconds: 1,
      acquireTime: now,
      renewTime: now,
    };
    await this.api.replaceNamespacedLease({ name, namespace, body: { ...lease, spec } });
    this.log.info({ lease: this.leaseName(), identity }, 'released the leader lease');
  }

  /** One tryAcquireOrRenew; false when another replica holds the Lease, we lost a race, or the API failed. */
  private async attempt(): Promise<boolean> {
    try {
      return await this.tryAcquireOrRenew();
    } catch (err) {
      this.log.warn({ lease: this.leaseName(), error: describeError(err) }, 'leader election attempt failed');
      return false;
    }
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { name, namespace, identity } = this.opts;
    let lease: V1Lease;
    try {
      lease = await this.api.readNamespacedLease({ name, namespace });
    } catch (err) {
      if (!isNotFound(err)) throw err;
      const spec = this.record(undefined);
      try {
        await this.api.createNamespacedLease({
          namespace,
          body: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace }, spec },
        });
      } catch (createErr) {
        if (isConflict(createErr)) return false; // another replica created it first
        throw createErr;
      }
      this.observe(spec);
      return true;
    }

    const current = lease.spec ?? {};
    this.observe(current);
    const holder = current.holderIdentity ?? '';
    const durationMs = (current.leaseDurationSeconds ?? this.leaseDurationMs / 1000) * 1000;
    if (holder !== '' && holder !== identity && this.observedAt + durationMs > performance.now()) {
      return false; // held by someone else and not expired
    }
    const spec = this.record(current);
    try {
      await this.api.replaceNamespacedLease({ name, namespace, body: { ...lease, spec } });
    } catch (err) {
      if (isConflict(err)) return false; // someone else wrote the Lease since we read it
      throw err;
    }
    this.observe(spec);
    return true;
  }

  /** The Lease spec that makes this replica the holder, keeping acquireTime while it renews. */
  private record(current: V1LeaseSpec | undefined): V1LeaseSpec {
    const now = new V1MicroTime();
    const renewing = current?.holderIdentity === this.opts.identity;
    return {
      holderIdentity: this.opts.identity,
      leaseDurationSeconds: Math.ceil(this.leaseDurationMs / 1000),
      acquireTime: renewing ? current?.acquireTime : now,
      renewTime: now,
      leaseTransitions: (current?.leaseTransitions ?? 0) + (current === undefined || renewing ? 0 : 1),
    };
  }

  private observe(spec: V1LeaseSpec): void {
    const record = JSON.stringify([
      spec.holderIdentity,
      spec.renewTime,
      spec.acquireTime,
      spec.leaseTransitions,
      spec.leaseDurationSeconds,
    ]);
    if (record !== this.observedRecord) {
      this.observedRecord = record;
      this.observedAt = performance.now();
    }
    const holder = spec.holderIdentity ?? '';
    if (holder !== this.observedHolder) {
      this.observedHolder = holder;
      if (holder !== '') this.opts.onNewLeader?.(holder);
    }
  }

  private end(reason: LeadershipEnd): void {
    if (this.ended) return;
    this.ended = true;
    this.halt.abort();
    const wasLeading = this.leading;
    this.leading = false;
    if (wasLeading) this.opts.onStoppedLeading?.(reason);
    this.resolveDone(reason);
  }

  /** The attempt's answer, or false when it takes longer than `ms` or the elector is halted meanwhile. */
  private bounded(attempt: Promise<boolean>, ms: number): Promise<boolean> {
    return Promise.race([attempt, this.pause(ms).then(() => false)]);
  }

  /** Sleeps, waking early when stopped or released. */
  private async pause(ms: number): Promise<void> {
    await sleep(Math.max(0, ms), undefined, { signal: this.halt.signal }).catch(() => {});
  }

  private leaseName(): string {
    return `${this.opts.namespace}/${this.opts.name}`;
  }
}

async function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  const timer = new AbortController();
  try {
    return await Promise.race([
      work,
      sleep(ms, undefined, { signal: timer.signal }).then(() => {
        throw new Error(`timed out after ${ms} ms`);
      }),
    ]);
  } finally {
    timer.abort();
  }
}
