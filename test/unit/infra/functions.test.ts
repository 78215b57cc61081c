/** The Lambdas of PgferryMigration (infra/functions.ts): one per registry entry, their roles, logs and bundles. */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { describe, expect, it } from 'vitest';
import { PgferryStack } from '../../../infra/index.js';
import { lambdaFunctions } from '../../../lambdas/registry.js';
import { metrics } from '../../../platform/aws/deployment.js';
import { fargateTasks } from '../../../tasks/registry.js';
import {
  actionsOf,
  functionRoleId,
  infraTestStacks,
  logicalId,
  repoRoot,
  resourcesOf,
  roleStatements,
  stateMachineOf,
} from '../../support/infra.js';

// Synth (and the whole file) must not need Docker: any attempt to use it fails.
const { newApp, defaultStack } = infraTestStacks('infra-functions');

describe('PgferryMigration functions', () => {
  it('builds every registered Lambda as a nodejs22.x arm64 ESM bundle, the database ones in private subnets', () => {
    const { stack, template } = defaultStack();
    const resources = resourcesOf(template);
    const privateSubnets = (stack.migration.vpc as ec2.Vpc).privateSubnets.map((subnet) => ({ Ref: logicalId(subnet) }));
    template.resourceCountIs('AWS::Lambda::Function', lambdaFunctions.length);
    for (const definition of lambdaFunctions) {
      const fn = resources[logicalId(stack.migration.functions[definition.name]!)]!;
      expect(fn.Properties).toMatchObject({
        Runtime: 'nodejs22.x',
        Architectures: ['arm64'],
        Handler: 'index.handler',
        Timeout: definition.timeoutSeconds,
        MemorySize: definition.memoryMb,
        TracingConfig: { Mode: 'Active' },
      });
      expect(fn.Properties.Environment).toEqual({
        Variables: {
          NODE_OPTIONS: '--enable-source-maps',
          POWERTOOLS_SERVICE_NAME: stack.migration.serviceName,
          POWERTOOLS_METRICS_NAMESPACE: metrics.namespace,
          // PausedStatus writes the retained WAL and the paused state in the embedded metric format.
          [metrics.environment.name]: metrics.environment.emf,
          POWERTOOLS_LOG_LEVEL: 'INFO',
        },
      });
      if (definition.needsDatabase) {
        expect(fn.Properties.VpcConfig).toEqual({
          SubnetIds: privateSubnets,
          SecurityGroupIds: [{ 'Fn::GetAtt': [logicalId(stack.migration.databaseClientSecurityGroup), 'GroupId'] }],
        });
      } else {
        expect(fn.Properties.VpcConfig).toBeUndefined();
      }
      const logGroup = resources[fn.Properties.LoggingConfig.LogGroup.Ref]!;
      expect(logGroup.Type).toBe('AWS::Logs::LogGroup');
      expect(logGroup.Properties.RetentionInDays).toBe(30);
      expect(logGroup.Properties.KmsKeyId).toEqual({ 'Fn::GetAtt': [logicalId(stack.migration.encryptionKey), 'Arn'] });

      // A role of its own, no AWS managed policy: logs to its own group only, plus X-Ray and,
      // in the VPC, the network interfaces (the only wildcards).
      const roleId = functionRoleId(template, logicalId(stack.migration.functions[definition.name]!));
      expect(resources[roleId]!.Properties.ManagedPolicyArns).toBeUndefined();
      const statements = roleStatements(template, roleId);
      expect(statements.find((s) => actionsOf(s).includes('logs:PutLogEvents'))!.Resource).toEqual({
        'Fn::GetAtt': [fn.Properties.LoggingConfig.LogGroup.Ref, 'Arn'],
      });
      const wildcards = statements.filter((s) => s.Resource === '*').flatMap(actionsOf);
      for (const action of wildcards) expect(action).toMatch(definition.needsDatabase ? /^(xray|ec2):/ : /^xray:/);
      expect(wildcards.includes('ec2:CreateNetworkInterface')).toBe(definition.needsDatabase);
    }
  });

  it('keeps the operator function out of the workflow: no substitution, no warning, no invoke grant', () => {
    const { stack, template } = defaultStack();
    const operators = lambdaFunctions.filter((definition) => definition.operator);
    expect(operators.map((definition) => definition.name)).toEqual(['Operator']);
    const operator = operators[0]!;
    expect(stack.migration.operatorFunction).toBe(stack.migration.functions.Operator);
    const substitutions = stateMachineOf(template).Properties.DefinitionSubstitutions as Record<string, unknown>;
    expect(Object.keys(substitutions)).not.toContain(operator.arnPlaceholder);
    expect(Object.keys(substitutions).sort()).toEqual(
      [
        'ClusterArn',
        'TaskSubnetIds',
        'TaskSecurityGroupIds',
        ...lambdaFunctions.filter((definition) => !definition.operator).map((definition) => definition.arnPlaceholder),
        ...fargateTasks.map((task) => task.taskDefinitionPlaceholder),
      ].sort(),
    );
    expect(Annotations.fromStack(stack).findWarning('*', Match.anyValue())).toEqual([]);
    template.hasOutput('OperatorFunctionArn', { Value: { 'Fn::GetAtt': [logicalId(stack.migration.operatorFunction!), 'Arn'] } });
  });
});

describe('bundling', () => {
  it('bundles every function with the local esbuild into a loadable ESM module', () => {
    const app = newApp({}, { bundle: true });
    const stack = new PgferryStack(app, 'Bundled');
    const template = Template.fromStack(stack);
    const outdir = app.outdir;
    // Lambda provides @aws-sdk/*; here the bundles find it in the repository's node_modules.
    symlinkSync(join(repoRoot, 'node_modules'), join(outdir, 'node_modules'), 'dir');

    for (const definition of lambdaFunctions) {
      const fn = resourcesOf(template)[logicalId(stack.migration.functions[definition.name]!)]!;
      const assetDir = join(outdir, `asset.${(fn.Properties.Code.S3Key as string).replace(/\.zip$/, '')}`);
      expect(readdirSync(assetDir).sort()).toEqual(['index.mjs', 'index.mjs.map']);
      const bundle = join(assetDir, 'index.mjs');
      expect(readFileSync(bundle, 'utf8')).toMatch(/^import \{ createRequire \} from 'module'; const require = createRequire\(import\.meta\.url\);/);

      const exported = execFileSync(
        process.execPath,
        ['--input-type=module', '-e', `const m = await import(${JSON.stringify(pathToFileURL(bundle).href)}); console.log(typeof m.handler);`],
        { encoding: 'utf8', timeout: 30_000 },
      );
      expect(exported.trim(), definition.name).toBe('function');
    }
  });
});
