/** `pgferry.events`: what a migration wants a person to know later, by level. */
import type pg from 'pg';

export async function recordEvent(client: pg.ClientBase, name: string, level: 'info' | 'warn' | 'error', message: string): Promise<void> {
  await client.query('INSERT INTO pgferry.events (migration, level, message) VALUES ($1, $2, $3)', [name, level, message]);
}
