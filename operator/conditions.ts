import type { Condition } from '../core/api/v1alpha1/index.js';

export interface ConditionInput {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
}

/**
 * The new condition list: lastTransitionTime moves only when a condition's status flips (the
 * metav1.Condition contract), so an unchanged world produces an identical list and no status write.
 */
export function nextConditions(
  previous: readonly Condition[] | undefined,
  next: readonly ConditionInput[],
  generation: number,
  now: Date = new Date(),
): Condition[] {
  const stamp = new Date(Math.floor(now.getTime() / 1000) * 1000).toISOString().replace('.000Z', 'Z');
  return next.map((c) => {
    const before = previous?.find((p) => p.type === c.type);
    return {
      type: c.type,
      status: c.status,
      observedGeneration: generation,
      lastTransitionTime: before && before.status === c.status ? before.lastTransitionTime : stamp,
      reason: c.reason,
      message: c.message.slice(0, 32768),
    };
  });
}

/** Conditions whose status or reason changed: the transitions worth an Event. */
export function transitions(
  previous: readonly Condition[] | undefined,
  next: readonly ConditionInput[],
): ConditionInput[] {
  return next.filter((c) => {
    const before = previous?.find((p) => p.type === c.type);
    return !before || before.status !== c.status || before.reason !== c.reason;
  });
}

/** Ready summarises the others: True only when every listed condition is True. */
export function readyCondition(
  parts: readonly ConditionInput[],
  ready: { reason: string; message: string },
): ConditionInput {
  const failing = parts.find((c) => c.status !== 'True');
  return failing
    ? { type: 'Ready', status: failing.status, reason: failing.reason, message: failing.message }
    : { type: 'Ready', status: 'True', ...ready };
}
