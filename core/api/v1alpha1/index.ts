export * from './common.js';
export * from './money.js';
export * from './stripe-integration.js';
export * from './meta-pixel.js';
export * from './cal-integration.js';
export * from './kinds.js';
export * from './crds.js';
