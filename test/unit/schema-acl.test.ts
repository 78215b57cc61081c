import { describe, expect, it } from 'vitest';
import { aclStatements, type AclItem, type Grantees } from '../../engine/schema/acl.js';

const grantees = (...roles: string[]): Grantees => ({ exists: (role) => roles.includes(role), missing: new Map() });
const schemaDefault = (owner: string): AclItem[] => [
  [owner, 'USAGE', false, owner],
  [owner, 'CREATE', false, owner],
];

describe('aclStatements (pg_dump’s approach: the source’s change to its owner’s default, applied to the target’s)', () => {
  it('gives a 15+ target the public schema ACL of a 13 source, whose owner has another name', () => {
    const source = { owner: 'postgres', acl: [...schemaDefault('postgres'), [null, 'USAGE', false, 'postgres'], [null, 'CREATE', false, 'postgres']] as AclItem[], baseline: schemaDefault('postgres') };
    const target = { owner: 'pg_database_owner', acl: [...schemaDefault('pg_database_owner'), [null, 'USAGE', false, 'pg_database_owner']] as AclItem[], baseline: schemaDefault('pg_database_owner') };
    expect(aclStatements(source, target, { object: 'SCHEMA public' }, grantees(), 'SCHEMA public')).toEqual({
      statements: ['GRANT CREATE ON SCHEMA public TO PUBLIC'],
      deferred: [],
    });
  });

  it('takes from a 15+ source public schema what it took from PUBLIC, and changes nothing when both are alike', () => {
    const owner = 'pg_database_owner';
    const target = { owner, acl: [...schemaDefault(owner), [null, 'USAGE', false, owner]] as AclItem[], baseline: schemaDefault(owner) };
    const revoked = { owner, acl: schemaDefault(owner), baseline: schemaDefault(owner) };
    expect(aclStatements(revoked, target, { object: 'SCHEMA public' }, grantees(), 'x').statements).toEqual(['REVOKE USAGE ON SCHEMA public FROM PUBLIC']);
    expect(aclStatements(target, target, { object: 'SCHEMA public' }, grantees(), 'x').statements).toEqual([]);
  });

  it('keeps what the target’s default has beyond the source’s (MAINTAIN on 17), grants per column, and changes grant options', () => {
    const old: AclItem[] = ['SELECT', 'INSERT'].map((p) => ['app', p, false, 'app']);
    const source = { owner: 'app', acl: [...old, ['reader', 'SELECT', true, 'app'], ['writer', 'INSERT', false, 'app']] as AclItem[], baseline: old };
    const newer: AclItem[] = ['SELECT', 'INSERT', 'MAINTAIN'].map((p) => ['app', p, false, 'app']);
    const target = { owner: 'app', acl: [...newer, ['reader', 'SELECT', false, 'app']] as AclItem[], baseline: newer };
    expect(aclStatements(source, target, { object: 'TABLE t' }, grantees('reader', 'writer'), 'x').statements).toEqual([
      'GRANT SELECT ON TABLE t TO "reader" WITH GRANT OPTION',
      'GRANT INSERT ON TABLE t TO "writer"',
    ]);
    const column = { owner: 'app', acl: [['writer', 'UPDATE', false, 'app']] as AclItem[], baseline: [] };
    expect(aclStatements(column, { owner: 'app', acl: [], baseline: [] }, { object: 'TABLE t', column: '"c"' }, grantees('writer'), 'x').statements).toEqual([
      'GRANT UPDATE ("c") ON TABLE t TO "writer"',
    ]);
  });

  it('defers what is taken from the owner when asked, names grantees the target lacks, and grants as another grantor when asked', () => {
    const base: AclItem[] = [['app', 'SELECT', false, 'app'], ['app', 'TRUNCATE', false, 'app']];
    const source = {
      owner: 'app',
      acl: [['app', 'SELECT', false, 'app'], ['ghost', 'SELECT', false, 'app'], ['reader', 'SELECT', false, 'writer']] as AclItem[],
      baseline: base,
    };
    const target = { owner: 'migrator', acl: base.map(([, p]) => ['migrator', p, false, 'migrator'] as AclItem), baseline: base.map(([, p]) => ['migrator', p, false, 'migrator'] as AclItem) };
    const known = grantees('reader', 'writer');
    expect(aclStatements(source, target, { object: 'TABLE t' }, known, 'TABLE t', { keepOwner: true, grantors: true })).toEqual({
      statements: ['SET ROLE "writer"; GRANT SELECT ON TABLE t TO "reader"; RESET ROLE'],
      deferred: ['REVOKE TRUNCATE ON TABLE t FROM "migrator"'],
    });
    expect(known.missing).toEqual(new Map([['ghost', new Set(['TABLE t'])]]));
    expect(aclStatements(source, target, { object: 'TABLE t' }, grantees('reader', 'writer'), 'TABLE t').statements).toEqual([
      'REVOKE TRUNCATE ON TABLE t FROM "migrator"',
      'GRANT SELECT ON TABLE t TO "reader"',
    ]);
  });
});
