import { murmur2 } from "@platformatic/kafka";

/**
 * The client's default partitioner (murmur2 of the key's UTF-8 bytes,
 * unsigned; the producer takes it modulo the partition count), so a key keeps
 * the partition it had. Hashes of recent keys are kept, since most traffic
 * repeats keys; past `maxKeys` the cache starts over, which bounds it.
 */
export class PartitionHash {
  private readonly hashes = new Map<string, number>();

  constructor(private readonly maxKeys = 8192) {}

  of(key: string): number {
    let hash = this.hashes.get(key);
    if (hash === undefined) {
      hash = murmur2(Buffer.from(key)) >>> 0;
      if (this.hashes.size >= this.maxKeys) this.hashes.clear();
      this.hashes.set(key, hash);
    }
    return hash;
  }
}
