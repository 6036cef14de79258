import { describe, expect, it } from 'vitest';
import { nextConditions, readyCondition, transitions } from './conditions.js';

describe('conditions', () => {
  const t0 = new Date('2026-12-04T10:00:00.123Z');
  const t1 = new Date('2026-12-04T11:00:00Z');

  it('moves lastTransitionTime only when the status flips, so an unchanged world writes nothing', () => {
    const first = nextConditions(
      undefined,
      [{ type: 'Ready', status: 'False', reason: 'A', message: 'a' }],
      1,
      t0,
    );
    expect(first[0]).toEqual({
      type: 'Ready',
      status: 'False',
      reason: 'A',
      message: 'a',
      observedGeneration: 1,
      lastTransitionTime: '2026-12-04T10:00:00Z',
    });
    const sameStatus = nextConditions(
      first,
      [{ type: 'Ready', status: 'False', reason: 'B', message: 'b' }],
      2,
      t1,
    );
    expect(sameStatus[0]?.lastTransitionTime).toBe('2026-12-04T10:00:00Z');
    expect(sameStatus[0]?.observedGeneration).toBe(2);
    const flipped = nextConditions(
      sameStatus,
      [{ type: 'Ready', status: 'True', reason: 'Ready', message: '' }],
      2,
      t1,
    );
    expect(flipped[0]?.lastTransitionTime).toBe('2026-12-04T11:00:00Z');
  });

  it('reports transitions of status or reason only', () => {
    const prev = nextConditions(
      undefined,
      [{ type: 'Ready', status: 'False', reason: 'A', message: 'a' }],
      1,
      t0,
    );
    expect(
      transitions(prev, [{ type: 'Ready', status: 'False', reason: 'A', message: 'other text' }]),
    ).toEqual([]);
    expect(transitions(prev, [{ type: 'Ready', status: 'False', reason: 'B', message: 'b' }])).toHaveLength(
      1,
    );
  });

  it('derives Ready from the first condition that is not True', () => {
    const ok = { type: 'X', status: 'True', reason: 'Ok', message: 'ok' } as const;
    const bad = { type: 'Y', status: 'False', reason: 'SecretNotFound', message: 'create it' } as const;
    expect(readyCondition([ok, bad], { reason: 'Ready', message: 'fine' })).toEqual({
      type: 'Ready',
      status: 'False',
      reason: 'SecretNotFound',
      message: 'create it',
    });
    expect(readyCondition([ok], { reason: 'Ready', message: 'fine' }).status).toBe('True');
  });
});
