import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { App, type CfnElement, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { afterAll, describe, expect, it } from 'vitest';
import { PgferryMigration, PgferryStack } from '../../infra/index.js';
import { lambdaByPlaceholder, lambdaFunctions } from '../../lambdas/registry.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const aslPath = join(repoRoot, 'state-machines', 'migration.asl.json');
const sourceArn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:pgferry/source-AbCdEf';
const targetArn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:pgferry/target-GhIjKl';

type Resource = { Type: string; Properties: Record<string, any>; DependsOn?: string[] };
type Statement = { Effect: string; Action: string | string[]; Resource: unknown };

const tempDirs: string[] = [];
afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pgferry-infra-'));
  tempDirs.push(dir);
  return dir;
}

/** An app writing to a temporary directory; without `bundle`, NodejsFunction skips esbuild. */
function newApp(context: Record<string, unknown> = {}, { bundle = false } = {}): App {
  return new App({
    outdir: tempDir(),
    context: bundle ? context : { ...context, 'aws:cdk:bundling-stacks': [] },
  });
}

function synthStack(context: Record<string, unknown> = {}) {
  const stack = new PgferryStack(newApp(context), 'Pgferry');
  return { stack, template: Template.fromStack(stack) };
}

function logicalId(construct: Construct): string {
  return Stack.of(construct).getLogicalId(construct.node.defaultChild as CfnElement);
}

function only<T>(record: Record<string, T>): [string, T] {
  const entries = Object.entries(record);
  expect(entries).toHaveLength(1);
  return entries[0]!;
}

function stateMachineOf(template: Template): Resource {
  return only(template.findResources('AWS::StepFunctions::StateMachine') as Record<string, Resource>)[1];
}

/** Every statement of the inline policies attached to a role. */
function roleStatements(template: Template, roleLogicalId: string): Statement[] {
  const policies = Object.values(template.findResources('AWS::IAM::Policy') as Record<string, Resource>);
  return policies
    .filter((policy) => (policy.Properties.Roles as unknown[]).some((role) => JSON.stringify(role) === JSON.stringify({ Ref: roleLogicalId })))
    .flatMap((policy) => policy.Properties.PolicyDocument.Statement as Statement[]);
}

function functionRoleId(template: Template, functionLogicalId: string): string {
  const fn = template.toJSON().Resources[functionLogicalId] as Resource;
  return fn.Properties.Role['Fn::GetAtt'][0];
}

const asList = (value: unknown): unknown[] => (Array.isArray(value) ? value : [value]);
const actionsOf = (statement: Statement): string[] => asList(statement.Action) as string[];

/** A CloudFormation value as text, intrinsic functions written as `<<LogicalId.Attribute>>`. */
function render(value: unknown): string {
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
function deployedDefinition(stateMachine: Resource): string {
  const substitutions = (stateMachine.Properties.DefinitionSubstitutions ?? {}) as Record<string, unknown>;
  return render(stateMachine.Properties.DefinitionString).replace(/\$\{([^}]*)\}/g, (whole, name: string) =>
    Object.hasOwn(substitutions, name) ? render(substitutions[name]) : whole,
  );
}

