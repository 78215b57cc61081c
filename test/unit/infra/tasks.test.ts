/** The Fargate side of PgferryMigration (infra/tasks.ts): the task definitions, given or generated, and the task image. */
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import { describe, expect, it } from 'vitest';
import { PgferryMigration } from '../../../infra/index.js';
import { metrics } from '../../../platform/aws/deployment.js';
import { fargateTasks } from '../../../tasks/registry.js';
import {
  actionsOf,
  asList,
  expectedCommand,
  infraTestStacks,
  logicalId,
  only,
  render,
  repoRoot,
  resourcesOf,
  roleStatements,
  stateMachineRoleId,
  substitution,
  taskDefinitionsOf,
} from '../../support/infra.js';

// Synth (and the whole file) must not need Docker: any attempt to use it fails.
const { tempDir, newApp, defaultStack } = infraTestStacks('infra-tasks');

describe('PgferryMigration tasks', () => {
  it('defines one ARM64 Fargate task per registry entry, container pgferry running its bundle, logging to a retained group', () => {
    const { app, stack, template } = defaultStack();
    const resources = resourcesOf(template);
    template.resourceCountIs('AWS::ECS::TaskDefinition', fargateTasks.length);
    const taskDefinitions = taskDefinitionsOf(template, stack.migration);
    const images = new Set<string>();
    for (const task of fargateTasks) {
      const properties = taskDefinitions[task.name]!.Properties;
      const size = task.name === 'Copy' ? { Cpu: '1024', Memory: '2048' } : { Cpu: '512', Memory: '1024' };
      expect(properties, task.name).toMatchObject({
        ...size,
        RequiresCompatibilities: ['FARGATE'],
        NetworkMode: 'awsvpc',
        RuntimePlatform: { CpuArchitecture: 'ARM64', OperatingSystemFamily: 'LINUX' },
      });
      const [container, ...others] = properties.ContainerDefinitions as Record<string, any>[];
      expect(others).toEqual([]);
      expect(container!.Name).toBe(task.containerName);
      expect(container!.Name).toBe('pgferry');
      expect(container!.Command).toEqual(expectedCommand(task.entry));
      // The metrics settings only: the workflow passes the rest as container overrides.
      expect(container!.Environment).toEqual([
        { Name: 'POWERTOOLS_SERVICE_NAME', Value: stack.migration.serviceName },
        { Name: 'POWERTOOLS_METRICS_NAMESPACE', Value: metrics.namespace },
        { Name: 'PGFERRY_METRICS', Value: 'emf' },
      ]);
      expect(container!.LogConfiguration.LogDriver).toBe('awslogs');
      const logGroup = resources[container!.LogConfiguration.Options['awslogs-group'].Ref]!;
      expect(logGroup.Type).toBe('AWS::Logs::LogGroup');
      expect(logGroup.Properties.RetentionInDays).toBe(30);
      expect(logGroup.Properties.KmsKeyId).toEqual({ 'Fn::GetAtt': [logicalId(stack.migration.encryptionKey), 'Arn'] });
      images.add(JSON.stringify(container!.Image));
    }
    // One image for every task, the one the Dockerfile builds: staged at synth, built at deploy.
    expect(images.size).toBe(1);
    const assets = JSON.parse(readFileSync(join(app.outdir, 'Pgferry.assets.json'), 'utf8'));
    const [hash, image] = only(assets.dockerImages as Record<string, any>);
    expect(image.source).toEqual({ directory: `asset.${hash}`, platform: 'linux/arm64' });
    expect([...images][0]).toContain(hash);
  });

  it('uses a given task definition and task sizes, and still scopes RunTask and PassRole to the tasks it runs', () => {
    const stack = new Stack(newApp(), 'Given');
    const given = new ecs.FargateTaskDefinition(stack, 'CustomCopy', { cpu: 4096, memoryLimitMiB: 8192 });
    given.addContainer('pgferry', { image: ecs.ContainerImage.fromRegistry('public.ecr.aws/example/pgferry:1') });
    const migration = new PgferryMigration(stack, 'Migration', {
      taskDefinitions: { Copy: given },
      taskSizes: { Compare: { cpu: 2048, memoryLimitMiB: 4096 } },
    });
    const template = Template.fromStack(stack);

    template.resourceCountIs('AWS::ECS::TaskDefinition', fargateTasks.length);
    expect(migration.taskDefinitions.Copy).toBe(given);
    expect(substitution(template, 'CopyTaskDefinitionArn')).toBe(`<<${logicalId(given)}>>`);
    expect(taskDefinitionsOf(template, migration).Compare!.Properties).toMatchObject({ Cpu: '2048', Memory: '4096' });
    // The given container gets the metrics settings too (the lag alarm reads its metrics).
    expect(resourcesOf(template)[logicalId(given)]!.Properties.ContainerDefinitions[0].Environment).toEqual([
      { Name: 'POWERTOOLS_SERVICE_NAME', Value: migration.serviceName },
      { Name: 'POWERTOOLS_METRICS_NAMESPACE', Value: metrics.namespace },
      { Name: 'PGFERRY_METRICS', Value: 'emf' },
    ]);

    const statements = roleStatements(template, stateMachineRoleId(template));
    const runTask = statements.find((s) => actionsOf(s).includes('ecs:RunTask'))!;
    expect(asList(runTask.Resource).map(render)).toContain(
      `arn:<<AWS::Partition>>:ecs:<<AWS::Region>>:<<AWS::AccountId>>:task-definition/${given.family}:*`,
    );
    const passRole = statements.find((s) => actionsOf(s).includes('iam:PassRole'))!;
    // The given task role (it needs no execution role), the generated task roles and their shared execution role.
    expect(given.executionRole).toBeUndefined();
    expect(asList(passRole.Resource)).toContainEqual({ 'Fn::GetAtt': [logicalId(given.taskRole), 'Arn'] });
    expect(asList(passRole.Resource)).toHaveLength(fargateTasks.length + 1);
  });

  it('rejects task definitions and sizes it cannot use', () => {
    const noContainer = new Stack(newApp(), 'NoContainer');
    const bare = new ecs.FargateTaskDefinition(noContainer, 'Bare');
    bare.addContainer('app', { image: ecs.ContainerImage.fromRegistry('public.ecr.aws/example/app:1') });
    expect(() => new PgferryMigration(noContainer, 'Migration', { taskDefinitions: { Copy: bare } })).toThrow(/container named 'pgferry'/);
    expect(() => new PgferryMigration(new Stack(newApp(), 'Unknown'), 'Migration', { taskSizes: { Cpoy: { cpu: 256, memoryLimitMiB: 512 } } })).toThrow(
      /'Cpoy' is not a task/,
    );
    const publicStack = new Stack(newApp(), 'Public');
    const vpc = new ec2.Vpc(publicStack, 'Vpc', { maxAzs: 2, natGateways: 1 });
    expect(() => new PgferryMigration(publicStack, 'Migration', { vpc, vpcSubnets: { subnetType: ec2.SubnetType.PUBLIC } })).toThrow(
      /private subnets/,
    );
  });
});

