import { App } from 'aws-cdk-lib';
import { PgferryStack } from './pgferry-stack.js';

const app = new App();

// Unset variables leave the stack environment-agnostic.
new PgferryStack(app, 'Pgferry', {
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
  description: 'pgferry: online PostgreSQL to PostgreSQL migration (Step Functions workflow)',
});

app.synth();
