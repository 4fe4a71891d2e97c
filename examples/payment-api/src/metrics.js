'use strict';
// The service's own Prometheus metrics, in the text exposition format.  They count
// what the HTTP clients saw; the extension's idempotency.stats (exported by
// postgres_exporter with contrib/prometheus/queries.yaml) counts what the database did.
// Series are few and fixed, so a small hand-written registry is enough.

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

function labelText(labels) {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${String(v).replace(/["\\\n]/g, '\\$&')}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

class Counter {
  constructor(name, help) {
    Object.assign(this, { name, help, values: new Map() });
  }

  inc(labels = {}, by = 1) {
    const key = labelText(labels);
    this.values.set(key, (this.values.get(key) || 0) + by);
  }

  render() {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const [labels, value] of this.values) lines.push(`${this.name}${labels} ${value}`);
    return lines;
  }
}

class Histogram {
  constructor(name, help, buckets = LATENCY_BUCKETS) {
    Object.assign(this, { name, help, buckets, series: new Map() });
  }

  observe(labels, seconds) {
    const key = labelText(labels);
    let s = this.series.get(key);
    if (!s) {
      s = { labels, counts: new Array(this.buckets.length).fill(0), sum: 0, count: 0 };
      this.series.set(key, s);
    }
    this.buckets.forEach((le, i) => { if (seconds <= le) s.counts[i] += 1; });
    s.sum += seconds;
    s.count += 1;
  }

  render() {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const s of this.series.values()) {
      this.buckets.forEach((le, i) => {
        lines.push(`${this.name}_bucket${labelText({ ...s.labels, le })} ${s.counts[i]}`);
      });
      lines.push(`${this.name}_bucket${labelText({ ...s.labels, le: '+Inf' })} ${s.count}`);
      lines.push(`${this.name}_sum${labelText(s.labels)} ${s.sum}`);
      lines.push(`${this.name}_count${labelText(s.labels)} ${s.count}`);
    }
    return lines;
  }
}

function createMetrics() {
  const metrics = {
    requests: new Counter('payment_api_requests_total', 'HTTP requests answered, by route and status.'),
    duration: new Histogram('payment_api_request_duration_seconds', 'HTTP request latency, by route.'),
    idempotency: new Counter('payment_api_idempotency_total',
      'Idempotency-Key handling: claims by outcome, and what became of the response.'),
    processor: new Counter('payment_api_processor_calls_total',
      'Calls to the card processor, by operation and result (unknown: a 5xx or no answer).'),
  };
  const all = Object.values(metrics);
  metrics.render = () => `${all.flatMap((m) => m.render()).join('\n')}\n`;
  return metrics;
}

module.exports = { createMetrics };
