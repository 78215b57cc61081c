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
