/**
 * Writes the copies of deploy/prometheus/alerts.yml that other formats load:
 * the Prometheus Operator's PrometheusRule (deploy/k8s/base/prometheusrule.yaml)
 * and the Helm chart's files/alerts.yml. deploy/rendered.test.ts fails when they differ.
 *
 *   bun deploy/sync-rules.ts
 */
import { join } from "node:path";

const DEPLOY = new URL(".", import.meta.url).pathname;
const source = await Bun.file(join(DEPLOY, "prometheus/alerts.yml")).text();
const groups = source.slice(source.indexOf("\ngroups:") + 1);

export const prometheusRule = `# Generated from deploy/prometheus/alerts.yml by \`bun deploy/sync-rules.ts\`: edit that file.
# The Prometheus Operator loads it when its labels match the Prometheus'
# ruleSelector: kube-prometheus-stack selects \`release: <its Helm release name>\`.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: edge-gateway
  labels:
    app.kubernetes.io/name: edge-gateway
    release: kube-prometheus-stack
spec:
${groups
  .trimEnd()
  .split("\n")
  .map((line) => (line === "" ? "" : `  ${line}`))
  .join("\n")}
`;

if (import.meta.main) {
  await Bun.write(join(DEPLOY, "k8s/base/prometheusrule.yaml"), prometheusRule);
  await Bun.write(join(DEPLOY, "helm/edge-gateway/files/alerts.yml"), source);
}
