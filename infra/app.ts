import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { PgferryStack } from './pgferry-stack.js';

const app = new App();

// Unset variables leave the stack environment-agnostic.
new PgferryStack(app, 'Pgferry', {
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
});

// cdk-nag 3 is a CDK policy validation plugin (v2's Aspect and NagSuppressions are gone): any
// finding that was not acknowledged in code (Validations.of(…).acknowledge, with its reason,
// next to the resource) fails the synth and is listed in the cloud assembly's validation report.
Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));

app.synth();
