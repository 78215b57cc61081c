/**
 * The local runner: the workflow file run by aws-local-stepfunctions, with Lambdas in-process
 * and tasks as child processes.
 */
export { loadLocalDefinition, substituteLocally, workflowValidation, WorkflowDefinitionError } from './definition.js';
export { repositoryRoot, workflowFile } from './paths.js';
export { runLocalWorkflow, type LocalRunOptions, type LocalRunResult, type WorkflowEvent } from './runner.js';
export type { TaskOutputLine } from './task-pool.js';
