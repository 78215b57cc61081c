/**
 * The Fargate side of PgferryMigration: the ECS cluster, and one task definition per entry of
 * tasks/registry.ts, generated from one image (the repository's Dockerfile) or given.
 */
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import { DockerImageAsset, Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import type { Construct } from 'constructs';
import { type FargateTaskDefinition, fargateTasks } from '../tasks/registry.js';
import type { MigrationEncryption } from './encryption.js';
import { acknowledge } from './nag.js';
import { repoRoot } from './paths.js';
import { taskBundlePath } from './task-image.js';

/** Fargate size of a task: `cpu` in CPU units (1024 = 1 vCPU), a valid Fargate combination. */
export interface FargateTaskSize {
  readonly cpu: number;
  readonly memoryLimitMiB: number;
}

/** Copy workers move the data; the other tasks mostly wait on the databases. */
export const defaultTaskSizes: Readonly<Record<string, FargateTaskSize>> = {
  Copy: { cpu: 1024, memoryLimitMiB: 2048 },
};
const defaultTaskSize: FargateTaskSize = { cpu: 512, memoryLimitMiB: 1024 };

export interface MigrationTasksProps {
  readonly encryption: MigrationEncryption;
  /** Given task definitions, by task name. */
  readonly taskDefinitions?: Readonly<Partial<Record<string, ecs.TaskDefinition>>>;
  readonly taskSizes?: Readonly<Partial<Record<string, FargateTaskSize>>>;
  /** The environment of every task's container: the metrics settings. */
  readonly environment: Readonly<Record<string, string>>;
}

/** Refuses task definitions or sizes for names the registry does not know (before anything is built). */
export function checkTaskNames(props: Pick<MigrationTasksProps, 'taskDefinitions' | 'taskSizes'>): void {
  for (const name of [...Object.keys(props.taskDefinitions ?? {}), ...Object.keys(props.taskSizes ?? {})]) {
    if (!fargateTasks.some((task) => task.name === name)) {
      throw new Error(
        `PgferryMigration: '${name}' is not a task of tasks/registry.ts (${fargateTasks.map((task) => task.name).join(', ')}).`,
      );
    }
  }
}

/** The cluster the tasks run in, `Cluster` in `scope`. */
export function createTaskCluster(scope: Construct, vpc: ec2.IVpc): ecs.Cluster {
  return new ecs.Cluster(scope, 'Cluster', {
    vpc,
    containerInsightsV2: ecs.ContainerInsights.ENABLED,
  });
}

/**
 * Builds into the scope it is given (no construct level of its own, so the logical IDs stay
 * those of PgferryMigration's direct children): `TaskImage` and `TaskExecutionRole` once, and
 * per generated task `<name>TaskDefinition` and `<name>TaskLogs`, in registry order.
 */
export class MigrationTasks {
  /** The task definition of each task of tasks/registry.ts, by task name. */
  readonly taskDefinitions: Readonly<Record<string, ecs.TaskDefinition>>;
  private shared?: { asset: DockerImageAsset; image: ecs.ContainerImage; executionRole: iam.Role };

  constructor(
    private readonly scope: Construct,
    private readonly props: MigrationTasksProps,
  ) {
    const taskDefinitions: Record<string, ecs.TaskDefinition> = {};
    for (const task of fargateTasks) {
      const given = props.taskDefinitions?.[task.name];
      taskDefinitions[task.name] = given ? this.adopt(task, given) : this.generate(task);
    }
    this.taskDefinitions = taskDefinitions;
    for (const taskDefinition of Object.values(taskDefinitions)) props.encryption.grantSecrets(taskDefinition.taskRole);
  }

  /** The image of the generated task definitions; undefined when every task definition was given. */
  get taskImage(): DockerImageAsset | undefined {
    return this.shared?.asset;
  }

  /** A given task definition: checked, and its container gets the metrics environment. */
  private adopt(task: FargateTaskDefinition, given: ecs.TaskDefinition): ecs.TaskDefinition {
    const container = given.findContainer(task.containerName);
    if (!given.isFargateCompatible || !container) {
      throw new Error(
        `PgferryMigration: the task definition given for '${task.name}' must be Fargate-compatible and have a container named '${task.containerName}'.`,
      );
    }
    for (const [name, value] of Object.entries(this.props.environment)) container.addEnvironment(name, value);
    return given;
  }

  private generate(task: FargateTaskDefinition): ecs.TaskDefinition {
    const { image, executionRole } = this.sharedImage();
    const size = this.props.taskSizes?.[task.name] ?? defaultTaskSizes[task.name] ?? defaultTaskSize;
    const taskDefinition = new ecs.FargateTaskDefinition(this.scope, `${task.name}TaskDefinition`, {
      cpu: size.cpu,
      memoryLimitMiB: size.memoryLimitMiB,
      runtimePlatform: {
        cpuArchitecture: ecs.CpuArchitecture.ARM64,
        operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
      },
      executionRole,
    });
    taskDefinition.addContainer(task.containerName, {
      containerName: task.containerName,
      image,
      command: [taskBundlePath(task)],
      essential: true,
      // The tasks write nothing to disk.
      readonlyRootFilesystem: true,
      environment: { ...this.props.environment },
      logging: ecs.LogDrivers.awsLogs({ streamPrefix: 'pgferry', logGroup: this.props.encryption.logGroup(`${task.name}TaskLogs`) }),
    });
    acknowledge(taskDefinition, 'ECS2', 'The environment holds only the metrics settings (service name, namespace, EMF switch), no secret: credentials are read from Secrets Manager by ARN at run time.');
    return taskDefinition;
  }

  /** Created with the first generated task definition. */
  private sharedImage(): { image: ecs.ContainerImage; executionRole: iam.Role } {
    if (!this.shared) {
      // One image for every task: the Dockerfile bundles all entries, the command picks one.
      // Synth only stages the build context (.dockerignore applies); Docker runs at deploy.
      const asset = new DockerImageAsset(this.scope, 'TaskImage', { directory: repoRoot, platform: Platform.LINUX_ARM64 });
      const image = ecs.ContainerImage.fromDockerImageAsset(asset);
      // Pulls the image and writes the logs, for every generated task definition.
      const executionRole = new iam.Role(this.scope, 'TaskExecutionRole', {
        assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
        description: 'pgferry Fargate tasks: image pull and logs',
      });
      acknowledge(executionRole, 'IAM5[Resource::*]', 'ecr:GetAuthorizationToken supports no resource-level permissions; the image pull itself is limited to the asset repository.');
      this.shared = { asset, image, executionRole };
    }
    return this.shared;
  }
}
