import { describe, expect, it } from 'vitest';
import { STRIPE_CONVERSION_TYPES } from '../../core/api/v1alpha1/index.js';
import { enabledEvents, redact } from './endpoints.js';

describe('Stripe webhook endpoint helpers', () => {
  it('subscribes the events behind the tracked conversion types, plus failed payments and cancellations', () => {
    expect(enabledEvents(['invoice_paid'])).toEqual([
      'customer.subscription.deleted',
      'invoice.paid',
      'invoice.payment_failed',
    ]);
    expect(enabledEvents([...STRIPE_CONVERSION_TYPES])).toEqual([
      'charge.succeeded',
      'checkout.session.completed',
      'customer.subscription.created',
      'customer.subscription.deleted',
      'customer.subscription.updated',
      'invoice.paid',
      'invoice.payment_failed',
      'payment_intent.succeeded',
    ]);
  });

  it('never lets a key or signing secret through in a message', () => {
    expect(redact("The provided key 'rk_test_abc123' is bad; whsec_xyz too")).toBe(
      "The provided key 'rk_[redacted]' is bad; whsec_[redacted] too",
    );
  });
});
