import { formatMoney } from '../core/money.js';
import { nextConditions, transitions, type ConditionInput } from './conditions.js';
import type { OperatorContext } from './context.js';
import type { IngestStats } from './pipeline/state.js';
import { canonical, type KindInfo, type TallyResource } from './resources.js';

/** Reasons of a condition that is merely on its way (no Warning Event for those). */
const PENDING = new Set(['ConfigPending', 'IngestNotLoaded', 'NoEventsYet', 'ForwarderNotReporting']);

export const isPending = (c: ConditionInput) => c.status !== 'True' && PENDING.has(c.reason);

/**
 * Writes the status when it differs from the cache, and records an Event for each transition of Ready
 * (and of failing conditions): Events mark changes, never reconcile loops.
 */
export async function commitStatus(
  ctx: OperatorContext,
  kind: KindInfo,
  obj: TallyResource,
  fields: Record<string, unknown>,
  conditions: ConditionInput[],
): Promise<void> {
  const generation = obj.metadata.generation ?? 0;
  const previous = obj.status?.conditions;
  const status = {
    observedGeneration: generation,
    ...fields,
    conditions: nextConditions(previous, conditions, generation),
  };
  const wrote = await ctx.kube.writeStatus(kind, obj, status);
  if (!wrote) return;
  for (const t of transitions(previous, conditions)) {
    if (t.status === 'True' && t.type === 'Ready') {
      await ctx.kube.event(obj, 'Normal', 'Ready', t.message);
    } else if (
      t.status === 'False' &&
      !isPending(t) &&
      (t.type === 'Ready' || !conditions.some((c) => c.type === 'Ready' && c.reason === t.reason))
    ) {
      await ctx.kube.event(obj, 'Warning', t.reason, t.message);
    }
  }
}

/** The one-line phase for people; conditions are the contract. */
export function phaseOf(
  ready: ConditionInput,
  receiving: boolean,
  labels: { waiting: string; receiving: string },
): string {
  if (ready.status === 'True') return receiving ? labels.receiving : labels.waiting;
  return isPending(ready) || ready.status === 'Unknown' ? 'Provisioning' : 'Error';
}

/** status.recentRevenue from ingest's 30-day totals; updateTime moves only when the totals do. */
export function recentRevenue(stats: IngestStats | undefined, previous: unknown) {
  const rows = stats?.revenue['30d'] ?? [];
  if (rows.length === 0) return undefined;
  const totals = rows
    .map((r) => ({
      currency: r.currency,
      minorUnits: r.amountMinor,
      display: formatMoney({ minor: r.amountMinor, currency: r.currency }),
    }))
    .sort((a, b) => a.currency.localeCompare(b.currency));
  const prev = previous as { totals?: unknown; updateTime?: string; window?: string } | undefined;
  const same = prev?.window === '30d' && canonical(prev.totals) === canonical(totals);
  let summary = totals.map((t) => t.display).join(', ');
  if (summary.length > 256) summary = `${summary.slice(0, 253)}...`;
  return {
    window: '30d',
    totals,
    summary,
    updateTime:
      same && prev?.updateTime ? prev.updateTime : new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
  };
}

/** Counts of the types a resource tracks, from ingest's per-type counts. */
export function countsOf(stats: IngestStats | undefined): Record<string, number> | undefined {
  if (!stats || Object.keys(stats.counts).length === 0) return undefined;
  return stats.counts;
}
