/** Tally's controller runtime on @kubernetes/client-node 1.4.0: informers → work queue → reconcile, under a Lease. */
export {
  Controller,
  type ControllerMetrics,
  type ControllerOptions,
  type ReconcileObservation,
} from './controller.js';
export type { ReconcileOutcome, ReconcileResult, Reconciler } from './controller.js';
export { describeError, isConflict, isNotFound, statusCode } from './errors.js';
export { customObjectSource, Informer, secretSource, typedSource } from './informer.js';
export type {
  CustomResource,
  InformerEvent,
  InformerHandler,
  InformerOptions,
  InformerSource,
} from './informer.js';
export { controllerOwnerKey, objectKey, splitKey, type OwnerType } from './keys.js';
export { LeaderElector, type LeaderElectionOptions, type LeadershipEnd } from './leader-election.js';
export { silentLogger, type Logger } from './logger.js';
export { Manager, type ManagerExit, type ManagerOptions } from './manager.js';
export {
  controllerRateLimiter,
  type ControllerRateLimiterOptions,
  type RateLimiter,
} from './rate-limiter.js';
export { WorkQueue, type WorkQueueOptions } from './work-queue.js';
