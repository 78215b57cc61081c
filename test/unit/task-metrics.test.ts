import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { metrics } from '../../platform/aws/deployment.js';
import {
  copyMetrics,
  EmfMetricsSink,
  metricsSinkFromEnvironment,
  replicationMetrics,
  retainedWalMetrics,
  type MetricValue,
  type MetricsSink,
} from '../../platform/observability.js';

let stdout: string[];

beforeEach(() => {
  stdout = [];
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout.push(String(chunk));
    return true;
  });
});

afterEach(() => {
  vi.restoreAllMocks();
  vi.unstubAllEnvs();
});

const emfLines = () =>
  stdout
    .join('')
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, any>);

const beat = (lagSeconds: number, rowsApplied: number, lagBytes = 0) => ({ lagSeconds, lagBytes, rowsApplied, sourceLsn: '0/3000060', processedLsn: '0/3000000' });

function recordingSink() {
  const published: MetricValue[][] = [];
  const sink: MetricsSink = { publish: (values) => void published.push([...values]) };
  return { sink, published, byName: (i: number) => Object.fromEntries(published[i]!.map((v) => [v.name, v.value])) };
}

describe('EMF on stdout (PGFERRY_METRICS=emf)', () => {
  it('writes the replicate metrics with the namespace, the Migration dimension and the service-only set', () => {
    vi.stubEnv('POWERTOOLS_SERVICE_NAME', 'pgferry-prod');
    const sink = metricsSinkFromEnvironment('orders-move', { ...process.env, PGFERRY_METRICS: 'emf' });
    expect(sink).toBeInstanceOf(EmfMetricsSink);
    replicationMetrics(sink!, { lagThresholdSeconds: 30 })(beat(42.5, 1200, 65_536));

    const [line, ...rest] = emfLines();
    expect(rest).toEqual([]);
    expect(line!._aws.CloudWatchMetrics).toEqual([
      {
        Namespace: metrics.namespace,
        Dimensions: [[metrics.serviceDimension, 'Migration'], [metrics.serviceDimension]],
        Metrics: [
          { Name: metrics.names.lagSeconds, Unit: 'Seconds' },
          { Name: metrics.names.lagBytes, Unit: 'Bytes' },
          { Name: metrics.names.rowsApplied, Unit: 'Count' },
          { Name: metrics.names.heartbeat, Unit: 'Count' },
          { Name: metrics.names.lagOverThreshold, Unit: 'Count' },
        ],
      },
    ]);
    expect(line).toMatchObject({
      service: 'pgferry-prod',
      Migration: 'orders-move',
      ReplicationLagSeconds: 42.5,
      ReplicationLagBytes: 65_536,
      RowsApplied: 1200,
      ReplicatorHeartbeat: 1,
      ReplicationLagOverThreshold: 1,
    });
    expect(typeof line!._aws.Timestamp).toBe('number');
  });

  it('writes RowsCopied and BytesCopied per finished unit, under POWERTOOLS_METRICS_NAMESPACE when set', () => {
    vi.stubEnv('POWERTOOLS_SERVICE_NAME', 'pgferry-prod');
    vi.stubEnv('POWERTOOLS_METRICS_NAMESPACE', 'pgferry-staging');
    const observe = copyMetrics(metricsSinkFromEnvironment('orders-move', { ...process.env, PGFERRY_METRICS: 'emf' })!);
    observe({ id: 1, source: { schema: 'shop', name: 'orders' }, target: { schema: 'shop', name: 'orders' }, rows: 5000, bytes: 1_048_576 });
    observe({ id: 2, source: { schema: 'shop', name: 'items' }, target: { schema: 'shop', name: 'items' }, rows: 7, bytes: 512 });
    const lines = emfLines();
    expect(lines).toHaveLength(2);
    expect(lines[0]!._aws.CloudWatchMetrics[0]).toMatchObject({
      Namespace: 'pgferry-staging',
      Dimensions: [['service', 'Migration'], ['service']],
      Metrics: [
        { Name: metrics.names.rowsCopied, Unit: 'Count' },
        { Name: metrics.names.bytesCopied, Unit: 'Bytes' },
      ],
    });
    expect(lines.map((l) => [l.Migration, l.RowsCopied, l.BytesCopied])).toEqual([
      ['orders-move', 5000, 1_048_576],
      ['orders-move', 7, 512],
    ]);
  });

  it('emits nothing unless the deployment asks for it (local runs)', () => {
    expect(metricsSinkFromEnvironment('orders-move', {})).toBeUndefined();
    expect(metricsSinkFromEnvironment('orders-move', { PGFERRY_METRICS: 'off' })).toBeUndefined();
    expect(stdout).toEqual([]);
  });
});

describe('replication metrics from the replicator heartbeats', () => {
  it('publishes every 10 s: the largest lag of the interval, the rows applied in it, and a heartbeat', () => {
    let now = 0;
    const { sink, published, byName } = recordingSink();
    const observe = replicationMetrics(sink, { lagThresholdSeconds: 5, now: () => now });
    observe(beat(0.2, 10)); // the first heartbeat is published at once
    for (let second = 1; second <= 9; second++) {
      now = second * 1000;
      observe(beat(second === 4 ? 6 : 1, 100, second * 10));
    }
    expect(published).toHaveLength(1);
    now = 10_000;
    observe(beat(2, 100, 5));
    expect(published).toHaveLength(2);
    expect(byName(0)).toEqual({ ReplicationLagSeconds: 0.2, ReplicationLagBytes: 0, RowsApplied: 10, ReplicatorHeartbeat: 1, ReplicationLagOverThreshold: 0 });
    expect(byName(1)).toEqual({ ReplicationLagSeconds: 6, ReplicationLagBytes: 90, RowsApplied: 1000, ReplicatorHeartbeat: 1, ReplicationLagOverThreshold: 1 });

    now = 20_000;
    observe(beat(5, 0));
    // Exactly at the threshold is not over it.
    expect(byName(2)).toMatchObject({ ReplicationLagSeconds: 5, RowsApplied: 0, ReplicationLagOverThreshold: 0 });
  });
});

describe('retained WAL metrics', () => {
  const reading = (bytes: number | null, state: 'ok' | 'over' | 'lost') => ({
    slotName: 'pgferry_orders',
    exists: state !== 'lost',
    bytes,
    walStatus: state === 'lost' ? ('lost' as const) : ('reserved' as const),
    safeWalSizeBytes: null,
    maxSlotWalKeepSizeBytes: null,
    keepSizeShare: null,
    lost: state === 'lost',
    invalidationReason: state === 'lost' ? 'wal_removed' : null,
    state,
  });

  it('publishes RetainedWalBytes and a 0/1 RetainedWalOverThreshold with every measurement; a lost slot is over', () => {
    const { sink, published, byName } = recordingSink();
    const observe = retainedWalMetrics(sink);
    observe(reading(4096, 'ok'));
    observe(reading(60 * 1024 ** 3, 'over'));
    observe(reading(null, 'lost'));
    expect(published).toHaveLength(3);
    expect(byName(0)).toEqual({ RetainedWalBytes: 4096, RetainedWalOverThreshold: 0 });
    expect(byName(1)).toEqual({ RetainedWalBytes: 60 * 1024 ** 3, RetainedWalOverThreshold: 1 });
    expect(byName(2)).toEqual({ RetainedWalOverThreshold: 1 });
    expect(published[0]!.find((v) => v.name === metrics.names.retainedWalBytes)?.unit).toBe('Bytes');
  });
});
