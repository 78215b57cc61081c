/** Precheck of DDL capture during CDC (engine/cdc/ddl/capture.ts): may the source user create event triggers? */
import type pg from 'pg';
import { CAPTURE_REMEDY, mayCaptureDdl } from '../cdc/ddl/capture.js';
import type { MigrationSpec } from '../spec/index.js';
import type { CheckResult } from './index.js';

export async function checkDdlCapture(source: { client: pg.Client; user: string }, ddl: MigrationSpec['cdc']['ddl']): Promise<CheckResult> {
  const id = 'source.ddl_capture';
  if (await mayCaptureDdl(source.client)) {
    return { id, status: 'pass', message: `${source.user} may create event triggers: schema changes on the source are captured during CDC (cdc.ddl "${ddl}").` };
  }
  const message = `User ${source.user} on the source may not create event triggers (superuser, or rds_superuser on RDS)`;
  if (ddl === 'replicate') {
    return { id, status: 'fail', message: `${message}, which cdc.ddl "replicate" needs to capture schema changes.`, remediation: CAPTURE_REMEDY };
  }
  return {
    id,
    status: 'warn',
    message: `${message}: schema changes on the source will not be detected (cdc.ddl "${ddl}"). A column added on the source stops replication when its first value arrives; other changes go unnoticed.`,
    remediation: CAPTURE_REMEDY,
  };
}
