// Bundles the xenkvm command and its worker threads into dist/bundle/, one
// file each, which bin/xenkvm runs. Node loads a few large modules far faster
// than some hundred small ones (markedly so in the nested VM, whose files come
// over virtio-9p and whose CPU is emulated). The worker files keep the names
// machine.ts starts them by, next to the command's. koffi stays a package: it
// loads its native library from its own directory.
import { build } from 'esbuild';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
await build({
  absWorkingDir: root,
  entryPoints: {
    main: 'src/cli/main.ts',
    'vcpu-thread': 'src/machine/vcpu-thread.ts',
    'timer-thread': 'src/machine/timer-thread.ts',
    'block-thread': 'src/backends/block/block-thread.ts',
    'net-thread': 'src/backends/net/net-thread.ts',
    'tap-reader': 'src/backends/net/tap-reader.ts',
    'slirp-thread': 'src/backends/net/slirp-thread.ts',
  },
  outdir: 'dist/bundle',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['koffi'],
  sourcemap: true,
  // The CommonJS packages bundled into an ES module (commander, pino) call require for node's own modules.
  banner: { js: "import { createRequire as createRequireForBundle } from 'node:module'; const require = createRequireForBundle(import.meta.url);" },
  logLevel: 'warning',
});
