import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { afterAll, beforeAll } from 'vitest';
import { PgferryStack } from '../../infra/index.js';

/** The repository's root directory. */
export { repoRoot } from '../../infra/paths.js';

/** An existing VPC, security groups and alarm topic, all from context (no lookups). */
export const existingVpc = {
  vpcId: 'vpc-0123456789abcdef0',
  subnetIds: ['subnet-0123456789abcdef0', 'subnet-0123456789abcdef1'],
  availabilityZones: ['eu-west-1a', 'eu-west-1b'],
  databaseClientSecurityGroupId: 'sg-0123456789abcdef0',
  taskSecurityGroupId: 'sg-0123456789abcdef1',
  alarmTopicArn: 'arn:aws:sns:eu-west-1:123456789012:pgferry-ops',
  alarmEmails: ['ops@example.com'],
};

/**
 * What a test file that synthesizes CDK apps needs; call it once, at the top level of the file.
 * While the file runs, any attempt to use Docker fails (synth, and the whole file, must not need it);
 * afterwards the temporary directories are removed and CDK_DOCKER is restored.
 * `label` names the temporary directories: `pgferry-<label>-…`.
 */
export function cdkTestApps(label: string) {
  const tempDirs: string[] = [];
  const previousDocker = process.env.CDK_DOCKER;
  beforeAll(() => {
    process.env.CDK_DOCKER = '/nonexistent/docker';
  });
  afterAll(() => {
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
    if (previousDocker === undefined) delete process.env.CDK_DOCKER;
    else process.env.CDK_DOCKER = previousDocker;
  });

  /** A temporary directory, removed after the file's tests. */
  function tempDir(): string {
    const dir = mkdtempSync(join(tmpdir(), `pgferry-${label}-`));
    tempDirs.push(dir);
    return dir;
  }

  /** An app writing to a temporary directory; without `bundle`, NodejsFunction skips esbuild (the template is the same). */
  function newApp(context: Record<string, unknown> = {}, { bundle = false } = {}): App {
    return new App({
      outdir: tempDir(),
      context: bundle ? context : { ...context, 'aws:cdk:bundling-stacks': [] },
    });
  }

  /** A PgferryStack with id `Pgferry` in a new app (without bundling) with this context. */
  function synthStack(context: Record<string, unknown> = {}) {
    const app = newApp(context);
    const stack = new PgferryStack(app, 'Pgferry');
    return { app, stack, template: Template.fromStack(stack) };
  }

  return { tempDir, newApp, synthStack };
}

/** A CloudFormation value as text, intrinsic functions written as `<<LogicalId.Attribute>>`. */
export function render(value: unknown): string {
  if (typeof value === 'string') return value;
  const intrinsic = value as Record<string, any>;
  if ('Fn::Join' in intrinsic) {
    const [separator, parts] = intrinsic['Fn::Join'] as [string, unknown[]];
    return parts.map(render).join(separator);
  }
  if ('Fn::GetAtt' in intrinsic) return `<<${intrinsic['Fn::GetAtt'][0]}.${intrinsic['Fn::GetAtt'][1]}>>`;
  if ('Ref' in intrinsic) return `<<${intrinsic.Ref}>>`;
  throw new Error(`Unexpected CloudFormation value: ${JSON.stringify(value)}`);
}

/** The definition as CloudFormation will hand it to Step Functions: DefinitionSubstitutions applied. */
export function deployedDefinition(stateMachine: Record<string, any>): string {
  const substitutions = (stateMachine.Properties.DefinitionSubstitutions ?? {}) as Record<string, unknown>;
  return render(stateMachine.Properties.DefinitionString).replace(/\$\{([^}]*)\}/g, (whole, name: string) =>
    Object.hasOwn(substitutions, name) ? render(substitutions[name]) : whole,
  );
}
