/**
 * The VPC pgferry creates when it is given none: private subnets only for the functions and the
 * tasks, flow logs, and interface/gateway endpoints so that AWS API traffic (secrets, image pulls,
 * logs, task callbacks) never leaves the VPC.
 */
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';

/** Name of the subnet group the functions and the tasks run in, in a VPC pgferry creates. */
export const privateSubnetGroupName = 'Private';

/**
 * The AWS APIs the functions and the tasks call, each through an interface endpoint:
 * Secrets Manager (credentials), ECR API + Docker registry (image pulls; the layers come from S3,
 * through the gateway endpoint), CloudWatch Logs (the awslogs driver; the metrics travel in the
 * logs as EMF, so no CloudWatch monitoring endpoint is needed) and Step Functions
 * (SendTaskSuccess/Failure/Heartbeat of the callback tasks).
 */
export const interfaceEndpoints: Readonly<Record<string, ec2.InterfaceVpcEndpointAwsService>> = {
  SecretsManager: ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
  EcrApi: ec2.InterfaceVpcEndpointAwsService.ECR,
  EcrDocker: ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
  Logs: ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
  StepFunctions: ec2.InterfaceVpcEndpointAwsService.STEP_FUNCTIONS,
};

export interface MigrationVpcProps {
  /** 0 gives isolated subnets: no route to the internet at all, so only sources inside AWS. */
  readonly natGateways: number;
  /** Whether addMigrationEndpoints will be called: required without NAT gateways. */
  readonly endpoints: boolean;
  readonly flowLogGroup: logs.ILogGroup;
}

