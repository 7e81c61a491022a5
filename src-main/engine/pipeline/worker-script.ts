// Where a worker's compiled script is. Under `node dist/...` it sits beside this module; when the TypeScript
// sources are run directly (the test runner), the compiled copy under dist/ is used (npm test builds first).
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

export function workerScript(name: string, from: string): URL {
  const here = new URL(`./${name}.js`, from);
  if (existsSync(fileURLToPath(here))) return here;
  const file = fileURLToPath(here);
  const marker = `${'/'}src-main${'/'}`;
  const i = file.replace(/\\/g, '/').lastIndexOf(marker);
  if (i < 0) throw new Error(`cannot find the worker script ${name}.js`);
  const compiled = file.slice(0, i) + '/dist' + file.slice(i);
  if (!existsSync(compiled)) throw new Error(`cannot find the worker script ${compiled}; run "npm run build" first`);
  return pathToFileURL(compiled);
}
