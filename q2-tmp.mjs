import pg from 'pg';
import { readFileSync } from 'node:fs';
const c = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const client = new pg.Client({ host: c.host, port: c.port, user: c.username, password: c.password, database: c.dbname });
await client.connect();
const keys = Array.from({ length: 5000 }, (_, i) => String(1 + ((i * 7919) % 2000000)));
for (const [label, text] of [
  ['md5 rows', `SELECT k.o::text, md5(ROW(a.aid, a.bid, a.abalance, a.filler)::text) FROM unnest($1::text[]) WITH ORDINALITY k(aid, o) JOIN LATERAL (SELECT * FROM ONLY public.pgbench_accounts a WHERE a.aid = k.aid::integer) a ON true`],
  ['hashtext rows', `SELECT k.o::text, hashtextextended(ROW(a.aid, a.bid, a.abalance, a.filler)::text, 0)::text FROM unnest($1::text[]) WITH ORDINALITY k(aid, o) JOIN LATERAL (SELECT * FROM ONLY public.pgbench_accounts a WHERE a.aid = k.aid::integer) a ON true`],
  ['sum only', `SELECT count(*), sum(hashtextextended(ROW(a.aid, a.bid, a.abalance, a.filler)::text, 0)) FROM unnest($1::text[]) WITH ORDINALITY k(aid, o) JOIN LATERAL (SELECT * FROM ONLY public.pgbench_accounts a WHERE a.aid = k.aid::integer) a ON true`],
]) {
  for (let i = 0; i < 3; i++) {
    const t = Date.now();
    const r = await client.query(text, [keys]);
    console.log(label, Date.now() - t, 'ms', r.rowCount);
  }
}
const t = Date.now();
const r = await client.query(`SELECT count(*), sum(hashtextextended(ROW(h.*)::text, 0)) FROM ONLY public.pgbench_history h`);
console.log('history whole', Date.now() - t, 'ms', r.rows[0]);
await client.end();
