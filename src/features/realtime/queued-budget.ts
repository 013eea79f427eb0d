/** What is queued towards one client, and whose client it is. */
export interface QueuedBytes<Client> {
  client: Client;
  bytes: number;
  tenant: string;
}

/** One tenant's queues, largest first once sorted, and what they hold from `next` on. */
interface TenantQueues<Client> {
  held: number;
  queues: Array<QueuedBytes<Client>>;
  next: number;
}

/**
 * The queues to drop so that all of them together hold at most `maxBytes`
 * and each tenant's at most half of it: a tenant over its half loses its
 * largest queues until it is within it; then, while the total is over, the
 * tenant holding the most loses its largest. Bounded one client at a time, a
 * tenant's clients that read nothing could otherwise hold as much as it may
 * open connections. Linear while within the bounds; past them, n log n.
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
  const tenants = new Map<string, TenantQueues<Client>>();
  for (const queue of queues) {
    const held = tenants.get(queue.tenant);
    if (held) {
      held.held += queue.bytes;
      held.queues.push(queue);
    } else tenants.set(queue.tenant, { held: queue.bytes, queues: [queue], next: 0 });
  }
  const dropped: Array<QueuedBytes<Client>> = [];
  const drop = (tenant: TenantQueues<Client>) => {
    const queue = tenant.queues[tenant.next++] as QueuedBytes<Client>;
    dropped.push(queue);
    tenant.held -= queue.bytes;
    total -= queue.bytes;
  };
  for (const tenant of tenants.values()) {
    if (tenant.held <= share) continue;
    tenant.queues.sort(largestFirst);
    while (tenant.held > share) drop(tenant);
  }
  if (total <= maxBytes) return dropped;
  const heap = new MaxHeap<TenantQueues<Client>>((tenant) => tenant.held);
  for (const tenant of tenants.values()) {
    if (tenant.next === 0) tenant.queues.sort(largestFirst);
    if (tenant.next < tenant.queues.length) heap.push(tenant);
  }
  while (total > maxBytes) {
    const tenant = heap.pop();
    if (!tenant) break;
    drop(tenant);
    if (tenant.next < tenant.queues.length) heap.push(tenant);
  }
  return dropped;
}

const largestFirst = <Client>(a: QueuedBytes<Client>, b: QueuedBytes<Client>) => b.bytes - a.bytes;

/** A binary heap whose top is the item of the largest key. */
class MaxHeap<Item> {
  private readonly items: Item[] = [];

  constructor(private readonly key: (item: Item) => number) {}

  push(item: Item): void {
    const items = this.items;
    let at = items.length;
    items.push(item);
    while (at > 0) {
      const parent = (at - 1) >> 1;
      if (this.key(items[parent] as Item) >= this.key(item)) break;
      items[at] = items[parent] as Item;
      at = parent;
    }
    items[at] = item;
  }

  pop(): Item | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length === 0 || last === undefined) return top;
    let at = 0;
    for (;;) {
      const left = 2 * at + 1;
      if (left >= items.length) break;
      const right = left + 1;
      const child =
        right < items.length && this.key(items[right] as Item) > this.key(items[left] as Item) ? right : left;
      if (this.key(items[child] as Item) <= this.key(last)) break;
      items[at] = items[child] as Item;
      at = child;
    }
    items[at] = last;
    return top;
  }
}
