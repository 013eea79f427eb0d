/** What is queued towards one client, and whose client it is. */
export interface QueuedBytes<Client> {
  client: Client;
  bytes: number;
  tenant: string;
}

/**
 * The queues to drop so that all of them together hold at most `maxBytes`
 * and each tenant's at most half of it: largest first, of a tenant over its
 * half, and while the total is over, of the tenant holding the most. Bounded
 * one client at a time, a tenant's clients that read nothing could otherwise
 * hold as much as it may open connections.
 */
export function overBudget<Client>(
  queues: Array<QueuedBytes<Client>>,
  maxBytes: number,
): Array<QueuedBytes<Client>> {
  const share = maxBytes / 2;
  let total = 0;
  for (const { bytes } of queues) total += bytes;
  // No tenant holds more than all of them do.
  if (total <= share) return [];
  const byTenant = new Map<string, number>();
  for (const { bytes, tenant } of queues) byTenant.set(tenant, (byTenant.get(tenant) ?? 0) + bytes);
  const largest = () => [...byTenant].reduce((a, b) => (b[1] > a[1] ? b : a))[0];
  const dropped: Array<QueuedBytes<Client>> = [];
  for (const queue of [...queues].sort((a, b) => b.bytes - a.bytes)) {
    const held = byTenant.get(queue.tenant) as number;
    if (held <= share && (total <= maxBytes || queue.tenant !== largest())) continue;
    dropped.push(queue);
    byTenant.set(queue.tenant, held - queue.bytes);
    total -= queue.bytes;
  }
  return dropped;
}
