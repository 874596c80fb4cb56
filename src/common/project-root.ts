// Where the xenkvm checkout is, from any module: the compiled tree
// (dist/src/...) and the bundle (dist/bundle/) sit at different depths.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The nearest directory at or above `moduleUrl`'s that holds package.json: the checkout's root, no trailing slash. */
export function projectRoot(moduleUrl: string): string {
  let dir = dirname(fileURLToPath(moduleUrl));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${fileURLToPath(moduleUrl)}: xenkvm runs from its checkout`);
    dir = up;
  }
  return dir;
}
