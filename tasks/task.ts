/**
 * The one way a Fargate task of pgferry starts: it reads its settings from the container
 * environment (the workflow's container overrides), loads the migration's spec from the
 * target's control schema, and exits non-zero with a readable line on stderr when it fails.
 */
import type pg from 'pg';
import { connectSide, type EndpointSettings } from '../engine/connect/index.js';
import { loadSpec } from '../engine/control/index.js';
import { parseNormalizedSpec, type MigrationSpec } from '../engine/spec/index.js';
import { DefaultSecretsProvider } from '../platform/secrets/index.js';

export interface TaskContext {
  migration: string;
  spec: MigrationSpec;
  env: NodeJS.ProcessEnv;
  connectSource: () => Promise<pg.Client>;
  connectTarget: () => Promise<pg.Client>;
  log: (message: string) => void;
}

export function requiredEnv(env: NodeJS.ProcessEnv, name: string): string {
  const value = env[name];
  if (!value) throw new Error(`${name} is not set: this task must be started by the pgferry workflow.`);
  return value;
}

export async function taskContext(task: string, env: NodeJS.ProcessEnv = process.env): Promise<TaskContext> {
  const migration = requiredEnv(env, 'PGFERRY_MIGRATION');
  const targetSettings = JSON.parse(requiredEnv(env, 'PGFERRY_TARGET')) as EndpointSettings;
  const secrets = new DefaultSecretsProvider(env);
  const applicationName = `pgferry-${task}`;
  const connectTarget = () => connectSide('target', targetSettings, secrets, { applicationName });
  const control = await connectTarget();
  let spec: MigrationSpec;
  try {
    spec = parseNormalizedSpec(await loadSpec(control, migration));
  } finally {
    await control.end();
  }
  return {
    migration,
    spec,
    env,
    connectSource: () => connectSide('source', spec.source, secrets, { applicationName }),
    connectTarget,
    log: (message) => console.log(`${new Date().toISOString()} ${task} ${message}`),
  };
}

/** Runs a task body and sets the exit code; the last stderr line is the reason a person reads. */
export async function runTask(task: string, body: (context: TaskContext) => Promise<void>): Promise<void> {
  try {
    await body(await taskContext(task));
    process.exitCode = 0;
  } catch (error) {
    console.error(`${task} failed: ${(error as Error)?.message ?? String(error)}`);
    process.exitCode = 1;
  }
}