describe('bundling', () => {
  it('stages a Docker context from which the Dockerfile builds a runnable, self-contained bundle per task', () => {
    const { app } = defaultStack();
    const assets = JSON.parse(readFileSync(join(app.outdir, 'Pgferry.assets.json'), 'utf8'));
    const [, image] = only(assets.dockerImages as Record<string, any>);
    const staged = join(app.outdir, image.source.directory as string);

    // The context is the .dockerignore allowlist: sources of the tasks, not the rest of the repository.
    const top = readdirSync(staged).sort();
    for (const name of ['Dockerfile', 'package.json', 'package-lock.json', 'tasks']) expect(top).toContain(name);
    for (const name of ['node_modules', 'cdk.out', '.git', 'test', 'bench', 'lambdas', 'local', 'scratch']) expect(top).not.toContain(name);
    for (const task of fargateTasks) expect(existsSync(join(staged, task.entry)), task.entry).toBe(true);

    const dockerfile = readFileSync(join(staged, 'Dockerfile'), 'utf8');
    expect(dockerfile).toBe(readFileSync(join(repoRoot, 'Dockerfile'), 'utf8'));
    const stages = dockerfile.split(/^FROM /m).slice(1);
    expect(stages).toHaveLength(2);
    expect(stages[0]).toMatch(/^--platform=\$BUILDPLATFORM node:22-slim AS build\n/);
    expect(stages[0]).toMatch(/^RUN npm ci\b/m);
    const final = stages[1]!;
    expect(final).toMatch(/^node:22-slim\n/);
    expect(final).toMatch(/^COPY --from=build \S+\/dist\/tasks \.\/dist\/tasks$/m);
    expect(final).toMatch(/^WORKDIR \/app$/m);
    expect(final).toMatch(/^USER node$/m);
    expect(final).toMatch(/^ENTRYPOINT \["node"\]$/m);
    expect(final).not.toMatch(/^(CMD|RUN) /m);

    // The build stage, without Docker: the context plus installed dependencies, then the
    // Dockerfile's own bundle command.
    const bundleCommand = /^RUN (npx tsx infra\/bundle-tasks\.ts dist\/tasks)$/m.exec(stages[0]!)?.[1];
    expect(bundleCommand).toBeDefined();
    const build = join(tempDir(), 'build');
    cpSync(staged, build, { recursive: true });
    symlinkSync(join(repoRoot, 'node_modules'), join(build, 'node_modules'), 'dir');
    execFileSync('sh', ['-c', bundleCommand!], { cwd: build, encoding: 'utf8', timeout: 60_000, stdio: 'pipe' });

    // The final stage: the bundles alone, run the way the task definitions run them.
    const app2 = join(tempDir(), 'app');
    mkdirSync(join(app2, 'dist'), { recursive: true });
    cpSync(join(build, 'dist', 'tasks'), join(app2, 'dist', 'tasks'), { recursive: true });
    for (const task of fargateTasks) {
      const [command] = expectedCommand(task.entry);
      const bundle = join(app2, command!);
      expect(existsSync(bundle), command).toBe(true);
      expect(readFileSync(bundle, 'utf8')).toMatch(/^import \{ createRequire \} from 'module'; const require = createRequire\(import\.meta\.url\);/);
      // Without the workflow's environment every task stops at its first setting (the
      // migration, or the task token of a callback task): proof that
      // the whole bundle loaded, without any node_modules.
      const run = spawnSync(process.execPath, ['--enable-source-maps', command!], {
        cwd: app2,
        env: { PATH: process.env.PATH },
        encoding: 'utf8',
        timeout: 30_000,
      });
      expect(run.stderr, task.name).toMatch(/PGFERRY_[A-Z_]+ is not set/);
      expect(run.stderr, task.name).not.toMatch(/Cannot find (module|package)|Dynamic require/);
      expect(run.status, task.name).toBe(1);
    }
  });
});
