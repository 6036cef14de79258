import { CoordinationV1Api, V1MicroTime, type V1Lease } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LeaderElector, type LeadershipEnd } from '../../operator/runtime/leader-election.js';
import { createTestNamespace, kubeConfig } from '../env/context.js';

/**
 * Short timings so takeovers happen in seconds; the ratios are the production ones. A renew deadline of
 * 4 s leaves room for a slow API server while the whole suite runs on two cores.
 */
const timings = { leaseDurationMs: 6_000, renewDeadlineMs: 4_000, retryPeriodMs: 1_000 };

interface Candidate {
  elector: LeaderElector;
  identity: string;
  started: number;
  stopped: LeadershipEnd[];
  leaders: string[];
}

describe('LeaderElector on a coordination.k8s.io/v1 Lease', () => {
  const kc = kubeConfig();
  const leases = kc.makeApiClient(CoordinationV1Api);
  const candidates: Candidate[] = [];
  let ns: string;

  beforeAll(async () => {
    ns = await createTestNamespace('lease');
  });
  afterAll(async () => {
    await Promise.all(candidates.map((c) => c.elector.stop()));
  });

  function candidate(identity: string, lease: string): Candidate {
    const seen = { started: 0, stopped: [] as LeadershipEnd[], leaders: [] as string[] };
    const elector = new LeaderElector(kc, {
      namespace: ns,
      name: lease,
      identity,
      ...timings,
      onStartedLeading: () => seen.started++,
      onStoppedLeading: (reason) => seen.stopped.push(reason),
      onNewLeader: (leader) => seen.leaders.push(leader),
    });
    const c = Object.assign(seen, { elector, identity });
    candidates.push(c);
    return c;
  }

  const readLease = (name: string): Promise<V1Lease> => leases.readNamespacedLease({ name, namespace: ns });

  it('of two replicas exactly one leads; the other takes over at once when the leader releases', async () => {
    const a = candidate('replica-a', 'tally-release');
    const b = candidate('replica-b', 'tally-release');
    a.elector.start();
    b.elector.start();
    await expect.poll(() => a.elector.isLeader || b.elector.isLeader, { timeout: 20_000 }).toBe(true);
    const [leader, follower] = a.elector.isLeader ? [a, b] : [b, a];

    // Let the leader renew a few times while the follower keeps reading the Lease.
    const renewTimes = new Set<string>();
    await expect
      .poll(
        async () => {
          const lease = await readLease('tally-release');
          expect(lease.spec?.holderIdentity).toBe(leader.identity);
          renewTimes.add(String(lease.spec?.renewTime));
          return renewTimes.size;
        },
        { timeout: 30_000, interval: 200 },
      )
      .toBeGreaterThanOrEqual(3);
    // The follower reads the Lease once per retry period; on a loaded machine its read may still be on its way.
    await expect.poll(() => follower.elector.leader, { timeout: 10_000 }).toBe(leader.identity);
    expect(follower.leaders).toEqual([leader.identity]);
    expect([leader.started, follower.started]).toEqual([1, 0]);
    expect(follower.elector.isLeader).toBe(false);
    const before = await readLease('tally-release');

    await leader.elector.release();
    expect(leader.elector.isLeader).toBe(false);
    expect(leader.stopped).toEqual(['released']);
    await expect(leader.elector.done).resolves.toBe('released');

    // holderIdentity was cleared, so the follower does not wait for the 6 s lease to expire.
    await expect.poll(() => follower.elector.isLeader, { timeout: 20_000 }).toBe(true);
    const after = await readLease('tally-release');
    expect(after.spec?.holderIdentity).toBe(follower.identity);
    expect(after.spec?.leaseTransitions).toBe((before.spec?.leaseTransitions ?? 0) + 1);
    expect(after.spec?.leaseDurationSeconds).toBe(6);
    expect(follower.started).toBe(1);
  });

  it('takes over from a leader that stopped renewing once its lease expires', async () => {
    const a = candidate('crashing-a', 'tally-crash');
    a.elector.start();
    await expect.poll(() => a.elector.isLeader, { timeout: 20_000 }).toBe(true);
    const b = candidate('standby-b', 'tally-crash');
    b.elector.start();
    await expect.poll(() => b.elector.leader, { timeout: 20_000 }).toBe('crashing-a');

    // A crash: no release, the Lease still names the old holder.
    await a.elector.stop();
    expect((await readLease('tally-crash')).spec?.holderIdentity).toBe('crashing-a');
    await expect(a.elector.done).resolves.toBe('stopped');
    expect(a.stopped).toEqual(['stopped']);

    await expect.poll(() => b.elector.isLeader, { timeout: 30_000 }).toBe(true);
    expect((await readLease('tally-crash')).spec?.holderIdentity).toBe('standby-b');
  });

  it("reports 'lost' when it cannot renew because someone else took the Lease", async () => {
    const a = candidate('victim-a', 'tally-stolen');
    a.elector.start();
    await expect.poll(() => a.elector.isLeader, { timeout: 20_000 }).toBe(true);

    // Another party writes itself into the Lease (with the resourceVersion it read, like any replica).
    const lease = await readLease('tally-stolen');
    const now = new V1MicroTime();
    await leases.replaceNamespacedLease({
      name: 'tally-stolen',
      namespace: ns,
      body: {
        ...lease,
        spec: {
          ...lease.spec,
          holderIdentity: 'intruder',
          renewTime: now,
          acquireTime: now,
          leaseDurationSeconds: 60,
        },
      },
    });

    await expect(a.elector.done).resolves.toBe('lost');
    expect(a.stopped).toEqual(['lost']);
    expect(a.elector.isLeader).toBe(false);
    expect(a.elector.leader).toBe('intruder');
    // It gave up without writing over the new holder.
    expect((await readLease('tally-stolen')).spec?.holderIdentity).toBe('intruder');
  });

  it('refuses timings under which a leader could outlive its lease', () => {
    const base = { namespace: 'x', name: 'y', identity: 'z' };
    expect(
      () => new LeaderElector(kc, { ...base, leaseDurationMs: 10_000, renewDeadlineMs: 10_000 }),
    ).toThrow(/leaseDuration > renewDeadline/);
    expect(() => new LeaderElector(kc, { ...base, renewDeadlineMs: 2_000, retryPeriodMs: 2_000 })).toThrow(
      /retryPeriod/,
    );
  });
});
