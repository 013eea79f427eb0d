import type { Metric, Registry } from "prom-client";

type Labels = Record<string, string>;

/** What prom-client's registry reads from a metric's `get()`. */
interface Exposition {
  name: string;
  help: string;
  type: "counter" | "histogram" | "gauge";
  values: Array<{ metricName?: string; labels: Record<string, string | number>; value: number }>;
  aggregator: "sum";
}

/**
 * Labelled metrics whose children are resolved once and then count with plain
 * arithmetic. prom-client's own children validate and hash their label values
 * on every `inc` (~0.45 µs) and `observe` (~1.1 µs on Node), several percent of
 * a one-event request. They register in the same registry and are exposed in
 * the same format as prom-client's Counter and Histogram.
 *
 * Bounded by the caller: one series per distinct label set it resolves.
 */
abstract class ResolvedMetric<Series extends { labels: Labels }> {
  protected readonly series = new Map<string, Series>();

  constructor(
    readonly name: string,
    readonly help: string,
    /** The labels every child sets (what docs/metrics.md lists; children are not checked against it). */
    readonly labelNames: readonly string[],
    registry: Registry,
  ) {
    // prom-client's registry takes anything with name, help, type and get().
    registry.registerMetric(this as unknown as Metric);
  }

  protected resolve(labels: Labels, create: () => Series): Series {
    const key = JSON.stringify(labels);
    let found = this.series.get(key);
    if (!found) {
      found = create();
      this.series.set(key, found);
    }
    return found;
  }

  reset(): void {
    this.series.clear();
  }
}

export class ResolvedCounter extends ResolvedMetric<{ labels: Labels; value: number }> {
  readonly type = "counter" as const;
  readonly aggregator = "sum";

  child(labels: Labels): { inc(amount?: number): void } {
    const series = this.resolve(labels, () => ({ labels: { ...labels }, value: 0 }));
    return {
      inc: (amount = 1) => {
        series.value += amount;
      },
    };
  }

  get(): Promise<Exposition> {
    const values = [...this.series.values()].map(({ labels, value }) => ({ labels, value }));
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values, aggregator: "sum" });
  }
}

interface HistogramSeries {
  labels: Labels;
  /** Observations per bucket (not cumulative); the last slot holds those above every bound. */
  counts: number[];
  sum: number;
  count: number;
}

export class ResolvedHistogram extends ResolvedMetric<HistogramSeries> {
  readonly type = "histogram" as const;
  readonly aggregator = "sum";

  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    private readonly upperBounds: readonly number[],
    registry: Registry,
  ) {
    super(name, help, labelNames, registry);
  }

  child(labels: Labels): { observe(value: number): void } {
    const series = this.resolve(labels, () => ({
      labels: { ...labels },
      counts: new Array<number>(this.upperBounds.length + 1).fill(0),
      sum: 0,
      count: 0,
    }));
    const bounds = this.upperBounds;
    return {
      observe: (value) => {
        let bucket = 0;
        while (bucket < bounds.length && value > (bounds[bucket] as number)) bucket++;
        series.counts[bucket] = (series.counts[bucket] as number) + 1;
        series.sum += value;
        series.count++;
      },
    };
  }

  /** As prom-client writes a histogram: cumulative buckets with `le` first, then +Inf, sum and count. */
  get(): Promise<Exposition> {
    const values: Exposition["values"] = [];
    for (const { labels, counts, sum, count } of this.series.values()) {
      let cumulative = 0;
      this.upperBounds.forEach((le, index) => {
        cumulative += counts[index] as number;
        values.push({ metricName: `${this.name}_bucket`, labels: { le, ...labels }, value: cumulative });
      });
      values.push(
        { metricName: `${this.name}_bucket`, labels: { le: "+Inf", ...labels }, value: count },
        { metricName: `${this.name}_sum`, labels, value: sum },
        { metricName: `${this.name}_count`, labels, value: count },
      );
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values, aggregator: "sum" });
  }
}

/**
 * A gauge read when it is scraped: the sum of its sources' current values
 * (each router's requests in flight, the queue's depth), where a prom-client
 * Gauge is set on every change, several calls on a one-event request's path
 * (each ~0.05-0.4 µs with its label handling). Exposed as prom-client exposes
 * an unlabelled gauge.
 *
 * Bounded: its sources are added once by their owners (a router, the queue),
 * which are made at start and live as long as the registry.
 */
export class SampledGauge {
  readonly type = "gauge" as const;
  readonly aggregator = "sum";
  readonly labelNames: readonly string[] = [];
  private readonly sources: Array<() => number> = [];

  constructor(
    readonly name: string,
    readonly help: string,
    registry: Registry,
  ) {
    registry.registerMetric(this as unknown as Metric);
  }

  /** Adds `read` to what the gauge sums when scraped. */
  sampleFrom(read: () => number): void {
    this.sources.push(read);
  }

  get(): Promise<Exposition> {
    let value = 0;
    for (const read of this.sources) value += read();
    return Promise.resolve({
      name: this.name,
      help: this.help,
      type: this.type,
      values: [{ labels: {}, value }],
      aggregator: "sum",
    });
  }

  /** Nothing is stored here: the sources hold the values. */
  reset(): void {}
}
