import { main } from '../../bin/cli.js';

/** A stream stand-in that keeps what is written to it. */
function capture() {
  let text = '';
  return { write: (chunk: string) => ((text += chunk), true), get text() { return text; } };
}

/** Runs the pgferry command line in this process, with its standard output and error captured. */
export async function runCli(...argv: string[]) {
  const out = capture();
  const err = capture();
  const code = await main(argv, out, err);
  return { code, stdout: out.text, stderr: err.text };
}
