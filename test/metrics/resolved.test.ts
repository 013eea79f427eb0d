import { expect, test } from "bun:test";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { ResolvedCounter, ResolvedHistogram, SampledGauge } from "../../src/metrics/resolved.ts";

const BUCKETS = [0.001, 0.01, 0.1];
const SERIES = [
  { route: "/v1/events", method: "POST", status: "202" },
  { route: "/health", method: "GET", status: "200" },
];
const OBSERVED = [0.0005, 0.001, 0.002, 0.05, 0.5, 3];

test("resolved counter and histogram are exposed exactly as prom-client's own", async () => {
  const ours = new Registry();
  const labelNames = ["route", "method", "status"];
  const counter = new ResolvedCounter("requests_total", "Requests", labelNames, ours);
  const histogram = new ResolvedHistogram("duration_seconds", "Latency", labelNames, BUCKETS, ours);
  const theirs = new Registry();
  const promCounter = new Counter({
    name: "requests_total",
    help: "Requests",
    labelNames,
    registers: [theirs],
  });
  const promHistogram = new Histogram({
    name: "duration_seconds",
    help: "Latency",
    labelNames,
    buckets: BUCKETS,
    registers: [theirs],
  });

  for (const labels of SERIES) {
    const requests = counter.child(labels);
    const duration = histogram.child(labels);
    for (const value of OBSERVED) {
      requests.inc();
      duration.observe(value);
      promCounter.labels(labels).inc();
      promHistogram.labels(labels).observe(value);
    }
  }

  expect(await ours.metrics()).toBe(await theirs.metrics());
  expect(await ours.metrics()).toContain(
    'duration_seconds_bucket{le="0.001",route="/health",method="GET",status="200"} 2',
  );
});

test("resolving the same labels twice counts into one series", async () => {
  const registry = new Registry();
  const counter = new ResolvedCounter("requests_total", "Requests", ["route"], registry);
  counter.child({ route: "/a" }).inc();
  counter.child({ route: "/a" }).inc();
  expect(await registry.metrics()).toContain('requests_total{route="/a"} 2');
});

test("a sampled gauge is exposed as prom-client's gauge holding the sum of its sources when scraped", async () => {
  const ours = new Registry();
  const gauge = new SampledGauge("in_flight", "Requests being handled", ours);
  const theirs = new Registry();
  const promGauge = new Gauge({ name: "in_flight", help: "Requests being handled", registers: [theirs] });
  expect(await ours.metrics()).toBe(await theirs.metrics());

  let first = 2;
  gauge.sampleFrom(() => first);
  gauge.sampleFrom(() => 3);
  promGauge.set(5);
  expect(await ours.metrics()).toBe(await theirs.metrics());
  first = 0;
  promGauge.set(3);
  expect(await ours.metrics()).toBe(await theirs.metrics());
  expect(await ours.metrics()).toContain("in_flight 3");
});
