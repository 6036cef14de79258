import type { Agent } from 'node:http';
import type { KubeConfig } from '@kubernetes/client-node';

type AgentFactory = (cluster: unknown, options: Record<string, unknown>) => Agent;

/**
 * client-node 1.4.0 builds a new https.Agent for every request (KubeConfig.createAgent), so every API
 * call pays a fresh TLS handshake and secure context: in the operator benchmark that was a quarter of
 * the CPU. This keeps one keep-alive agent per distinct set of TLS options on this KubeConfig.
 */
export function reuseConnections(kc: KubeConfig): KubeConfig {
  const target = kc as unknown as { createAgent: AgentFactory; __tallyShared?: boolean };
  if (target.__tallyShared) return kc;
  const original = target.createAgent.bind(kc);
  const agents = new Map<string, Agent>();
  target.createAgent = (cluster, options) => {
    // A KubeConfig's credentials are fixed once loaded: the server and TLS switches tell agents apart.
    const c = cluster as { server?: string } | undefined;
    const key = [
      c?.server,
      options.rejectUnauthorized,
      options.servername,
      size(options.cert),
      size(options.ca),
    ].join('|');
    let agent = agents.get(key);
    if (!agent) {
      agent = original(cluster, { ...options, keepAlive: true });
      agents.set(key, agent);
    }
    return agent;
  };
  target.__tallyShared = true;
  return kc;
}

function size(v: unknown): number {
  return typeof v === 'string' || Buffer.isBuffer(v) ? v.length : 0;
}