export function createMigrationVpc(scope: Construct, id: string, props: MigrationVpcProps): ec2.Vpc {
  if (!Number.isInteger(props.natGateways) || props.natGateways < 0) {
    throw new Error(`PgferryMigration: natGateways must be a whole number ≥ 0, got ${props.natGateways}.`);
  }
  if (props.natGateways === 0 && !props.endpoints) {
    throw new Error('PgferryMigration: without NAT gateways the subnets reach AWS APIs only through VPC endpoints; keep vpcEndpoints on.');
  }
  return new ec2.Vpc(scope, id, {
    maxAzs: 2,
    natGateways: props.natGateways,
    subnetConfiguration:
      props.natGateways > 0
        ? [
            { name: 'Public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 },
            { name: privateSubnetGroupName, subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 24 },
          ]
        : [{ name: privateSubnetGroupName, subnetType: ec2.SubnetType.PRIVATE_ISOLATED, cidrMask: 24 }],
    flowLogs: {
      All: { destination: ec2.FlowLogDestination.toCloudWatchLogs(props.flowLogGroup), trafficType: ec2.FlowLogTrafficType.ALL },
    },
  });
}

/**
 * The S3 gateway endpoint and the interface endpoints in the private subnets of a VPC of
 * createMigrationVpc. The interface endpoints share one security group that admits HTTPS from
 * `clients` (the functions' and the tasks' security groups) and nothing else.
 */
export function addMigrationEndpoints(vpc: ec2.Vpc, clients: readonly ec2.ISecurityGroup[]): ec2.SecurityGroup {
  const subnets = { subnetGroupName: privateSubnetGroupName };
  vpc.addGatewayEndpoint('S3', { service: ec2.GatewayVpcEndpointAwsService.S3, subnets: [subnets] });
  const securityGroup = new ec2.SecurityGroup(vpc, 'EndpointSecurityGroup', {
    vpc,
    description: 'pgferry VPC interface endpoints: HTTPS from the pgferry functions and tasks',
    allowAllOutbound: false,
  });
  for (const client of clients) securityGroup.addIngressRule(client, ec2.Port.tcp(443), 'pgferry functions and tasks');
  for (const [name, service] of Object.entries(interfaceEndpoints)) {
    // Private DNS: the SDKs reach the endpoint under the service's usual name.
    vpc.addInterfaceEndpoint(name, { service, subnets, privateDnsEnabled: true, securityGroups: [securityGroup], open: false });
  }
  return securityGroup;
}

/** Where the functions and tasks run (part of PgferryMigrationProps). */
export interface MigrationNetworkProps {
  /**
   * The VPC of the functions that connect to the databases and of the Fargate tasks. Its
   * subnets must reach Secrets Manager, ECR (+ S3), CloudWatch Logs and Step Functions, through
   * a NAT gateway or VPC endpoints, and the databases.
   * @default a new VPC over 2 AZs: private subnets, flow logs, `natGateways` NAT gateways and VPC endpoints
   */
  readonly vpc?: ec2.IVpc;
  /**
   * Subnets of the database functions and the Fargate tasks (which get no public IP).
   * @default the private subnets of the new VPC; of a given VPC, its private subnets with egress
   */
  readonly vpcSubnets?: ec2.SubnetSelection;
  /**
   * NAT gateways of the new VPC (only without `vpc`): sources outside AWS need egress to the
   * internet; 0 makes the subnets isolated (databases in the VPC or reached through peering).
   * @default 1
   */
  readonly natGateways?: number;
  /**
   * Interface endpoints (Secrets Manager, ECR API and Docker, CloudWatch Logs, Step Functions) and
   * an S3 gateway endpoint in the new VPC (only without `vpc`), so AWS API traffic stays in the VPC.
   * @default true
   */
  readonly vpcEndpoints?: boolean;
  /** Security group of the database functions. @default a new one, allowing all outbound traffic */
  readonly databaseClientSecurityGroup?: ec2.ISecurityGroup;
  /** Security group of the Fargate tasks. @default a new one, allowing all outbound traffic */
  readonly taskSecurityGroup?: ec2.ISecurityGroup;
}

/** Refuses the VPC-shaping settings with a given VPC (before anything is built). */
export function checkNetworkProps(props: MigrationNetworkProps): void {
  if (props.vpc && (props.natGateways !== undefined || props.vpcEndpoints !== undefined)) {
    throw new Error('PgferryMigration: natGateways and vpcEndpoints shape the VPC the construct creates; with a given vpc, leave them out.');
  }
}

/**
 * The network of PgferryMigration, built into its scope (no construct level of its own, so the
 * logical IDs stay those of its direct children) in two steps, in the order the template has
 * always had: the VPC and the functions' security group first; the tasks' security group and
 * the VPC endpoints, which admit both groups, after the functions and the cluster.
 */
export class MigrationNetwork {
  readonly vpc: ec2.IVpc;
  /** Where the database functions and the tasks run. */
  readonly vpcSubnets: ec2.SubnetSelection;
  readonly taskSubnets: ec2.SelectedSubnets;
  readonly databaseClientSecurityGroup: ec2.ISecurityGroup;
  private readonly createdVpc?: ec2.Vpc;

  constructor(
    private readonly scope: Construct,
    private readonly props: MigrationNetworkProps,
    flowLogGroup: (id: string) => logs.ILogGroup,
  ) {
    // Only for a VPC the construct creates (with a given vpc, checkNetworkProps refused them).
    const endpoints = props.vpcEndpoints ?? true;
    this.createdVpc = props.vpc
      ? undefined
      : createMigrationVpc(scope, 'Vpc', { natGateways: props.natGateways ?? 1, endpoints, flowLogGroup: flowLogGroup('FlowLogs') });
    this.vpc = props.vpc ?? this.createdVpc!;
    this.vpcSubnets =
      props.vpcSubnets ?? (props.vpc ? { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS } : { subnetGroupName: privateSubnetGroupName });
    // Fargate tasks run with awsvpc networking in these subnets and never get a public IP (the
    // ASL says AssignPublicIp DISABLED), so the subnets must reach ECR, CloudWatch Logs,
    // Secrets Manager and Step Functions through a NAT gateway or VPC endpoints.
    this.taskSubnets = this.vpc.selectSubnets(this.vpcSubnets);
    if (this.taskSubnets.hasPublic) {
      throw new Error('PgferryMigration: vpcSubnets selects public subnets; the functions and tasks run without a public IP, use private subnets.');
    }
    this.databaseClientSecurityGroup =
      props.databaseClientSecurityGroup ??
      this.securityGroup('DatabaseClientSecurityGroup', 'pgferry functions that connect to the source and target databases');
  }

  /**
   * The tasks' security group and, in a VPC the construct created, the endpoints open to the
   * functions and the tasks. Call it once.
   */
  addTaskSecurityGroup(): { taskSecurityGroup: ec2.ISecurityGroup; endpointSecurityGroup?: ec2.SecurityGroup } {
    const taskSecurityGroup =
      this.props.taskSecurityGroup ??
      this.securityGroup('TaskSecurityGroup', 'pgferry Fargate tasks that connect to the source and target databases');
    const endpointSecurityGroup =
      this.createdVpc && (this.props.vpcEndpoints ?? true)
        ? addMigrationEndpoints(this.createdVpc, [this.databaseClientSecurityGroup, taskSecurityGroup])
        : undefined;
    return { taskSecurityGroup, endpointSecurityGroup };
  }

  private securityGroup(id: string, description: string): ec2.SecurityGroup {
    return new ec2.SecurityGroup(this.scope, id, { vpc: this.vpc, description, allowAllOutbound: true });
  }
}
