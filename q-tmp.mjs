import pg from 'pg';
import { readFileSync } from 'node:fs';
const c = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const client = new pg.Client({ host: c.host, port: c.port, user: c.username, password: c.password, database: c.dbname });
await client.connect();
const { rows } = await client.query(process.argv[3]);
for (const r of rows) console.log(Object.values(r).join(' | '));
await client.end();