describe('PgferryStack', () => {
  it('creates a standard state machine with tracing and ERROR logging to a retained log group', () => {
    const { stack, template } = synthStack();
    const stateMachine = stateMachineOf(template);
    expect(stateMachine.Properties.StateMachineType).toBe('STANDARD');
    expect(stateMachine.Properties.TracingConfiguration).toEqual({ Enabled: true });
    expect(stateMachine.Properties.LoggingConfiguration.Level).toBe('ERROR');
    const logGroupId = stateMachine.Properties.LoggingConfiguration.Destinations[0].CloudWatchLogsLogGroup.LogGroupArn['Fn::GetAtt'][0];
    expect(template.toJSON().Resources[logGroupId].Properties.RetentionInDays).toBe(30);
    template.hasOutput('StateMachineArn', { Value: { Ref: logicalId(stack.migration.stateMachine) } });
  });

  it('deploys the ASL file unchanged except that every ${…} becomes the right function ARN', () => {
    const { stack, template } = synthStack();
    const asl = readFileSync(aslPath, 'utf8');
    const placeholders = [...asl.matchAll(/\$\{([^}]*)\}/g)].map((m) => m[1]);
    expect(placeholders.length).toBeGreaterThan(0);

    const expected = asl.replace(/\$\{([^}]*)\}/g, (_whole, name: string) => {
      const definition = lambdaByPlaceholder(name);
      if (!definition) throw new Error(`The ASL uses \${${name}}, which no registered function provides`);
      return `<<${logicalId(stack.migration.functions[definition.name]!)}.Arn>>`;
    });
    const deployed = deployedDefinition(stateMachineOf(template));

    expect(deployed).toBe(expected);
    expect(deployed).not.toContain('${');
    expect(() => JSON.parse(deployed)).not.toThrow();
  });

  it('builds every registered Lambda as a nodejs22.x arm64 ESM bundle with its registry settings', () => {
    const { stack, template } = synthStack();
    const resources = template.toJSON().Resources as Record<string, Resource>;
    template.resourceCountIs('AWS::Lambda::Function', lambdaFunctions.length);
    for (const definition of lambdaFunctions) {
      const fn = resources[logicalId(stack.migration.functions[definition.name]!)]!;
      expect(fn.Properties).toMatchObject({
        Runtime: 'nodejs22.x',
        Architectures: ['arm64'],
        Handler: 'index.handler',
        Timeout: definition.timeoutSeconds,
        MemorySize: definition.memoryMb,
        Environment: { Variables: { NODE_OPTIONS: '--enable-source-maps' } },
      });
      expect(fn.Properties.VpcConfig).toBeUndefined();
      const logGroup = resources[fn.Properties.LoggingConfig.LogGroup.Ref]!;
      expect(logGroup.Type).toBe('AWS::Logs::LogGroup');
      expect(logGroup.Properties.RetentionInDays).toBe(30);
    }
  });

  it('lets the state machine invoke exactly the registered functions and nothing else', () => {
    const { stack, template } = synthStack();
    const roleId = stateMachineOf(template).Properties.RoleArn['Fn::GetAtt'][0] as string;
    const role = template.toJSON().Resources[roleId] as Resource;
    expect(role.Properties.ManagedPolicyArns).toBeUndefined();

    const statements = roleStatements(template, roleId);
    const invoking = statements.filter((s) => actionsOf(s).some((action) => action === '*' || action.startsWith('lambda:')));
    expect(invoking).toHaveLength(1);
    expect(invoking[0]!.Effect).toBe('Allow');
    expect(invoking[0]!.Action).toBe('lambda:InvokeFunction');

    const expectedResources = lambdaFunctions.flatMap((definition) => {
      const arn = { 'Fn::GetAtt': [logicalId(stack.migration.functions[definition.name]!), 'Arn'] };
      return [arn, { 'Fn::Join': ['', [arn, ':*']] }];
    });
    const sortJson = (values: unknown[]) => values.map((v) => JSON.stringify(v)).sort();
    expect(sortJson(asList(invoking[0]!.Resource))).toEqual(sortJson(expectedResources));

    // The only wildcard resources are the log delivery and X-Ray actions Step Functions needs.
    for (const statement of statements.filter((s) => asList(s.Resource).includes('*'))) {
      for (const action of actionsOf(statement)) expect(action).toMatch(/^(logs|xray):/);
    }
  });

  it('grants no secret access when no secret ARNs are configured', () => {
    const { template } = synthStack();
    expect(JSON.stringify(template.toJSON())).not.toContain('secretsmanager');
  });

  it.each([
    ['a list (cdk.json)', [sourceArn, targetArn]],
    ['a JSON string (-c on the command line)', JSON.stringify([sourceArn, targetArn])],
  ])('grants GetSecretValue on exactly the context secretArns given as %s, to database functions only', (_, secretArns) => {
    const { stack, template } = synthStack({ secretArns });
    for (const definition of lambdaFunctions) {
      const roleId = functionRoleId(template, logicalId(stack.migration.functions[definition.name]!));
      const secretStatements = roleStatements(template, roleId).filter((s) =>
        actionsOf(s).some((action) => action.startsWith('secretsmanager:')),
      );
      if (definition.needsDatabase) {
        expect(secretStatements).toEqual([
          { Effect: 'Allow', Action: 'secretsmanager:GetSecretValue', Resource: [sourceArn, targetArn] },
        ]);
      } else {
        expect(secretStatements).toEqual([]);
      }
    }
    expect(lambdaFunctions.some((definition) => definition.needsDatabase)).toBe(true);
  });

  it('rejects context that is not what it should be', () => {
    expect(() => synthStack({ secretArns: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:x' })).toThrow(/secretArns.*JSON/);
    expect(() => synthStack({ secretArns: ['*'] })).toThrow(/secretArns/);
    expect(() => synthStack({ logRetentionDays: 42 })).toThrow(/logRetentionDays/);
  });

  it('takes the log retention and state machine name from context', () => {
    const { template } = synthStack({ logRetentionDays: '7', stateMachineName: 'pgferry-prod' });
    template.allResourcesProperties('AWS::Logs::LogGroup', { RetentionInDays: 7 });
    template.hasResourceProperties('AWS::StepFunctions::StateMachine', { StateMachineName: 'pgferry-prod' });
  });
});

describe('PgferryMigration', () => {
  it('puts the database functions in the VPC private subnets with a shared security group', () => {
    const stack = new Stack(newApp(), 'WithVpc');
    const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 });
    const migration = new PgferryMigration(stack, 'Migration', {
      vpc,
      secretArns: [sourceArn],
      stateMachineName: 'pgferry-test',
      logRetention: logs.RetentionDays.ONE_WEEK,
    });
    const template = Template.fromStack(stack);
    const resources = template.toJSON().Resources as Record<string, Resource>;
    const privateSubnets = vpc.privateSubnets.map((subnet) => ({ Ref: logicalId(subnet) }));

    for (const definition of lambdaFunctions) {
      const fn = resources[logicalId(migration.functions[definition.name]!)]!;
      if (definition.needsDatabase) {
        expect(fn.Properties.VpcConfig).toEqual({
          SubnetIds: privateSubnets,
          SecurityGroupIds: [{ 'Fn::GetAtt': [logicalId(migration.databaseClientSecurityGroup!), 'GroupId'] }],
        });
        const secretStatements = roleStatements(template, functionRoleId(template, logicalId(migration.functions[definition.name]!)))
          .filter((s) => actionsOf(s).includes('secretsmanager:GetSecretValue'));
        expect(secretStatements.map((s) => s.Resource)).toEqual([sourceArn]);
      } else {
        expect(fn.Properties.VpcConfig).toBeUndefined();
      }
    }
    template.allResourcesProperties('AWS::Logs::LogGroup', { RetentionInDays: 7 });
    template.hasResourceProperties('AWS::StepFunctions::StateMachine', { StateMachineName: 'pgferry-test' });
  });

  it('fails at synth when the definition uses a placeholder nothing substitutes', () => {
    const definitionPath = join(tempDir(), 'bad.asl.json');
    writeFileSync(
      definitionPath,
      readFileSync(aslPath, 'utf8').replace('${PrecheckFunctionArn}', '${PrecheckFunctionArn}${MysteryFunctionArn}'),
    );
    const stack = new Stack(newApp(), 'Bad');
    expect(() => new PgferryMigration(stack, 'Migration', { definitionPath })).toThrow(/\$\{MysteryFunctionArn\}/);
  });

  it('warns about a registered function the definition never invokes', () => {
    const definitionPath = join(tempDir(), 'partial.asl.json');
    writeFileSync(definitionPath, readFileSync(aslPath, 'utf8').replaceAll('${DescribeFailureFunctionArn}', 'arn:aws:lambda:eu-west-1:123456789012:function:x'));
    const stack = new Stack(newApp(), 'Partial');
    new PgferryMigration(stack, 'Migration', { definitionPath });
    Annotations.fromStack(stack).hasWarning('*', Match.stringLikeRegexp('DescribeFailureFunctionArn'));
  });
});

describe('bundling', () => {
  it('bundles every function with the local esbuild into a loadable ESM module', () => {
    // Any attempt to use Docker fails with this, so a passing synth proves local bundling.
    const previousDocker = process.env.CDK_DOCKER;
    process.env.CDK_DOCKER = '/nonexistent/docker';
    try {
      const app = newApp({}, { bundle: true });
      const stack = new PgferryStack(app, 'Bundled');
      const template = Template.fromStack(stack);
      const outdir = app.outdir;
      // Lambda provides @aws-sdk/*; here the bundles find it in the repository's node_modules.
      symlinkSync(join(repoRoot, 'node_modules'), join(outdir, 'node_modules'), 'dir');

      for (const definition of lambdaFunctions) {
        const fn = template.toJSON().Resources[logicalId(stack.migration.functions[definition.name]!)] as Resource;
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
    } finally {
      if (previousDocker === undefined) delete process.env.CDK_DOCKER;
      else process.env.CDK_DOCKER = previousDocker;
    }
  });
});
